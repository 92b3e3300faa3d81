"""connector: extract a SIS database to strict CSV exports and send them, verified."""

__version__ = "0.1.0"

from .config import Job, load_job
from .datasets import DATASETS, Column, DataSet, Kind
from .errors import (
    ConfigError,
    ConnectError,
    ConnectorError,
    ExitCode,
    ExportError,
    PackageError,
    QueryError,
    SecretError,
    TemplateError,
    UploadError,
    VerificationError,
)
from .pipeline import extract, run, send
from .report import RunReport
from .templates import Query, render_query

__all__ = [
    "DATASETS",
    "Column",
    "ConfigError",
    "ConnectError",
    "ConnectorError",
    "DataSet",
    "ExitCode",
    "ExportError",
    "Job",
    "Kind",
    "PackageError",
    "Query",
    "QueryError",
    "RunReport",
    "SecretError",
    "TemplateError",
    "UploadError",
    "VerificationError",
    "__version__",
    "extract",
    "load_job",
    "render_query",
    "run",
    "send",
]
