"""connector: extract a SIS database to strict CSV exports and send them, verified."""

__version__ = "0.1.0"

from .errors import ConnectorError

__all__ = ["ConnectorError", "__version__"]
