"""Connect to the SIS database and stream a query's rows in batches.

Two ways in: pyodbc (an ODBC connection string or a DSN) and SQLAlchemy (a URL).
Both give the same ``Source`` interface: ``describe()`` for the DBA's check and
``stream()`` yielding the column names, then lists of row tuples, never the whole
result. Per-driver settings (text decoding, cursor-based fetching) live here and are
explained in ``drivers.md``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import re
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from . import drivers
from .config import SourceSettings
from .errors import ConfigError, ConnectError, QueryError
from .templates import ParamStyle, Query

log = logging.getLogger(__name__)

Batch = list[tuple[Any, ...]]
# A generator, so that a caller stopping early can close() it and its cursor.
Batches = Generator[Batch, None, None]

# SQLSTATE classes that mean "the login was refused": exit with the auth code.
_AUTH_STATES = ("28000", "28P01")
# arrow-odbc binds a buffer of (rows x widest value) per column, so only queries
# whose text columns declare a width fetch through it (drivers.md, "Batches"); a
# value longer than this is an error, never cut.
MAX_TEXT_BYTES = 2048
# Declared widths up to this many characters fit MAX_TEXT_BYTES in UTF-8.
TEXT_CHARS = MAX_TEXT_BYTES // 4
BATCH_BYTES = 8 << 20
# Rows psqlODBC's cursor holds at a time: more buys no speed, only memory
# (about 7 MB more at 10,000 on a students query; benchmarks/extract_bench.py).
CURSOR_ROWS = 4_000
_STATE = re.compile(r"State: (\w{5})")
_DRIVER_IN_STRING = re.compile(r"(?:^|;)\s*DRIVER\s*=\s*\{?([^};]+)\}?", re.IGNORECASE)


@dataclass(frozen=True)
class ServerInfo:
    dbms: str
    dbms_version: str
    driver: str
    driver_version: str


# The hint for a query stopped by source.query_timeout, whatever the way in.
TIMEOUT_HINT = "the query ran past source.query_timeout; raise it or narrow the query"


def log_connected(info: ServerInfo) -> None:
    log.info(
        "connected to %s %s through %s %s",
        info.dbms,
        info.dbms_version,
        info.driver,
        info.driver_version,
    )


def refused_login(where: str, text: str) -> ConnectError:
    """A login the server refused: exit 3, the server's words, never a password."""
    return ConnectError(
        f"{where} refused the login: {text}; check source.user and the "
        "secret named by source.password_secret",
        exit_code=3,
    )


class Source(Protocol):
    """An open connection that runs rendered queries."""

    param_style: ParamStyle

    def describe(self) -> ServerInfo: ...

    def stream(self, query: Query, batch_size: int) -> tuple[list[str], Batches]: ...

    def count(self, query: Query) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_source(settings: SourceSettings, password: str | None) -> Source:
    """Connect with ``settings``; ``password`` comes from the secrets lookup."""
    if settings.url:
        from .mariadb import MariaDbSource, is_mariadb_url
        from .postgres import PostgresSource, is_postgres_url

        if is_postgres_url(settings.url):
            return PostgresSource(settings, password)
        if is_mariadb_url(settings.url):
            return MariaDbSource(settings, password)
        return SqlAlchemySource(settings, password)
    return OdbcSource(settings, password)


def param_style(settings: SourceSettings) -> ParamStyle:
    """How the source's queries write a placeholder."""
    if not settings.url:
        return "qmark"
    from .mariadb import is_mariadb_url
    from .postgres import is_postgres_url

    if is_postgres_url(settings.url):
        return "numeric"
    return "qmark" if is_mariadb_url(settings.url) else "named"


def _scrub(text: str, secret: str | None) -> str:
    """Drop a secret from driver text, which may quote the connection string."""
    if secret:
        text = text.replace(secret, "***")
    text = re.sub(r"(PWD|PASSWORD)=[^;]*", r"\1=***", text, flags=re.IGNORECASE)
    return " ".join(text.split())


def _line_ended(sql: str) -> str:
    """The SQL with a line break at its end: psqlODBC adds its own words after a
    statement, which a template's last line, a ``--`` comment, would swallow."""
    return sql if sql.endswith("\n") else sql + "\n"


