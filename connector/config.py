"""Read and check the TOML configuration file.

Every relative path in the file is resolved from the file's own folder, so a job
started by a scheduler from ``/`` or ``C:\\Windows\\System32`` behaves as one started
from the config's folder. A wrong key, type or path is a ``ConfigError`` naming the
key and the file.
"""

from __future__ import annotations

import codecs
import datetime as dt
import os
import re
import tomllib
import urllib.parse
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from .csvout import RowPolicy
from .datasets import DATASETS, ORDER, Column, DataSet, Kind, build
from .drivers import Tls, driver_family, odbc_keys, tls_attributes, tls_conflicts
from .errors import ConfigError

_PASSWORD_IN_ODBC = re.compile(r"(^|;)\s*(PWD|PASSWORD)\s*=\s*[^;\s]", re.IGNORECASE)
ParamValue = str | int | float | bool | dt.date | list[str | int]


def known_encoding(value: str | None) -> str | None:
    """An ``encoding`` setting Python can decode with."""
    if value is not None:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding {value!r}; use a name such as utf-8, utf-8-sig, "
                "utf-16, cp1252 (Windows-1252) or latin-1"
            ) from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSettings(_Strict):
    """Where the SIS data comes from: exactly one of ``odbc``, ``dsn`` or ``url``."""

    odbc: str | None = None
    dsn: str | None = None
    url: str | None = None
    user: str | None = None
    password_secret: str | None = None
    encoding: str | None = None
    query_timeout: int = Field(strict=True, default=600, ge=0)
    login_timeout: int = Field(strict=True, default=30, ge=0)
    batch_size: int = Field(strict=True, default=20_000, ge=1, le=1_000_000)
    time_zone: str | None = None
    count_rows: StrictBool = True
    chunk_rows: int = Field(strict=True, default=100_000, ge=0, le=100_000_000)
    # SQL Server only (drivers.md): Encrypt= and TrustServerCertificate=.
    encrypt: StrictBool | Literal["strict"] | None = None
    trust_server_certificate: StrictBool | None = None

    @property
    def tls(self) -> Tls:
        return Tls(self.encrypt, self.trust_server_certificate)

    @field_validator("encrypt", mode="before")
    @classmethod
    def _encrypt_word(cls, value: object) -> object:
        if value is not None and value is not True and value is not False:
            if value != "strict":
                raise ValueError('must be true, false or "strict"')
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        return known_encoding(value)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", value):
                    raise ValueError(value)
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value!r}; use an IANA name such as "
                    "America/Chicago"
                ) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSettings:
        given = [k for k in ("odbc", "dsn", "url") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of odbc (a connection string), dsn or url "
                f"(a SQLAlchemy URL); found {', '.join(given) or 'none'}"
            )
        if self.odbc and _PASSWORD_IN_ODBC.search(self.odbc):
            raise ValueError(
                "the ODBC connection string holds a password; remove PWD= and name "
                "a secret in password_secret instead"
            )
        if self.url:
            _check_url(self.url)
        self._check_tls()
        return self

    def _check_tls(self) -> None:
        """Encryption settings fit the driver and never repeat the string's own."""
        tls = self.tls
        if not tls.is_set:
            return
        if self.odbc:
            keys = odbc_keys(self.odbc)
            family = driver_family(keys.get("DRIVER"))
            if keys.get("DRIVER"):
                tls_attributes(family, tls)  # raises for a driver of another kind
        elif self.url:
            url = self.url.split("?", 1)
            if not re.match(r"^mssql\+pyodbc://", url[0]):
                raise ValueError(
                    "encrypt and trust_server_certificate work with SQL Server URLs "
                    "(mssql+pyodbc://) only"
                )
            query = url[1] if len(url) > 1 else ""
            keys = {k.split("=", 1)[0].upper(): "" for k in query.split("&") if k}
            family = "mssql"
        else:
            return  # a DSN's driver is known only when connecting
        conflicts = tls_conflicts(family, keys, tls)
        if conflicts:
            raise ValueError(
                f"{'; '.join(conflicts)} both set; keep only the [source] setting"
            )

    def __repr__(self) -> str:
        kind = "odbc" if self.odbc else "dsn" if self.dsn else "url"
        return (
            f"SourceSettings(kind={kind!r}, password_secret={self.password_secret!r})"
        )


