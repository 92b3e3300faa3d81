"""MariaDB and MySQL without ODBC: a ``mariadb://`` or ``mysql://`` URL.

Read through MariaDB Connector/Python (the ``mariadb`` package, the extra
``connector[mariadb]``), which streams a result: the server sends the rows as
they are read, so memory stays flat and the query runs once, in one pass, where
MariaDB Connector/ODBC would hold the whole result and needs key-order chunks
(drivers.md). The statement is prepared on the server and every template value
bound to it (binary protocol); the rows are turned into Arrow columns on a
second thread while the previous batch is written.

A text value longer than ``MAX_TEXT_CHARS`` is cut on the server at one more
character, only in columns that can hold one, and then stops the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .config import SourceSettings
from .database import (
    Batches,
    ServerInfo,
    _scrub,
    count_sql,
    log_connected,
    query_failed,
    refused_login,
    scrub_values,
    unreadable,
)
from .drivers import lost_connection
from .errors import ConfigError, ConnectError, QueryError
from .native import (
    MAX_TEXT_CHARS,
    NativeSource,
    Prefetcher,
    check_lengths,
    server_name,
)
from .templates import ParamStyle, Query

log = logging.getLogger(__name__)

_SCHEMES = ("mariadb", "mysql")
# MariaDB/MySQL column type codes (FIELD_TYPE) and what becomes of them.
_TEXT = frozenset({15, 245, 247, 248, 249, 250, 251, 252, 253, 254})
_DATE = 10
_TIME = 11
_TIMESTAMPS = frozenset({7, 12})
_INTEGERS = frozenset({1, 2, 3, 8, 9, 13})
_FLOATS = frozenset({4, 5})
# The URL's query keys connector passes to MariaDB Connector/Python.
_TEXT_OPTIONS = (
    "unix_socket",
    "ssl_ca",
    "ssl_capath",
    "ssl_cert",
    "ssl_key",
    "ssl_cipher",
    "ssl_crlpath",
    "tls_version",
)
_FLAG_OPTIONS = ("ssl", "ssl_verify_cert")
_NUMBER_OPTIONS = ("connect_timeout", "read_timeout", "write_timeout")
# Error numbers: the login refused, and the server could not be reached.
_REFUSED = frozenset({1044, 1045, 1698})
_TIMEOUT = frozenset({1969, 3024})
# Server gone away, lost connection, connection killed (KILL from another session).
_LOST = frozenset({2006, 2013, 1927})


def is_mariadb_url(url: str | None) -> bool:
    """A MariaDB or MySQL URL that names no Python driver."""
    return bool(url) and urlsplit(url or "").scheme.lower() in _SCHEMES


def connect_options(settings: SourceSettings, password: str | None) -> dict[str, Any]:
    """MariaDB Connector/Python's connect() arguments for ``source.url``."""
    parts = urlsplit(settings.url or "")
    options: dict[str, Any] = {"autocommit": False}
    user = settings.user or (unquote(parts.username) if parts.username else None)
    if user:
        options["user"] = user
    if password is not None:
        options["password"] = password
    if parts.hostname:
        options["host"] = parts.hostname
    try:
        if parts.port:
            options["port"] = parts.port
    except ValueError as exc:
        raise ConfigError(f"source.url: {exc}") from None
    database = unquote(parts.path.lstrip("/"))
    if database:
        options["database"] = database
    if settings.login_timeout:
        options["connect_timeout"] = settings.login_timeout
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _TEXT_OPTIONS:
            options[key] = value
        elif key in _FLAG_OPTIONS:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ConfigError(f"source.url: {key}={value} is not true or false")
            options[key] = value.lower() in ("true", "1", "yes")
        elif key in _NUMBER_OPTIONS:
            if not value.isdigit():
                raise ConfigError(f"source.url: {key}={value} is not whole seconds")
            options[key] = int(value)
        else:
            known = ", ".join((*_TEXT_OPTIONS, *_FLAG_OPTIONS, *_NUMBER_OPTIONS))
            raise ConfigError(
                f"source.url: unknown parameter {key!r} for MariaDB/MySQL; the URL's "
                f"query may hold: {known}"
            )
    return options