def count_sql(sql: str) -> str:
    """The query wrapped to count its rows (a trailing ``;`` would break it)."""
    body = sql.rstrip().rstrip(";").rstrip()
    return f"SELECT COUNT(*) FROM (\n{body}\n) connector_count"


def odbc_quote(value: str) -> str:
    """Quote an ODBC attribute value so that ``;``, ``{`` and ``}`` are safe."""
    return "{" + value.replace("}", "}}") + "}"


class OdbcSource:
    """A pyodbc connection set up for the driver behind it."""

    param_style: ParamStyle = "qmark"

    def __init__(self, settings: SourceSettings, password: str | None) -> None:
        import pyodbc

        self._settings = settings
        self._password = password
        driver = self._driver_name()
        self._family = drivers.driver_family(driver)
        self._conn_str = self._connection_string(driver)
        log.debug("connecting over ODBC (driver %s)", driver or "from DSN")
        try:
            self._conn = pyodbc.connect(self._conn_str, timeout=settings.login_timeout)
        except pyodbc.Error as exc:
            raise self._connect_error(exc, driver) from None

        self._info = self._read_info()
        self._family = drivers.driver_family(driver, self._info.driver, self._info.dbms)
        # SQL Server's DATETIMEOFFSET arrives as raw bytes without a converter.
        self._conn.add_output_converter(
            drivers.SQL_SS_TIMESTAMPOFFSET, drivers.datetimeoffset
        )
        # What the session was set up with, replayed on the arrow-odbc connection.
        self._session: list[str] = []
        self._arrow: Any = None
        self._set_snapshot()
        self._set_decoding()
        self._set_query_timeout(settings.query_timeout)
        self._set_time_zone(settings.time_zone)
        log_connected(self._info)

    def _driver_name(self) -> str | None:
        """The driver named in the string, else the DSN's; None for no such DSN."""
        dsn = self._settings.dsn
        if self._settings.odbc:
            match = _DRIVER_IN_STRING.search(self._settings.odbc)
            if match:
                return match.group(1).strip()
            dsn = drivers.odbc_keys(self._settings.odbc).get("DSN")
        if not dsn:
            return None
        import pyodbc

        return dict(pyodbc.dataSources()).get(dsn)

    def _connection_string(self, driver: str | None) -> str:
        base = self._settings.odbc or f"DSN={odbc_quote(self._settings.dsn or '')}"
        parts = [base.rstrip(";")]
        upper = base.upper()
        if self._settings.user and "UID=" not in upper:
            parts.append(f"UID={odbc_quote(self._settings.user)}")
        if self._password is not None:
            parts.append(f"PWD={odbc_quote(self._password)}")
        if driver and "postgres" in driver.lower() and "USEDECLAREFETCH" not in upper:
            # psqlODBC buffers a whole result in memory unless told to use a cursor.
            batch = min(self._settings.batch_size, CURSOR_ROWS)
            parts.append(f"UseDeclareFetch=1;Fetch={batch}")
        parts.extend(self._driver_settings(base, driver))
        return ";".join(parts)

    def _driver_settings(self, base: str, driver: str | None) -> list[str]:
        """SQL Server's TLS settings and the driver's text settings (drivers.md)."""
        keys = drivers.odbc_keys(base)
        try:
            tls, warnings = drivers.tls_attributes(
                self._family, self._settings.tls, keys
            )
        except ValueError as exc:
            if driver is None:  # no such DSN: connecting says so, plainly
                return []
            raise ConfigError(f"{exc}; the source's driver is {driver}") from None
        if self._family == "mssql" and driver == "SQL Server":
            warnings.append(
                "DRIVER={SQL Server} is the old driver built into Windows: it lacks "
                "current TLS and newer types; install ODBC Driver 18 for SQL Server"
            )
        for warning in warnings:
            log.warning("%s", warning)
        return tls + drivers.driver_attributes(self._family, keys)

    def _connect_error(self, exc: Any, driver: str | None) -> ConnectError:
        import pyodbc

        state = exc.args[0] if exc.args else ""
        text = _scrub(str(exc.args[-1] if exc.args else exc), self._password)
        where = self._settings.dsn and f"DSN {self._settings.dsn!r}" or "the database"
        if driver and driver not in pyodbc.drivers() and "/" not in driver:
            installed = ", ".join(pyodbc.drivers()) or "none"
            return ConnectError(
                f"ODBC driver {driver!r} is not installed (installed: {installed}; "
                f"{drivers.bitness_note()}); fix DRIVER= in source.odbc or install "
                "the driver (see drivers.md)",
                exit_code=2,
            )
        if state == "IM002":
            return ConnectError(
                f"{where}: no such DSN or driver ({text}); run `connector drivers` "
                "to list what is installed",
                exit_code=2,
            )
        lowered = text.lower()
        refused = ("password", "denied", "authentication failed", "role ")
        if state in _AUTH_STATES or any(word in lowered for word in refused):
            return refused_login(where, text)
        hint = drivers.connect_hint(text) or (
            "check the server, port and database name in the source settings"
        )
        return ConnectError(f"cannot connect to {where}: {text}; {hint}")

    def _read_info(self) -> ServerInfo:
        import pyodbc

        def info(key: int) -> str:
            try:
                return str(self._conn.getinfo(key))
            except pyodbc.Error:
                return "unknown"

        return ServerInfo(
            dbms=info(pyodbc.SQL_DBMS_NAME),
            dbms_version=info(pyodbc.SQL_DBMS_VER),
            driver=info(pyodbc.SQL_DRIVER_NAME),
            driver_version=info(pyodbc.SQL_DRIVER_VER),
        )

    def _set_decoding(self) -> None:
        """Set text decoding per driver; pyodbc's defaults garble some drivers' text."""
        import pyodbc

        plan = drivers.decoding_for(self._family, self._settings.encoding)
        if plan is None:
            log.info(
                "no known text decoding for %s: pyodbc's defaults apply; set "
                "source.encoding if names come out wrong",
                self._info.driver,
            )
            return
        if plan.char_as_wide:
            self._conn.setdecoding(
                pyodbc.SQL_CHAR, encoding=plan.char, ctype=pyodbc.SQL_WCHAR
            )
        else:
            self._conn.setdecoding(pyodbc.SQL_CHAR, encoding=plan.char)
        self._conn.setdecoding(pyodbc.SQL_WCHAR, encoding=plan.wchar)
        self._conn.setencoding(encoding=plan.encode)

    def _set_snapshot(self) -> None:
        """Repeatable read, so the row count and the fetch see the same rows."""
        import pyodbc

        try:
            self._conn.set_attr(
                pyodbc.SQL_ATTR_TXN_ISOLATION, pyodbc.SQL_TXN_REPEATABLE_READ
            )
        except pyodbc.Error as exc:
            log.info(
                "driver %s keeps its own isolation level (%s)",
                self._info.driver,
                _scrub(str(exc), self._password),
            )

    def _set_time_zone(self, zone: str | None) -> None:
        """Make the session's time zone the school's, for timestamp-with-zone types.

        ``zone`` was checked against the IANA database when the config was read.
        """
        import pyodbc

        dbms = self._info.dbms.lower()
        if zone is None:
            if "postgres" in dbms:
                # Without a school zone, at least never depend on the host's PGTZ.
                self._conn.execute("SET TIME ZONE 'UTC'").close()
                self._session.append("SET TIME ZONE 'UTC'")
                log.info(
                    "source.time_zone is not set: timestamps with a zone are read "
                    "in UTC; set it to the schools' zone"
                )
            return
        if "postgres" in dbms:
            statement = f"SET TIME ZONE '{zone}'"
        elif "mariadb" in dbms or "mysql" in dbms:
            statement = f"SET time_zone = '{zone}'"
        else:
            return
        try:
            self._conn.execute(statement).close()
            self._session.append(statement)
        except pyodbc.Error:
            log.warning(
                "the server does not know time zone %s (MariaDB and MySQL need their "
                "time zone tables: mysql_tzinfo_to_sql); its TIMESTAMP columns stay "
                "in the server's zone",
                zone,
            )

    def _set_query_timeout(self, seconds: int) -> None:
        """ODBC's query timeout where the driver has it, else the server's own."""
        import pyodbc

        if not seconds:
            return
        statement = _timeout_statement(self._info.dbms.lower(), seconds)
        try:
            self._conn.timeout = seconds
            if statement:
                self._session.append(statement)
            return
        except pyodbc.Error:
            pass
        # psqlODBC refuses SQL_ATTR_QUERY_TIMEOUT on the connection (drivers.md).
        if statement is None:
            log.warning(
                "driver %s cannot limit query time; source.query_timeout is ignored",
                self._info.driver,
            )
            return
        try:
            self._conn.execute(statement).close()
            self._session.append(statement)
        except pyodbc.Error as exc:
            log.warning("could not set a query timeout: %s", _scrub(str(exc), None))

    def describe(self) -> ServerInfo:
        return self._info

    def _columnar(self) -> Any:
        """The arrow-odbc connection, set up as the pyodbc one; ``None`` if unused.

        Used for the drivers tested with it (PostgreSQL, MariaDB): it fetches a
        batch as columns in one call, about twice as fast as pyodbc's rows.
        """
        dbms = self._info.dbms.lower()
        isolation = None
        if "postgres" in dbms:
            isolation = (
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL "
                "REPEATABLE READ"
            )
        elif "mariadb" in dbms or "mysql" in dbms:
            isolation = "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"
        if isolation is None or self._settings.encoding:
            return None
        if self._arrow is None:
            import arrow_odbc

            try:
                conn = arrow_odbc.connect(
                    self._conn_str,
                    autocommit=False,
                    login_timeout_sec=self._settings.login_timeout,
                )
                for statement in (isolation, *self._session):
                    conn.execute(statement)
            except arrow_odbc.Error as exc:
                raise ConnectError(
                    f"cannot open the fetch connection: {_scrub(str(exc), None)}"
                ) from None
            self._arrow = conn
        return self._arrow

    def stream(self, query: Query, batch_size: int) -> tuple[list[str], Batches]:
        columnar = self._columnar()
        if columnar is None or not self._is_narrow(query):
            return self._stream_rows(query, batch_size)
        dbms = self._info.dbms.lower()
        chunk = self._settings.chunk_rows
        if query.key and chunk and ("mariadb" in dbms or "mysql" in dbms):
            return self._stream_chunks(columnar, query, batch_size, chunk)
        return self._stream_columns(columnar, query, batch_size)

    def _is_narrow(self, query: Query) -> bool:
        """Whether every text column's declared width fits the columnar buffers.

        A wider or unbounded column (``text``, ``LONGTEXT``) is read through
        pyodbc, which takes a long value in pieces and so gets it whole
        (drivers.md, "Long text"); the query is described with ``LIMIT 0``.
        """
        import pyodbc

        body = query.sql.rstrip().rstrip(";").rstrip()
        probe = f"SELECT * FROM (\n{body}\n) connector_probe LIMIT 0"
        try:
            with contextlib.closing(self._conn.cursor()) as cursor:
                cursor.execute(probe, query.params)
                description = cursor.description or ()
        except pyodbc.Error as exc:
            raise _query_error(query, exc, self._password) from None
        for column in description:
            width = column[3] or 0
            if column[1] in (str, bytes, bytearray) and not 0 < width <= TEXT_CHARS:
                log.info(
                    "column %s is wider than %d characters: fetching %s row by row",
                    column[0],
                    TEXT_CHARS,
                    query.template.name,
                )
                return False
        return True

    def _stream_chunks(
        self, conn: Any, query: Query, batch_size: int, chunk: int
    ) -> tuple[list[str], Batches]:
        """Fetch in chunks of at most ``chunk`` rows in key order.

        MariaDB Connector/ODBC holds a whole result in memory (drivers.md): one
        query per chunk bounds it. Each chunk's end is asked of the database
        first (the key ``chunk`` rows on, read through the key's index), and
        the chunk is every row from its start up to, not including, that key,
        as the database compares keys. Rows whose keys compare equal (IDs that
        differ only in case under a ``_ci`` collation, a repeated ID) so always
        fall in one chunk and reach the writer, which judges them.
        """
        keys = ", ".join(f"`{name}`" for name in query.key)
        body = query.sql.rstrip().rstrip(";").rstrip()
        names = [f"`{name}`" for name in query.key]
        params = list(query.params)
        Bound = tuple[str, list[Any]]

        def ladder(values: list[Any], last: str) -> tuple[list[str], list[Any]]:
            # (a > ?) OR (a = ? AND b > ?): MariaDB reads this as an index
            # range, a row comparison (a, b) > (?, ?) as a full scan. ``values``
            # may bound only the first key columns; ``last`` is the test of the
            # column after the equal ones, ``{}`` standing for its name.
            used = names[: len(values)]
            terms = [
                " AND ".join([*(f"{k} = ?" for k in used[:n]), last.format(used[n])])
                for n in range(len(used))
            ]
            return terms, [v for n in range(len(values)) for v in values[: n + 1]]

        def after(values: list[Any], *, inclusive: bool) -> Bound:
            terms, bound = ladder(values, "{} > ?")
            if inclusive:
                terms.append(equal(values)[0])
                bound.extend(values)
            return "(" + ") OR (".join(terms) + ")", bound

        def before(values: list[Any]) -> Bound:
            # Rows sorting before ``values`` (which hold no NULL): a NULL sorts
            # first, so (a < ? OR a IS NULL) OR (a = ? AND (b < ? OR b IS NULL)).
            terms, bound = ladder(values, "({0} < ? OR {0} IS NULL)")
            return "(" + ") OR (".join(terms) + ")", bound

        def equal(values: list[Any]) -> Bound:
            return " AND ".join(f"{k} = ?" for k in names[: len(values)]), values

        def select(what: str, bounds: list[Bound], tail: str) -> Query:
            where = " AND ".join(f"({sql})" for sql, _ in bounds)
            sql = (
                f"SELECT {what} FROM (\n{body}\n) connector_chunk"
                f"{f' WHERE {where}' if where else ''} ORDER BY {keys}{tail}"
            )
            bound = [v for _, values in bounds for v in values]
            return Query(sql, [*params, *bound], query.template)

        def end_of(bounds: list[Bound]) -> list[Any] | None:
            """The key ``chunk`` rows after the start, up to its first NULL (a
            NULL compares as unknown); None when no more than a chunk is left."""
            probe = select(keys, bounds, f" LIMIT 1 OFFSET {chunk}")
            _, found = self._stream_columns(conn, probe, 1)
            for batch in found:
                record = batch.record  # type: ignore[attr-defined]
                values = [record.column(i)[0].as_py() for i in range(len(names))]
                return list(itertools.takewhile(lambda v: v is not None, values))
            return None

        def rows_of(bounds: list[Bound], limit: bool) -> tuple[list[str], Batches]:
            tail = f" LIMIT {chunk}" if limit else ""
            return self._stream_columns(conn, select("*", bounds, tail), batch_size)

        end = end_of([])
        columns, first = rows_of([before(end)] if end else [], limit=end != [])
        if any(name not in columns for name in query.key):
            return columns, first  # the column check names what is missing

        def chunks() -> Batches:
            current, stop = first, end
            while True:
                rows = 0
                for batch in current:
                    rows += len(batch)
                    yield batch
                if not stop:
                    # None: the rest was at most a chunk. []: the key there
                    # starts with NULL, which bounds nothing: the rest came in
                    # one piece.
                    return
                if rows:
                    start = [after(stop, inclusive=True)]
                else:
                    # More than a chunk of rows share the key at the start:
                    # they come whole, and the next chunk starts after them.
                    yield from rows_of([equal(stop)], limit=False)[1]
                    start = [after(stop, inclusive=False)]
                log.debug("next chunk after %d rows", rows)
                stop = end_of(start)
                bounds = start if not stop else [*start, before(stop)]
                _, current = rows_of(bounds, limit=stop != [])

        return columns, chunks()

    def _stream_columns(
        self, conn: Any, query: Query, batch_size: int
    ) -> tuple[list[str], Batches]:
        import arrow_odbc

        from .csvout import ColumnBatch

        try:
            reader = conn.read_arrow_batches(
                _line_ended(query.sql),
                batch_size=batch_size,
                parameters=_text_params(query.params),
                max_bytes_per_batch=BATCH_BYTES,
                max_text_size=MAX_TEXT_BYTES,
                max_binary_size=MAX_TEXT_BYTES,
                fetch_concurrently=True,
            )
        except arrow_odbc.Error as exc:
            raise _arrow_error(query, exc, self._password, 0) from None
        columns = [name.lower() for name in reader.schema.names]

        def batches() -> Batches:
            fetched = 0
            while True:
                try:
                    record = next(reader, None)
                except arrow_odbc.Error as exc:
                    raise _arrow_error(query, exc, self._password, fetched) from None
                if record is None:
                    return
                if record.num_rows:
                    fetched += record.num_rows
                    yield ColumnBatch(record)  # type: ignore[misc]

        return columns, batches()

    def _stream_rows(self, query: Query, batch_size: int) -> tuple[list[str], Batches]:
        import pyodbc

        cursor = self._conn.cursor()
        try:
            cursor.execute(_line_ended(query.sql), query.params)
        except pyodbc.Error as exc:
            cursor.close()
            raise _query_error(query, exc, self._password) from None
        if cursor.description is None:
            cursor.close()
            raise QueryError(f"{query.template}: the query returned no result set")
        columns = [str(d[0]).lower() for d in cursor.description]

        def batches() -> Batches:
            try:
                while True:
                    try:
                        rows = cursor.fetchmany(batch_size)
                    except pyodbc.Error as exc:
                        raise _query_error(query, exc, self._password) from None
                    except UnicodeDecodeError as exc:
                        raise undecodable(query, exc) from None
                    except (ValueError, OverflowError):
                        dated = [
                            str(d[0])
                            for d in cursor.description or ()
                            if d[1] in (dt.date, dt.datetime)
                        ]
                        raise unreadable(query, dated, "the driver") from None
                    if not rows:
                        return
                    yield [tuple(r) for r in rows]
            finally:
                with contextlib.suppress(pyodbc.Error):
                    cursor.close()

        return columns, batches()

    def count(self, query: Query) -> int:
        """``COUNT(*)`` over the query, in the same transaction as the fetch."""
        import pyodbc

        columnar = self._columnar()
        if columnar is not None:
            import arrow_odbc

            try:
                reader = columnar.read_arrow_batches(
                    count_sql(query.sql), parameters=_text_params(query.params)
                )
                return int(next(iter(reader)).column(0)[0].as_py())
            except arrow_odbc.Error as exc:
                raise _arrow_error(query, exc, self._password, 0) from None
        try:
            with contextlib.closing(self._conn.cursor()) as cursor:
                row = cursor.execute(count_sql(query.sql), query.params).fetchone()
        except pyodbc.Error as exc:
            raise _query_error(query, exc, self._password) from None
        return int(row[0])

    def close(self) -> None:
        import pyodbc

        if self._arrow is not None:
            import arrow_odbc

            with contextlib.suppress(arrow_odbc.Error):
                self._arrow.rollback()
            self._arrow = None
        try:
            # Only SELECTs ran: end the read transaction before closing.
            self._conn.rollback()
        except pyodbc.Error:
            pass
        self._conn.close()

    def __enter__(self) -> OdbcSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OdbcSource(driver={self._info.driver!r}, dbms={self._info.dbms!r})"