def _check_url(url: str) -> None:
    """A URL that holds no password (in its user part or query) and parses."""
    scheme = url.split("://", 1)[0].lower()
    if not scheme.startswith("sqlite"):  # a file path may hold ':' and '@'
        rest = url.split("://", 1)[-1].split("?", 1)[0]
        user, at, _ = rest.rpartition("@")
        query = url.split("?", 1)[1] if "?" in url else ""
        keys = {k.lower() for k, _ in urllib.parse.parse_qsl(query)}
        if (at and ":" in user) or keys & {"password", "passwd", "pwd"}:
            raise ValueError(
                "the URL holds a password; remove it and name a secret in "
                "password_secret instead"
            )
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise ValueError(f"the URL does not parse: {exc}") from None


class ColumnSettings(_Strict):
    """An optional column added to a data set, written after the declared ones."""

    name: str
    header: str
    kind: Literal["name", "phone", "extension", "date", "code", "email", "text"]
    max_length: int = Field(strict=True, default=255, ge=1, le=255)
    required: StrictBool = False
    source: str | None = None

    @field_validator("name")
    @classmethod
    def _query_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", value):
            raise ValueError(
                "must be a query column name: lower-case letters, digits and _, "
                "starting with a letter"
            )
        return value

    @field_validator("header")
    @classmethod
    def _plain_header(cls, value: str) -> str:
        if not re.fullmatch(r"[ -!#-~]{1,100}", value) or value != value.strip():
            raise ValueError(
                "must be 1 to 100 printable ASCII characters without a double quote "
                "or surrounding spaces"
            )
        return value

    @model_validator(mode="after")
    def _phone_length(self) -> ColumnSettings:
        if self.kind == "phone" and "max_length" in self.model_fields_set:
            raise ValueError("a phone column is always 10 digits; drop max_length")
        return self

    def column(self) -> Column:
        kind = Kind(self.kind)
        limit = 10 if kind is Kind.PHONE else self.max_length
        return Column(self.name, self.header, kind, limit, self.required, self.source)