class MariaDbSource(NativeSource):
    """A MariaDB Connector/Python connection holding one read transaction.

    Every query of the run sees the same snapshot (repeatable read, a consistent
    snapshot taken when connecting).
    """

    param_style: ParamStyle = "qmark"

    def __init__(self, settings: SourceSettings, password: str | None) -> None:
        try:
            import mariadb
        except ModuleNotFoundError:
            raise ConfigError(
                "source.url is a MariaDB/MySQL URL, which needs MariaDB "
                "Connector/Python: pip install 'connector[mariadb]' (on Linux "
                "install libmariadb-dev and a C compiler first; see drivers.md), or "
                "connect through ODBC with source.odbc"
            ) from None

        self._password = password
        where = server_name(settings.url or "", "MariaDB")
        options = connect_options(settings, password)
        log.debug("connecting to %s through MariaDB Connector/Python", where)
        try:
            self._conn: Any = mariadb.connect(**options)
        except mariadb.Error as exc:
            raise self._connect_error(exc, where) from None
        version = str(self._conn.server_info)
        is_mariadb = "mariadb" in version.lower()
        try:
            self._session(settings, is_mariadb)
            asked = [
                k for k in ("ssl", "ssl_ca", "ssl_capath", "ssl_cert") if options.get(k)
            ]
            cipher = self._execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'", fetch=True)
            encrypted = bool(cipher and cipher[0][1])
        except mariadb.Error as exc:
            self.close()
            raise ConnectError(
                f"{where}: the session could not be set up: {self._text(exc)}"
            ) from None
        if asked and not encrypted:
            self.close()
            raise ConnectError(
                f"{where}: source.url asks for TLS ({', '.join(asked)}) but the "
                "connection is not encrypted (the server does not offer TLS); turn "
                "TLS on in the server, or remove those settings to connect in clear",
                exit_code=2,
            )
        self._info = ServerInfo(
            dbms="MariaDB" if is_mariadb else "MySQL",
            dbms_version=version,
            driver="MariaDB Connector/Python",
            driver_version=mariadb.__version__,
        )
        log_connected(self._info)

    def _session(self, settings: SourceSettings, is_mariadb: bool) -> None:
        import mariadb

        self._execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if settings.query_timeout:
            seconds = int(settings.query_timeout)
            if is_mariadb:
                self._execute(f"SET SESSION max_statement_time = {seconds}")
            else:
                self._execute(f"SET SESSION max_execution_time = {seconds * 1000}")
        if settings.time_zone:
            # The name was checked against the IANA database with the config.
            try:
                self._execute(f"SET time_zone = '{settings.time_zone}'")
            except mariadb.Error:
                log.warning(
                    "the server does not know time zone %s (MariaDB and MySQL need "
                    "their time zone tables: mysql_tzinfo_to_sql); its TIMESTAMP "
                    "columns stay in the server's zone",
                    settings.time_zone,
                )
        self._execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")

    # -- the Source interface ------------------------------------------------

    def count(self, query: Query) -> int:
        """``COUNT(*)`` over the query, in the run's transaction."""
        import mariadb

        try:
            rows = self._execute(count_sql(query.sql), list(query.params), fetch=True)
        except mariadb.Error as exc:
            raise self._query_error(query, exc) from None
        return int(rows[0][0])

    def stream(self, query: Query, batch_size: int) -> tuple[list[str], Batches]:
        """The query's column names, and its rows in batches of at most
        ``batch_size`` rows (fewer where the rows are wide).

        The query's columns are asked for here (``LIMIT 0``); it runs when the
        first batch is asked for, so batches closed unread leave nothing for
        the connection to read.
        """
        import mariadb

        body = query.sql.rstrip().rstrip(";").rstrip()
        params = list(query.params)
        try:
            probe = self._conn.cursor(prepared=True)
            try:
                probe.execute(
                    f"SELECT * FROM (\n{body}\n) connector_probe LIMIT 0", params
                )
                description = list(probe.description or ())
            finally:
                probe.close()
        except mariadb.Error as exc:
            raise self._query_error(query, exc) from None
        names = [str(column[0]).lower() for column in description]
        codes = [int(column[1]) for column in description]
        struct = _rows_type(codes)

        def batches() -> Batches:
            from .csvout import ColumnBatch

            try:
                cursor = self._conn.cursor(prepared=True, buffered=False)
                try:
                    cursor.execute(_capped(body, description), params)
                except BaseException:
                    cursor.close()
                    raise
            except mariadb.Error as exc:
                raise self._query_error(query, exc) from None

            def fetch(rows: int) -> _Batch | None:
                try:
                    found = cursor.fetchmany(rows)
                    if len(found) < rows:
                        # The driver ends a streamed result quietly when the
                        # server sends an error instead of the next row: ask.
                        self._raise_pending(query)
                except (SystemError, ValueError, OverflowError):
                    # A value it cannot convert can also end the rows quietly,
                    # leaving the error to the driver's next call.
                    raise _unreadable(query, description) from None
                if not found:
                    return None
                return _Batch(_columns(found, codes, struct))

            def finish() -> None:
                # Reads what the server still sends of an unfinished result; a
                # value the driver cannot convert there was reported already.
                with contextlib.suppress(mariadb.Error, SystemError, ValueError):
                    cursor.close()

            fetcher = Prefetcher(
                fetch,
                limit=batch_size,
                error=lambda exc: self._query_error(query, exc),
                finish=finish,
                name="fetch-mariadb",
            )
            with contextlib.closing(fetcher):
                for batch in fetcher:
                    before = fetcher.fetched - batch.num_rows
                    check_lengths(query, names, batch.columns, before)
                    yield ColumnBatch(None, batch.columns, batch.num_rows)  # type: ignore[misc]

        return names, batches()

    def close(self) -> None:
        import mariadb

        conn = getattr(self, "_conn", None)
        if conn is None:
            return
        # Only reads ran: end the transaction without keeping anything.
        with contextlib.suppress(mariadb.Error):
            conn.rollback()
        with contextlib.suppress(mariadb.Error):
            conn.close()
        self._conn = None

    # -- statements and errors -------------------------------------------------

    def _execute(
        self, sql: str, params: Sequence[Any] = (), *, fetch: bool = False
    ) -> list[Any]:
        cursor = self._conn.cursor(prepared=bool(params))
        try:
            cursor.execute(sql, tuple(params))
            return list(cursor.fetchall()) if fetch else []
        finally:
            cursor.close()

    def _raise_pending(self, query: Query) -> None:
        """Raise the error the server sent in place of the rest of a result."""
        errors = [
            w for w in self._execute("SHOW WARNINGS", fetch=True) if w[0] == "Error"
        ]
        if errors:
            _, number, message = errors[-1]
            raise self._query_error(query, _ServerError(int(number), str(message)))

    def _text(self, exc: Exception) -> str:
        text = " ".join(str(exc).split())
        return scrub_values(_scrub(text, self._password)).rstrip(" .;")

    def _connect_error(self, exc: Any, where: str) -> ConnectError:
        text = self._text(exc)
        number = getattr(exc, "errno", None)
        if number in _REFUSED or "access denied" in text.lower():
            return refused_login(where, text)
        return ConnectError(
            f"cannot connect to {where}: {text}; check the server, port (or "
            "unix_socket) and database name in source.url"
        )

    def _query_error(self, query: Query, exc: Exception) -> QueryError:
        if isinstance(exc, QueryError):
            return self.named(query, exc)
        text = self._text(exc)
        number = getattr(exc, "errno", None)
        return query_failed(
            query,
            text,
            timed_out=number in _TIMEOUT or "max_statement_time" in text,
            lost=number in _LOST or lost_connection("", text),
        )