# Database messages that quote a row's value: "invalid input syntax for type
# integer: "Lopez"", "... for type timestamp with time zone: "Lopez"", "invalid
# input value for enum mood: "Lopez"", "malformed array literal: "Lopez"", JSON's
# "Token "Lopez" is invalid", MySQL's "Incorrect integer value: 'Lopez' for
# column", SQLite's "Could not decode to UTF-8 column 'first_name' with text 'Jos?'".
_QUOTED_VALUE = re.compile(
    r"((?:syntax for type [\w ]+?|for enum [\w.\"]+|literal|value|key|Key|"
    r"with text|Token)[ :(]*)"
    r"""("[^"]*"|'[^']*'|\([^)]*\)=\([^)]*\))"""
)
# What PostgreSQL adds after its message can quote whole rows ("Failing row
# contains (...)", "JSON data, line 1: ..."): it is left out.
_DETAILS = re.compile(r"\s*\b(?:DETAIL|CONTEXT|HINT):.*", re.DOTALL)


def scrub_values(text: str) -> str:
    """Replace row values a database quoted in an error message with ``<value>``,
    and leave out the details that can hold whole rows."""
    return _QUOTED_VALUE.sub(r"\1<value>", _DETAILS.sub("", text))


def undecodable(query: Query, exc: UnicodeDecodeError) -> QueryError:
    """A fetched text that is not in the encoding the connection decodes with.

    Python's message names one byte and its position, never the value.
    """
    byte = exc.object[exc.start : exc.start + 1].hex()
    return QueryError(
        f"query from {query.template}: a text value is not valid {exc.encoding} "
        f"(byte 0x{byte}: {exc.reason}); the database holds text in another "
        "encoding: set source.encoding to it (see drivers.md, text decoding)"
    )