class FileSourceSettings(_Strict):
    """A file that holds a data set's rows: an SIS export or a kept spreadsheet.

    What is not given (format, encoding, delimiter, header row) is detected, and
    ``connector test`` shows what was found so that it can be pinned here.
    """

    path: Path
    format: Literal["csv", "xlsx"] | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header_row: int | None = Field(strict=True, default=None, ge=0, le=1000)
    sheet: str | None = None
    columns: list[str] | None = None
    settle: float = Field(strict=True, default=2.0, ge=0, le=600)
    max_age: str | None = None
    wait: float = Field(strict=True, default=0.0, ge=0, le=86400)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        return known_encoding(value)

    @field_validator("max_age")
    @classmethod
    def _age(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*[smhd]\s*", value):
            raise ValueError(
                'must be a number and a unit: s, m, h or d, such as "26h" or "2d"'
            )
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_delimiter(cls, value: str | None) -> str | None:
        if value is not None:
            value = "\t" if value.lower() == "tab" else value
            if value not in (",", ";", "\t", "|"):
                raise ValueError('must be one of ",", ";", "tab" or "|"')
        return value

    @field_validator("columns")
    @classmethod
    def _distinct_columns(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            folded = [c.strip().casefold() for c in value]
            if not value or "" in folded or len(set(folded)) != len(folded):
                raise ValueError(
                    "must list the file's columns, each once and not empty, as "
                    "`connector test` shows them"
                )
        return value

    @model_validator(mode="after")
    def _format_keys(self) -> FileSourceSettings:
        kind = self.format or (
            "xlsx" if self.path.suffix.lower() in (".xlsx", ".xlsm") else "csv"
        )
        if kind == "xlsx":
            for key in ("encoding", "delimiter"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: a workbook has no {key}; drop it")
        elif self.sheet is not None:
            raise ValueError("sheet: only a workbook (format = 'xlsx') has sheets")
        if self.header_row == 0 and self.columns is None:
            raise ValueError(
                "header_row = 0 (no header) needs columns: the file's columns in "
                "order, so that a record with a field more or less is caught"
            )
        return self

    @property
    def kind(self) -> Literal["csv", "xlsx"]:
        if self.format is not None:
            return self.format
        return "xlsx" if self.path.suffix.lower() in (".xlsx", ".xlsm") else "csv"

    @property
    def max_age_seconds(self) -> float | None:
        if self.max_age is None:
            return None
        text = self.max_age.strip()
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]]
        return float(text[:-1].strip()) * unit


class MapEntry(_Strict):
    """Where one data set column comes from: a source column, or a constant."""

    column: str | int | None = None
    value: str | None = None
    default: str | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> MapEntry:
        if (self.column is None) == (self.value is None):
            raise ValueError(
                "give exactly one of column (a header name or a position) and "
                "value (a constant)"
            )
        if self.value is not None and self.default is not None:
            raise ValueError("a constant value needs no default")
        if isinstance(self.column, int) and (
            isinstance(self.column, bool) or self.column < 1
        ):
            raise ValueError("a position counts from 1 (the first column)")
        return self


MapValue = Annotated[str, Field(min_length=1)] | Annotated[int, Field(ge=1)] | MapEntry


def _entry(value: MapValue) -> MapEntry:
    return value if isinstance(value, MapEntry) else MapEntry(column=value)


class DataSetSettings(_Strict):
    """One data set: its template or file, its export and the rules its rows go
    through."""

    template: Path | None = None
    file_source: FileSourceSettings | None = None
    map: dict[str, MapValue] = Field(default_factory=dict)
    file: str | None = None
    enabled: StrictBool = True
    columns: list[ColumnSettings] = Field(default_factory=list)
    periods: Literal["day", "event", "columns"] = "day"
    period_columns: int = Field(strict=True, default=8, ge=1, le=24)
    on_row_error: Literal["drop", "fail"] = "drop"
    max_rejected: float = Field(strict=True, default=0.05, ge=0, le=1)
    unknown_students: Literal["warn", "reject"] = "warn"
    max_drop: float | None = Field(strict=True, default=None, ge=0, le=1)
    allow_empty: StrictBool | None = None

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not value
            or Path(value).name != value
            or value.startswith(".")
            or Path(value).suffix.lower() not in (".csv", ".txt")
        ):
            raise ValueError(
                "must be a plain file name ending in .csv or .txt, such as students.csv"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DataSetSettings:
        if (self.template is None) == (self.file_source is None):
            raise ValueError(
                "give exactly one of template (a SQL template) and file_source "
                "(a file to read)"
            )
        entries = self.entries
        by_position = [k for k, e in entries.items() if isinstance(e.column, int)]
        if by_position and self.template is not None:
            raise ValueError(
                f"map.{by_position[0]}: a template's result is mapped by column "
                "name, not position"
            )
        pinned = self.file_source.columns if self.file_source else None
        if by_position and pinned is None:
            raise ValueError(
                f"map.{by_position[0]}: a mapping by position needs "
                "file_source.columns (the file's columns, as `connector test` "
                "shows them), so that a column added, removed or moved stops the "
                "run instead of shifting values into the wrong fields"
            )
        if pinned is not None:
            folded = {c.strip().casefold() for c in pinned}
            for key, entry in entries.items():
                column = entry.column
                if isinstance(column, int) and column > len(pinned):
                    raise ValueError(
                        f"map.{key}: position {column}, but columns lists only "
                        f"{len(pinned)}"
                    )
                if isinstance(column, str) and column.strip().casefold() not in folded:
                    raise ValueError(
                        f"map.{key}: {column!r} is not one of file_source.columns"
                    )
        return self

    @property
    def entries(self) -> dict[str, MapEntry]:
        """The column mapping, every entry in its long form."""
        return {k: _entry(v) for k, v in self.map.items()}


class OutputSettings(_Strict):
    folder: Path = Path("exports")
    keep_sent: StrictBool = True


def _has_credentials(url: str) -> bool:
    """Whether ``url`` names a user or a password before its host."""
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    return "@" in authority


class DestinationSettings(_Strict):
    """Where payloads go (``kind``), how they are encrypted, retried and verified."""

    kind: Literal["https", "tus", "sftp", "folder"] = "https"
    # https and tus
    url: str | None = None
    token_secret: str | None = None
    ca_file: Path | None = None
    chunk_size: int = Field(strict=True, default=8 * 1024 * 1024, ge=64 * 1024)
    proxy: str | None = None
    # sftp
    host: str | None = None
    port: int = Field(strict=True, default=22, ge=1, le=65535)
    user: str | None = None
    key_file: Path | None = None
    passphrase_secret: str | None = None
    known_hosts: Path | None = None
    host_key_fingerprint: str | None = Field(default=None, pattern=r"^SHA256:\S+$")
    remote_folder: str = "."
    rename: StrictBool = True
    # folder
    path: Path | None = None
    # every kind
    encryption: Literal["openpgp", "age"] = "openpgp"
    recipient_cert: Path | None = None
    recipient_fingerprint: str | None = Field(
        default=None, pattern=r"^[0-9A-Fa-f ]{32,}$"
    )
    age_recipient: str | None = None
    attempts: int = Field(strict=True, default=5, ge=1, le=100)
    timeout: float = Field(strict=True, default=60.0, gt=0)
    backoff: float = Field(strict=True, default=2.0, ge=0)
    max_wait: float = Field(strict=True, default=120.0, ge=0)
    deadline: float = Field(strict=True, default=3600.0, gt=0)
    min_verification: (
        Literal["none", "length", "chunks", "read-back", "receipt"] | None
    ) = None
    read_back: StrictBool = False
    manifest: StrictBool = True

    @field_validator("url")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith("https://"):
            raise ValueError("must start with https:// (plain http is never used)")
        return value

    @field_validator("proxy")
    @classmethod
    def _plain_proxy(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not re.match(r"(?i)^https?://\S+$", value):
            raise ValueError(
                "must be the proxy's http:// or https:// URL, such as "
                "http://proxy.district.local:3128"
            )
        if _has_credentials(value):
            raise ValueError(
                "must not carry credentials (user:password@): a password does not "
                "belong in the config file; have the proxy let this server through "
                "without a login"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> DestinationSettings:
        needs = {
            "https": ("url",),
            "tus": ("url",),
            "sftp": ("host", "user", "key_file"),
            "folder": ("path",),
        }[self.kind]
        missing = [k for k in needs if getattr(self, k) is None]
        if missing:
            raise ValueError(f"kind = {self.kind!r} needs {', '.join(missing)}")
        if self.kind == "sftp" and (self.known_hosts is None) == (
            self.host_key_fingerprint is None
        ):
            raise ValueError(
                "kind = 'sftp' needs exactly one of known_hosts or "
                "host_key_fingerprint (the server's key is never trusted on first use)"
            )
        if self.encryption == "openpgp" and self.recipient_cert is None:
            raise ValueError("encryption = 'openpgp' needs recipient_cert")
        if self.encryption == "age" and self.age_recipient is None:
            raise ValueError("encryption = 'age' needs age_recipient")
        return self


class StateSettings(_Strict):
    folder: Path | None = None


class SecretsSettings(_Strict):
    folder: Path | None = None


class LogSettings(_Strict):
    """Where the rotating log file, the JSON-lines event log and the heartbeat go."""

    folder: Path | None = None
    max_bytes: int = Field(strict=True, default=5_000_000, ge=10_000)
    backups: int = Field(strict=True, default=5, ge=0, le=100)
    heartbeat: Path | None = None


class EmailSettings(_Strict):
    """Failure and hold notices by SMTP: STARTTLS (port 587) or SMTPS (465)."""

    to: list[str] = Field(min_length=1)
    sender: str
    host: str
    port: int | None = Field(strict=True, default=None, ge=1, le=65535)
    security: Literal["starttls", "tls"] = "starttls"
    user: str | None = None
    password_secret: str | None = None
    ca_file: Path | None = None
    timeout: float = Field(strict=True, default=30.0, gt=0)


class WebhookSettings(_Strict):
    """Failure and hold notices as an HTTPS POST with a JSON body."""

    url: str
    token_secret: str | None = None
    ca_file: Path | None = None
    timeout: float = Field(strict=True, default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        if not value.lower().startswith("https://"):
            raise ValueError("must start with https:// (plain http is never used)")
        if _has_credentials(value):
            raise ValueError(
                "must not carry credentials (user:password@); put a token in "
                "notify.webhook.token_secret"
            )
        return value


NoticeOutcome = Literal["failed", "held", "sent", "skipped"]
_NOTIFY_ON: list[NoticeOutcome] = ["failed", "held"]


class NotifySettings(_Strict):
    on: list[NoticeOutcome] = Field(default_factory=lambda: _NOTIFY_ON.copy())
    email: EmailSettings | None = None
    webhook: WebhookSettings | None = None


class Settings(_Strict):
    source: SourceSettings | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    datasets: dict[str, DataSetSettings]
    output: OutputSettings = Field(default_factory=OutputSettings)
    destination: DestinationSettings | None = None
    state: StateSettings = Field(default_factory=StateSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    @field_validator("datasets")
    @classmethod
    def _known_datasets(
        cls, value: dict[str, DataSetSettings]
    ) -> dict[str, DataSetSettings]:
        unknown = sorted(set(value) - set(DATASETS))
        if unknown:
            raise ValueError(
                f"unknown data set {', '.join(unknown)}; known: {', '.join(DATASETS)}"
            )
        if "students" not in value or not value["students"].enabled:
            raise ValueError(
                "the students data set is required and cannot be disabled: staff "
                "and attendance are checked against it"
            )
        files: dict[str, str] = {}
        for name, settings in value.items():
            try:
                dataset = build(name, [c.column() for c in settings.columns])
            except ValueError as exc:
                raise ValueError(f"{name}.columns: {exc}") from None
            headers = [h.lower() for h in dataset.headers]
            repeated = sorted({h for h in headers if headers.count(h) > 1})
            if repeated:
                raise ValueError(
                    f"{name}.columns: the header {repeated[0]!r} appears twice"
                )
            if name != "attendance":
                for key in ("periods", "period_columns", "unknown_students"):
                    if key in settings.model_fields_set:
                        raise ValueError(f"{name}.{key}: only attendance has {key}")
            selected = set(dataset.selected_names)
            for key in settings.map:
                if key not in selected:
                    raise ValueError(
                        f"{name}.map.{key}: not a column of {name}; its columns are "
                        f"{', '.join(dataset.selected_names)}"
                    )
            file = settings.file or f"{name}.csv"
            if file in files:
                raise ValueError(
                    f"{name}.file: {file} is also the file of {files[file]}; each "
                    "data set needs its own file name"
                )
            files[file] = name
        return value

    @model_validator(mode="after")
    def _source_when_needed(self) -> Settings:
        if self.source is None:
            reading = [n for n, d in self.datasets.items() if d.enabled and d.template]
            if reading:
                raise ValueError(
                    f"[source] is missing: data set {reading[0]} runs a template; "
                    "give [source] or read the data set from a file_source"
                )
        return self


class Job:
    """Validated settings with every path made absolute from the config's folder."""

    def __init__(self, settings: Settings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self.folder = path.parent

    def resolve(self, value: Path) -> Path:
        return value if value.is_absolute() else (self.folder / value).resolve()

    @property
    def source(self) -> SourceSettings:
        """The database settings; only data sets with a template need them."""
        if self.settings.source is None:
            raise ConfigError(f"{self.path}: [source] is missing")
        return self.settings.source

    @property
    def has_database(self) -> bool:
        return self.settings.source is not None

    def file_source(self, name: str) -> FileSourceSettings | None:
        """The file data set ``name`` is read from, or None for a template."""
        return self.settings.datasets[name].file_source

    def column_map(self, name: str) -> dict[str, MapEntry]:
        return self.settings.datasets[name].entries

    def file_path(self, name: str) -> Path:
        settings = self.file_source(name)
        assert settings is not None, name
        return self.resolve(settings.path)

    @property
    def batch_size(self) -> int:
        source = self.settings.source
        return 5000 if source is None else source.batch_size

    @property
    def datasets(self) -> dict[str, DataSetSettings]:
        """The enabled data sets, students first, then staff, then attendance."""
        given = self.settings.datasets
        return {k: given[k] for k in ORDER if k in given and given[k].enabled}

    def dataset(self, name: str) -> DataSet:
        """The data set ``name`` with this job's added columns and periods shape."""
        settings = self.settings.datasets[name]
        return build(
            name,
            [c.column() for c in settings.columns],
            periods=settings.periods,
            period_columns=settings.period_columns,
        )

    def gate_limits(self, name: str) -> tuple[float, bool]:
        """``(max_drop, allow_empty)`` for the safety gate.

        Unset, attendance has no drop limit and may be empty (absences vary from
        day to day, and a day may have none); students and staff hold on a drop
        over 10 % and on an empty export.
        """
        settings = self.settings.datasets[name]
        daily = name == "attendance"
        max_drop = settings.max_drop
        allow_empty = settings.allow_empty
        return (
            (1.0 if daily else 0.10) if max_drop is None else max_drop,
            daily if allow_empty is None else allow_empty,
        )

    def policy(self, name: str) -> RowPolicy:
        settings = self.settings.datasets[name]
        return RowPolicy(
            on_row_error=settings.on_row_error,
            max_rejected=settings.max_rejected,
            unknown_students=settings.unknown_students,
        )

    @property
    def zone(self) -> zoneinfo.ZoneInfo | None:
        source = self.settings.source
        name = None if source is None else source.time_zone
        return None if name is None else zoneinfo.ZoneInfo(name)

    def template_path(self, name: str) -> Path:
        template = self.settings.datasets[name].template
        if template is None:
            raise ConfigError(f"{self.path}: datasets.{name} has no template")
        return self.resolve(template)

    def export_name(self, name: str) -> str:
        return self.settings.datasets[name].file or f"{name}.csv"

    @property
    def output_folder(self) -> Path:
        return self.resolve(self.settings.output.folder)

    @property
    def state_folder(self) -> Path:
        if self.settings.state.folder is None:
            return Path(platformdirs.user_data_dir("connector", appauthor=False))
        return self.resolve(self.settings.state.folder)

    @property
    def secrets_folder(self) -> Path | None:
        folder = self.settings.secrets.folder
        return None if folder is None else self.resolve(folder)

    @property
    def spool_folder(self) -> Path:
        return self.state_folder / "spool"

    @property
    def pending_folder(self) -> Path:
        return self.state_folder / "pending"

    @property
    def upload_log(self) -> Path:
        return self.state_folder / "uploads.jsonl"

    @property
    def state_store(self) -> Path:
        return self.state_folder / "state.sqlite"

    def destination_path(self, value: Path | None) -> Path | None:
        return None if value is None else self.resolve(value)

    @property
    def log_folder(self) -> Path:
        """``[log] folder``, else the platform's user log folder."""
        if self.settings.log.folder is None:
            return Path(platformdirs.user_log_dir("connector", appauthor=False))
        return self.resolve(self.settings.log.folder)

    @property
    def heartbeat_path(self) -> Path:
        """``[log] heartbeat``, else ``heartbeat.json`` in the state folder."""
        given = self.settings.log.heartbeat
        return (
            self.state_folder / "heartbeat.json"
            if given is None
            else (self.resolve(given))
        )


def load_job(path: Path, *, secrets_folder_made: bool = False) -> Job:
    """Read, validate and resolve the config file at ``path``.

    A ``[secrets] folder`` that does not exist is an error, unless the caller
    makes it (``secrets_folder_made``: ``connector secrets set``).
    """
    path = Path(path).expanduser().absolute()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; pass --config PATH or create one "
            "(see README: Configuration)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(
            f"{path} is saved as UTF-16; save it as UTF-8 (in Notepad: Save As, "
            "Encoding: UTF-8)"
        )
    try:
        # utf-8-sig: Windows Notepad may begin a UTF-8 file with a byte-order mark.
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc

    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from None

    job = Job(
        _sqlite_from_config_folder(settings, path.resolve().parent), path.resolve()
    )
    _check_paths(job, secrets_folder_made=secrets_folder_made)
    _check_params(job)
    return job


def _check_params(job: Job) -> None:
    """A [params] name no template uses is a typo that would drop a filter."""
    from .templates import template_names

    used: set[str] = set()
    for settings in job.settings.datasets.values():
        if settings.template is not None:
            used |= template_names(job.resolve(settings.template))
    unused = sorted(set(job.settings.params) - used)
    if unused:
        keys = ", ".join(f"params.{name}" for name in unused)
        raise ConfigError(
            f"{job.path}: {keys}: no template uses it (a misspelt name would drop "
            f"its filter); the templates use: {', '.join(sorted(used)) or 'nothing'}"
        )


_MAX_PROBLEMS = 5


def _problems(exc: ValidationError) -> str:
    """Every problem (up to ``_MAX_PROBLEMS``) on one line, separated by "; "."""
    # A misspelt key also shows up as a missing one: name the misspelling first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    shown = [_problem(error) for error in errors[:_MAX_PROBLEMS]]
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more else "")


# The earlier name, still imported by connector.init.
_first_problem = _problems


def _key(loc: tuple[int | str, ...]) -> str:
    """``datasets.students.columns[1].header``: list items count from 1."""
    key = ""
    for part in loc:
        key += f"[{part + 1}]" if isinstance(part, int) else f".{part}"
    return key.lstrip(".") or "(top level)"


def _problem(error: Any) -> str:
    key = _key(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key; check its spelling against the README"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif key == "datasets" and re.match(r"^\w+(\.\w+)+: ", message):
        # A check across the data sets names the key it is about.
        where, message = message.split(": ", 1)
        key = f"datasets.{where}"
    return f"{key}: {message}"


def _sqlite_file(url: str | None) -> Path | None:
    """The database file a ``sqlite://`` URL names, or None (not SQLite, memory)."""
    if not url or not url.lower().startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(url).database
    except ArgumentError:
        return None  # the source reports a malformed URL when it connects
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_from_config_folder(settings: Settings, folder: Path) -> Settings:
    """A relative SQLite path in ``source.url`` starts from the config's folder."""
    given = settings.source
    database = None if given is None else _sqlite_file(given.url)
    if given is None or database is None or database.is_absolute():
        return settings
    from sqlalchemy.engine import make_url

    assert given.url is not None
    url = make_url(given.url).set(database=str(folder / database))
    source = given.model_copy(update={"url": url.render_as_string(hide_password=False)})
    return settings.model_copy(update={"source": source})


def _check_paths(job: Job, *, secrets_folder_made: bool = False) -> None:
    given = job.settings.source
    database = None if given is None else _sqlite_file(given.url)
    if database is not None and not database.is_file():
        raise ConfigError(
            f"{job.path}: source.url: no SQLite database at {database} (a missing "
            "file is never created); check the path: a relative one starts from "
            "the config's folder"
        )
    for name in job.datasets:
        if job.file_source(name) is not None:
            continue
        template = job.template_path(name)
        if not template.is_file():
            raise ConfigError(
                f"{job.path}: datasets.{name}.template: no file at {template}"
            )
    checks: list[tuple[str, Any]] = []
    destination = job.settings.destination
    if destination is not None:
        # destination.recipient_cert is not here: the service's key may arrive
        # after the DBA has set up and tested the database side. It is read
        # (exit 2 when missing) before anything is extracted for a send.
        checks += [
            ("destination.ca_file", destination.ca_file),
            ("destination.key_file", destination.key_file),
            ("destination.known_hosts", destination.known_hosts),
        ]
    notify = job.settings.notify
    if notify.email is not None:
        checks.append(("notify.email.ca_file", notify.email.ca_file))
    if notify.webhook is not None:
        checks.append(("notify.webhook.ca_file", notify.webhook.ca_file))
    for key, value in checks:
        if value is not None and not job.resolve(value).is_file():
            raise ConfigError(f"{job.path}: {key}: no file at {job.resolve(value)}")
    secrets = job.secrets_folder
    if secrets is not None and not secrets.is_dir() and not secrets_folder_made:
        from .secrets import named_secrets

        name = next((name for _, name in named_secrets(job)), "NAME")
        make = f"`mkdir -m 700 {secrets}`" if os.name == "posix" else "create it"
        raise ConfigError(
            f"{job.path}: secrets.folder: no folder at {secrets}; run `connector "
            f"secrets set {name} -c {job.path}` as the account the job runs as, "
            f"which makes it owner-only (0700) as it stores the secret, or {make} "
            "as that account (no other may read it)"
        )