class _ServerError(Exception):
    """An error the server reported after the driver had ended a result."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


def _unreadable(query: Query, description: Sequence[Any]) -> QueryError:
    """The driver could not turn a fetched value into Python (a zero date)."""
    dated = [str(c[0]) for c in description if int(c[1]) in (*_TIMESTAMPS, _DATE, 13)]
    return unreadable(query, dated, "MariaDB Connector/Python")


class _Batch:
    """Rows fetched, as columns: Arrow arrays, or Python lists for the types the
    field rules take as Python values (decimals, times)."""

    def __init__(self, columns: list[Any]) -> None:
        import pyarrow as pa

        self.columns = columns
        first = columns[0]
        self.num_rows = len(first)
        self.nbytes = sum(
            c.nbytes if isinstance(c, pa.Array) else 16 * len(c) for c in columns
        )


def _arrow_type(code: int) -> Any:
    """The Arrow type a column of this MariaDB type is read into; None for the
    types the field rules take as Python values (decimals, times)."""
    import pyarrow as pa

    if code in _TEXT:
        return pa.string()
    if code == _DATE:
        return pa.date32()
    if code in _TIMESTAMPS:
        return pa.timestamp("us")
    if code in _INTEGERS:
        return pa.int64()
    if code in _FLOATS:
        return pa.float64()
    return None


def _rows_type(codes: Sequence[int]) -> Any:
    """A struct of the columns' Arrow types, when every column has one: the rows
    then become Arrow columns in one call, three times as fast as one a column."""
    import pyarrow as pa

    kinds = [_arrow_type(code) for code in codes]
    if any(kind is None for kind in kinds):
        return None
    return pa.struct([pa.field(f"c{i}", kind) for i, kind in enumerate(kinds)])


def _columns(
    rows: list[tuple[Any, ...]], codes: Sequence[int], struct: Any
) -> list[Any]:
    """Fetched rows as the columns connector cleans."""
    import pyarrow as pa

    if struct is not None:
        try:
            columns: list[Any] = pa.array(rows, struct).flatten()
            return columns
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass  # bytes in a text column (a BLOB): one column at a time
    values = list(zip(*rows, strict=True))
    return [_column(v, c) for v, c in zip(values, codes, strict=True)]


def _column(values: tuple[Any, ...], code: int) -> Any:
    """One fetched column as connector cleans it."""
    import pyarrow as pa

    kind = _arrow_type(code)
    if code == _TIME:
        return [None if v is None else _clock(v) for v in values]
    if kind is not None:
        try:
            return pa.array(values, kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            if code in _TEXT:
                with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError):
                    return pa.array(values)  # a binary column: bytes
    return list(values)


def _clock(value: Any) -> Any:
    """A TIME value as the ODBC driver gives it (``08:30:00``, ``-00:00:01``);
    the driver gives a time span."""
    if not isinstance(value, dt.timedelta):
        return value
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _capped(body: str, description: Sequence[Any]) -> str:
    """The query with every text column that could hold a value longer than
    ``MAX_TEXT_CHARS`` cut on the server at one character more (so
    ``check_lengths`` sees it); the others as they are."""
    if not any(_may_be_long(column) for column in description):
        return body
    outer = []
    for column in description:
        name = _quote_name(str(column[0]))
        if _may_be_long(column):
            outer.append(
                f"CASE WHEN OCTET_LENGTH({name}) > {MAX_TEXT_CHARS} THEN "
                f"LEFT({name}, {MAX_TEXT_CHARS + 1}) ELSE {name} END AS {name}"
            )
        else:
            outer.append(name)
    return f"SELECT {', '.join(outer)} FROM (\n{body}\n) connector_rows"


def _may_be_long(column: Sequence[Any]) -> bool:
    """A text column whose declared size (in bytes) is over the limit."""
    size = column[3] if len(column) > 3 else None
    return int(column[1]) in _TEXT and not (
        isinstance(size, int) and 0 < size <= MAX_TEXT_CHARS
    )


__all__ = ["MariaDbSource", "connect_options", "is_mariadb_url"]