def unreadable(query: Query, dated: list[str], driver: str) -> QueryError:
    """A fetched value that has no Python form (a zero date, a year past 9999)."""
    where = f" (date columns: {', '.join(dated)})" if dated else ""
    return QueryError(
        f"query from {query.template}: {driver} cannot read a value of this "
        f"result{where}: a date with a zero month or day, a zero year or a year "
        "past 9999 has no form connector can write; turn it into NULL or text in "
        "the template (for example NULLIF(column, '0000-00-00'))"
    )


def _timeout_statement(dbms: str, seconds: int) -> str | None:
    """The server's own statement timeout, for drivers without ODBC's."""
    if "postgres" in dbms:
        return f"SET statement_timeout = {int(seconds) * 1000}"
    if "mariadb" in dbms:
        return f"SET SESSION max_statement_time = {int(seconds)}"
    if "mysql" in dbms:
        return f"SET SESSION max_execution_time = {int(seconds) * 1000}"
    return None


def _text_params(params: Any) -> list[str | None]:
    """Parameters as arrow-odbc binds them: text (the server converts)."""
    out: list[str | None] = []
    for value in params:
        if value is None or isinstance(value, str):
            out.append(value)
        elif isinstance(value, bool):
            out.append("1" if value else "0")
        elif isinstance(value, dt.date):
            out.append(value.isoformat())
        else:
            out.append(str(value))
    return out


def _arrow_error(query: Query, exc: Any, secret: str | None, fetched: int) -> Any:
    text = str(exc)
    if "too large to be written into the allocated buffer" in text:
        return QueryError(
            f"query from {query.template}: a text value after row {fetched} is "
            f"longer than {MAX_TEXT_BYTES} bytes, the limit for one value; nothing "
            "was written. Cut the column in the template (for example "
            "LEFT(column, 255)) or find the row with the DBA's tools"
        )
    state = _STATE.search(text)

    class _Args:
        args = (state.group(1) if state else "", text.split("Message: ")[-1])

    return _query_error(query, _Args(), secret)


def query_failed(
    query: Query,
    text: str,
    *,
    timed_out: bool = False,
    lost: bool = False,
    hint: str | None = None,
) -> QueryError:
    """A failed query as one line: what the database said (``text``, scrubbed)
    and what to do. A timeout or a lost connection says so first; else the
    driver's own ``hint``, else to check the template."""
    if timed_out:
        fix = TIMEOUT_HINT
    elif lost:
        fix = drivers.LOST_HINT
    else:
        fix = hint or "check the template against the database"
    return QueryError(f"query from {query.template} failed: {text}; {fix}")


def _query_error(query: Query, exc: Any, secret: str | None) -> QueryError:
    state = exc.args[0] if exc.args else ""
    text = scrub_values(_scrub(str(exc.args[-1] if exc.args else exc), secret))
    return query_failed(
        query,
        text,
        timed_out=state in ("HYT00", "HYT01") or "timeout" in text.lower(),
        lost=drivers.lost_connection(str(state), text),
        hint=drivers.query_hint(text),
    )


class SqlAlchemySource:
    """A SQLAlchemy connection streaming with server-side cursors where possible."""

    param_style: ParamStyle = "named"

    def __init__(self, settings: SourceSettings, password: str | None) -> None:
        import sqlalchemy as sa
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

        self._password = password
        try:
            url = sa.make_url(settings.url or "")
        except ArgumentError as exc:
            raise ConfigError(f"source.url is not a SQLAlchemy URL: {exc}") from None
        if settings.user:
            url = url.set(username=settings.user)
        if password is not None:
            url = url.set(password=password)
        url = _with_tls(url, settings)
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql" and settings.query_timeout:
            ms = settings.query_timeout * 1000
            connect_args["options"] = f"-c statement_timeout={ms}"
        options: dict[str, Any] = {}
        if url.get_backend_name() in ("postgresql", "mysql", "mariadb"):
            # The row count and the fetch must see the same rows.
            options["isolation_level"] = "REPEATABLE READ"
        try:
            self._engine = sa.create_engine(
                url, connect_args=connect_args, execution_options=options
            )
            self._conn = self._engine.connect()
        except NoSuchModuleError as exc:
            raise ConfigError(
                f"source.url: {exc}; install the Python driver for this database "
                "(see drivers.md)"
            ) from None
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"source.url needs the Python package {exc.name!r}; pip install it"
            ) from None
        except SQLAlchemyError as exc:
            text = _scrub(str(getattr(exc, "orig", exc)), password)
            where = url.render_as_string(hide_password=True)
            if "password" in text.lower() or "denied" in text.lower():
                raise refused_login(where, text) from None
            hint = drivers.connect_hint(text) or "check the server and database"
            raise ConnectError(f"cannot connect to {where}: {text}; {hint}") from None
        if url.get_backend_name() == "postgresql":
            # After connecting: libpq's PGTZ would override a startup option.
            # The name was checked against the IANA database with the config.
            zone = settings.time_zone or "UTC"
            self._conn.exec_driver_sql(f"SET TIME ZONE '{zone}'")
        dialect = self._engine.dialect
        self._info = ServerInfo(
            dbms=dialect.name,
            dbms_version=".".join(str(v) for v in dialect.server_version_info or ()),
            driver=f"{dialect.driver} (SQLAlchemy {sa.__version__})",
            driver_version="",
        )
        log.info("connected to %s through %s", self._info.dbms, self._info.driver)

    def describe(self) -> ServerInfo:
        return self._info

    def stream(self, query: Query, batch_size: int) -> tuple[list[str], Batches]:
        import sqlalchemy as sa
        from sqlalchemy.exc import SQLAlchemyError

        try:
            result = self._conn.execution_options(
                stream_results=True, yield_per=batch_size
            ).execute(sa.text(query.sql), query.params)
        except SQLAlchemyError as exc:
            raise self._query_error(query, exc) from None
        columns = [str(k).lower() for k in result.keys()]

        def batches() -> Batches:
            try:
                # An explicit size: without it partitions() loads every row first.
                for part in result.partitions(batch_size):
                    yield [tuple(r) for r in part]
            except SQLAlchemyError as exc:
                raise self._query_error(query, exc) from None
            finally:
                with contextlib.suppress(SQLAlchemyError):
                    result.close()

        return columns, batches()

    def _query_error(self, query: Query, exc: Exception) -> QueryError:
        text = scrub_values(_scrub(str(getattr(exc, "orig", exc)), self._password))
        return query_failed(query, text, lost=drivers.lost_connection("", text))

    def count(self, query: Query) -> int:
        """``COUNT(*)`` over the query, in the same transaction as the fetch."""
        import sqlalchemy as sa
        from sqlalchemy.exc import SQLAlchemyError

        try:
            value = self._conn.execute(
                sa.text(count_sql(query.sql)), query.params
            ).scalar_one()
        except SQLAlchemyError as exc:
            text = scrub_values(_scrub(str(getattr(exc, "orig", exc)), self._password))
            raise QueryError(
                f"counting the rows of {query.template} failed: {text}"
            ) from None
        return int(value)

    def close(self) -> None:
        self._conn.close()
        self._engine.dispose()

    def __enter__(self) -> SqlAlchemySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_tls(url: Any, settings: SourceSettings) -> Any:
    """A ``mssql+pyodbc`` URL with ``[source]``'s encryption settings in its query."""
    family: drivers.Family | None = None
    if url.get_backend_name() == "mssql":
        family = drivers.driver_family(str(url.query.get("driver", ""))) or "mssql"
    keys = {k.upper(): str(v) for k, v in url.query.items()}
    try:
        tls, warnings = drivers.tls_attributes(family, settings.tls, keys)
    except ValueError as exc:
        raise ConfigError(f"{exc}; source.url is {url.get_backend_name()}") from None
    for warning in warnings:
        log.warning("%s", warning)
    return url.update_query_dict(dict(part.split("=", 1) for part in tls))


def list_drivers() -> tuple[list[str], dict[str, str]]:
    """The ODBC drivers and DSNs the driver manager knows."""
    import pyodbc

    return list(pyodbc.drivers()), dict(pyodbc.dataSources())
