"""PostgreSQL through ADBC's libpq driver: a ``postgresql://`` URL with no driver.

The fastest way in for PostgreSQL. Rows come from a server-side cursor
(``DECLARE ... NO SCROLL CURSOR``, then ``FETCH n``) in PostgreSQL's binary
protocol, decoded into Arrow record batches by the driver, on a second thread
while the previous batch is written. The template's values are bound as
parameters of the ``DECLARE``; each takes the type the server infers for its
placeholder (a date for ``absence_date >= $1``), as a text value would over ODBC.

A text value longer than ``MAX_TEXT_CHARS`` bytes is cut on the server at one
character past ``MAX_TEXT_CHARS`` characters, so a batch never holds more than
that much of one value, and a longer one is an error, never a silent cut. A
``FETCH`` asks for as many rows as fit ``BATCH_BYTES`` at the size of the rows
fetched so far, so memory stays flat whatever the row count.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

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

# PostgreSQL types the driver decodes into Arrow types connector cleans as they
# are; every other column reaches us as the server's own text for it.
_NATIVE = frozenset(
    {"int2", "int4", "int8", "float8", "date", "timestamp", "timestamptz"}
    | {"bool", "oid"}
)
# Plain text, read as it is (a char(n)'s padding goes, as the rules trim it).
_TEXTS = frozenset({"text", "varchar", "bpchar", "name", "citext"})
# What psqlODBC gives for these, made on the server: money as a number, a uuid in
# capitals; every other type through its output function (``format('%s', v)``),
# as psql prints it: ``::1`` for an inet, ``1.1`` for a real.
_AS_ODBC = {"money": "{}::numeric::text", "uuid": "upper({}::text)"}
# The days and microseconds Python's dates can hold (years 1 to 9999).
_DAYS = (-719_162, 2_932_896)
_MICROSECONDS = (-62_135_596_800_000_000, 253_402_300_799_999_999)
_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(url: str | None) -> bool:
    """A PostgreSQL URL that names no Python driver (``postgresql://``)."""
    return bool(url) and urlsplit(url or "").scheme.lower() in _SCHEMES


def libpq_uri(settings: SourceSettings, password: str | None) -> str:
    """The URL as libpq takes it: the user, password and login timeout added,
    and the text asked for in UTF-8 (the server converts from its encoding)."""
    parts = urlsplit(settings.url or "")
    user = settings.user or (unquote(parts.username) if parts.username else None)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"source.url: {exc}") from None
    netloc = host + (f":{port}" if port else "")
    login = quote(user, safe="") if user else ""
    if password is not None:
        login += ":" + quote(password, safe="")
    if login:
        netloc = f"{login}@{netloc}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = {key for key, _ in query}
    if settings.login_timeout and "connect_timeout" not in given:
        query.append(("connect_timeout", str(settings.login_timeout)))
    if "client_encoding" not in given:
        query.append(("client_encoding", "UTF8"))
    if "application_name" not in given:
        query.append(("application_name", "connector"))
    # Written out by hand: urlunsplit drops the empty host of postgresql:///db
    # (the local socket), and urlencode's "+" for a space is a "+" to libpq.
    return f"postgresql://{netloc}{parts.path}?{urlencode(query, quote_via=quote)}"


class PostgresSource(NativeSource):
    """A libpq connection through ADBC, holding one read transaction.

    Every query of the run sees the same snapshot (repeatable read): a data set's
    ``COUNT(*)`` and its rows, and the students beside the attendance.
    """

    param_style: ParamStyle = "numeric"

    def __init__(self, settings: SourceSettings, password: str | None) -> None:
        import adbc_driver_manager
        import adbc_driver_postgresql

        if settings.encoding:
            raise ConfigError(
                "source.encoding is for ODBC drivers; over a postgresql:// URL the "
                "server converts its text to UTF-8 itself: remove source.encoding"
            )
        self._password = password
        self._settings = settings
        # The schools' zone, where set: timestamptz values are read in it. Values
        # bound to a timestamptz are taken in the session's zone (UTC without).
        self._school_zone = ZoneInfo(settings.time_zone) if settings.time_zone else None
        self._zone = self._school_zone or ZoneInfo("UTC")
        self._cursors = 0
        where = server_name(settings.url or "", "PostgreSQL")
        log.debug("connecting to %s through ADBC's PostgreSQL driver", where)
        try:
            self._database = adbc_driver_postgresql.connect(
                libpq_uri(settings, password)
            )
            self._conn: Any = adbc_driver_manager.AdbcConnection(self._database)
            self._conn.set_autocommit(False)
        except adbc_driver_manager.Error as exc:
            raise self._connect_error(exc, where) from None
        try:
            self._update("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            # After connecting: libpq's PGTZ would override a startup option.
            # The name was checked against the IANA database with the config.
            self._update(f"SET TIME ZONE '{settings.time_zone or 'UTC'}'")
            if settings.query_timeout:
                ms = int(settings.query_timeout) * 1000
                self._update(f"SET statement_timeout = {ms}")
            self._info = self._read_info(adbc_driver_postgresql.__version__)
            encoding = self._read_all("SHOW server_encoding").column(0)[0].as_py()
        except adbc_driver_manager.Error as exc:
            self.close()
            raise ConnectError(
                f"{where}: the session could not be set up: {self._text(exc)}"
            ) from None
        if str(encoding).upper() == "SQL_ASCII":
            self.close()
            raise ConnectError(
                f"{where}: the database's encoding is SQL_ASCII, which stores bytes "
                "without saying what they mean, so the server cannot give them as "
                "UTF-8; connect through ODBC (source.odbc) with source.encoding set "
                "to the encoding the SIS writes (for example latin-1)",
                exit_code=2,
            )
        log_connected(self._info)

    # -- the Source interface ------------------------------------------------

    def count(self, query: Query) -> int:
        """``COUNT(*)`` over the query, in the run's transaction."""
        sql = count_sql(query.sql)
        try:
            statement, params = self._prepare(sql, query.params)
            with contextlib.closing(statement):
                table = self._result(statement, params)
        except _errors() as exc:
            raise self._query_error(query, exc) from None
        return int(table.column(0)[0].as_py())

    def stream(self, query: Query, batch_size: int) -> tuple[list[str], Batches]:
        """The query's column names, and its rows in Arrow batches of at most
        ``batch_size`` rows (fewer where the rows are wide).

        The query is prepared here (its columns and the types of its values);
        its cursor is opened when the first batch is asked for, so batches
        closed unread leave nothing open.
        """
        body = query.sql.rstrip().rstrip(";").rstrip()
        try:
            statement, params = self._prepare(body, query.params)
            with contextlib.closing(statement):
                schema = _schema(statement.execute_schema())
        except _errors() as exc:
            raise self._query_error(query, exc) from None
        names = [field.name.lower() for field in schema]
        numeric = [
            i for i, f in enumerate(schema) if _pg_type(f) in ("numeric", "money")
        ]
        self._cursors += 1
        cursor = f"connector_rows_{self._cursors}"

        def fetch(rows: int) -> Any:
            table = self._read_all(f"FETCH {rows} FROM {cursor}")
            return table.combine_chunks().to_batches()[0] if table.num_rows else None

        def finish() -> None:
            with contextlib.suppress(*_errors()):
                self._update(f"CLOSE {cursor}")

        def batches() -> Batches:
            from .csvout import ColumnBatch

            try:
                self._update(
                    f"DECLARE {cursor} NO SCROLL CURSOR FOR {_capped(body, schema)}",
                    params,
                )
            except _errors() as exc:
                raise self._query_error(query, exc) from None
            fetcher = Prefetcher(
                fetch,
                limit=batch_size,
                error=lambda exc: self._query_error(query, exc),
                finish=finish,
                name=f"fetch-{cursor}",
            )
            with contextlib.closing(fetcher):
                for record in fetcher:
                    columns = _for_rules(record, numeric, self._school_zone)
                    before = fetcher.fetched - record.num_rows
                    check_lengths(query, names, columns, before)
                    yield ColumnBatch(record, columns)  # type: ignore[misc]

        return names, batches()

    def close(self) -> None:
        import adbc_driver_manager

        conn = getattr(self, "_conn", None)
        if conn is not None:
            # Only reads ran: end the transaction without keeping anything.
            with contextlib.suppress(adbc_driver_manager.Error):
                conn.rollback()
            with contextlib.suppress(adbc_driver_manager.Error):
                conn.close()
            self._conn = None
        database = getattr(self, "_database", None)
        if database is not None:
            with contextlib.suppress(adbc_driver_manager.Error):
                database.close()
            self._database = None

    # -- statements ----------------------------------------------------------

    def _statement(self, sql: str) -> Any:
        import adbc_driver_manager

        statement = adbc_driver_manager.AdbcStatement(self._conn)
        # Not COPY: it takes no parameters and cannot read from a cursor.
        statement.set_options(**{"adbc.postgresql.use_copy": "false"})
        statement.set_sql_query(sql)
        return statement

    def _prepare(self, sql: str, values: Any) -> tuple[Any, Any]:
        """The statement prepared, and its values as one row of the types the
        server infers for their places.

        A failed prepare ends the run's transaction (the driver then refuses
        every statement until a rollback), so there is no second try: a value
        whose type the server cannot infer (``$1 IS NULL``) is an error saying
        to cast it in the template.
        """
        statement = self._statement(sql)
        try:
            statement.prepare()
            return statement, self._param_batch(statement, list(values or []))
        except BaseException:
            statement.close()
            raise

    def _update(self, sql: str, params: Any = None) -> None:
        statement = self._statement(sql)
        try:
            if params is not None:
                statement.bind(params)
            statement.execute_update()
        finally:
            statement.close()

    def _read_all(self, sql: str, params: Any = None) -> Any:
        with contextlib.closing(self._statement(sql)) as statement:
            return self._result(statement, params)

    @staticmethod
    def _result(statement: Any, params: Any) -> Any:
        """Run a statement (prepared or not) and read its whole result."""
        import pyarrow as pa

        if params is not None:
            statement.bind(params)
        handle, _ = statement.execute_query()
        return pa.RecordBatchReader._import_from_c(handle.address).read_all()

    def _param_batch(self, statement: Any, values: list[Any]) -> Any:
        """The values as one row of the types the server inferred for them."""
        if not values:
            return None
        schema = _schema(statement.get_parameter_schema())
        if len(schema) != len(values):
            raise QueryError(
                f"the query has {len(schema)} placeholders for {len(values)} values; "
                "write values only as {{ name }} in the template"
            )
        return _record(
            [
                _param_array(f, v, n, self._zone)
                for n, (f, v) in enumerate(zip(schema, values, strict=True), 1)
            ]
        )

    def _read_info(self, version: str) -> ServerInfo:
        import pyarrow as pa

        handle = self._conn.get_info()
        rows = pa.RecordBatchReader._import_from_c(handle.address).read_all()
        info = {r["info_name"]: r["info_value"] for r in rows.to_pylist()}
        number = str(info.get(1, ""))
        shown = number
        if number.isdigit() and len(number) >= 5:
            shown = f"{int(number) // 10000}.{int(number) % 10000}"
        return ServerInfo(
            dbms=str(info.get(0, "PostgreSQL")),
            dbms_version=shown,
            driver="ADBC PostgreSQL (libpq)",
            driver_version=version,
        )

    # -- errors --------------------------------------------------------------

    def _text(self, exc: Exception, *, values: bool = True) -> str:
        """The server's or libpq's own words, without the statement the driver
        quotes (ours, around the template's), its caret lines and codes."""
        text = str(exc).split("Query was:")[0]
        text = re.sub(r"\bLINE \d+:.*", "", text, flags=re.DOTALL)
        text = re.sub(r"\.?\s*SQLSTATE: \w+", "", text)
        server = re.search(r"\b(ERROR|FATAL):\s+(.*)", text, flags=re.DOTALL)
        if server:
            text = server.group(2)
        else:
            text = re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", text.strip())
            text = re.sub(r"^Failed to connect: ", "", text)
        text = " ".join(text.split())
        text = _scrub(text, self._password)
        return (scrub_values(text) if values else text).rstrip(" .;")

    def _connect_error(self, exc: Exception, where: str) -> ConnectError:
        # No row value can be in a login's error: a setting's value stays shown.
        text = self._text(exc, values=False)
        lowered = text.lower()
        refused = ("password", "authentication failed", "role ", "pg_hba.conf")
        if any(word in lowered for word in refused):
            return refused_login(where, text)
        if (
            "invalid uri" in lowered
            or "invalid connection option" in lowered
            or (lowered.startswith("invalid ") and " value" in lowered)
        ):
            return ConnectError(
                f"source.url {where}: {text}; the URL's query may hold only libpq "
                "connection parameters (sslmode, sslrootcert, connect_timeout...)",
                exit_code=2,
            )
        return ConnectError(
            f"cannot connect to {where}: {text}; check the server, port and "
            "database name in source.url"
        )

    def _query_error(self, query: Query, exc: Exception) -> QueryError:
        if isinstance(exc, QueryError):
            return self.named(query, exc)
        text = self._text(exc)
        state = getattr(exc, "sqlstate", None) or ""
        hint = None
        if state == "42P18":
            hint = (
                "the database cannot tell a value's type from where it is used "
                "(as in {{ x }} IS NULL): cast it in the template, for example "
                "{{ x }}::text or {{ start_date }}::date"
            )
        elif state == "42883" and "operator does not exist" in text:
            hint = (
                "a value's type does not fit its column: give it the column's type "
                "in [params] (a number, a date) or cast it in the template, for "
                "example {{ school_id }}::integer"
            )
        return query_failed(
            query,
            text,
            timed_out=state == "57014" or "statement timeout" in text,
            lost=lost_connection(state, text),
            hint=hint,
        )


def _errors() -> tuple[type[Exception], ...]:
    import adbc_driver_manager

    return (adbc_driver_manager.Error, QueryError)


def _schema(handle: Any) -> Any:
    import pyarrow as pa

    return pa.Schema._import_from_c(handle.address)


def _pg_type(field: Any) -> str:
    meta = field.metadata or {}
    return str(meta.get(b"POSTGRESQL:type", b"").decode())


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _capped(body: str, schema: Any) -> str:
    """The query with each column renamed by position, every column of a type
    connector does not read natively as the server's text for it, and every
    text value longer than ``MAX_TEXT_CHARS`` bytes cut on the server at one
    character past ``MAX_TEXT_CHARS`` characters (so ``_check_lengths`` sees it)."""
    inner = [f"c{n}" for n in range(1, len(schema) + 1)]
    outer = []
    for name, field in zip(inner, schema, strict=True):
        kind = _pg_type(field)
        if kind in _NATIVE:
            value = name
        elif kind == "bytea":
            value = (
                f"CASE WHEN octet_length({name}) > {MAX_TEXT_CHARS} THEN "
                f"substring({name} from 1 for {MAX_TEXT_CHARS + 1}) ELSE {name} END"
            )
        else:
            # A value of at most MAX_TEXT_CHARS bytes is never cut, and
            # octet_length reads only its header: the cut costs nothing.
            if kind in _TEXTS:
                text = f"{name}::text"
            else:
                text = _AS_ODBC.get(kind, "format('%s', {})").format(name)
            value = (
                f"CASE WHEN octet_length({text}) > {MAX_TEXT_CHARS} THEN "
                f"left({text}, {MAX_TEXT_CHARS + 1}) ELSE {text} END"
            )
        outer.append(f"{value} AS {_quote_name(field.name)}")
    return (
        f"SELECT {', '.join(outer)} FROM (\n{body}\n) "
        f"connector_rows({', '.join(inner)})"
    )


def _record(arrays: list[Any]) -> Any:
    import pyarrow as pa

    return pa.record_batch(arrays, names=[f"p{n}" for n in range(1, len(arrays) + 1)])


def _param_array(field: Any, value: Any, number: int, zone: ZoneInfo) -> Any:
    """One value as an Arrow array of the placeholder's inferred type.

    A value of another type is converted as the server would convert its text:
    ``"2024"`` to a number, a date to midnight of a timestamp (in the session's
    zone, ``zone``, for a ``timestamptz``), a number to text. Nothing is
    rounded: ``2024.9`` is not an integer.
    """
    import pyarrow as pa

    kind = field.type
    try:
        if _pg_type(field) == "numeric":
            # The driver reads numeric as text; it binds a decimal as numeric.
            if value is None:
                return pa.nulls(1, pa.decimal128(38, 0))
            return pa.array([Decimal(_as_text(value))])
        if value is None:
            return pa.nulls(1, kind if _bindable(kind) else pa.string())
        if not _bindable(kind):
            # A type the driver has no Arrow type for (an enum, uuid, json): the
            # value's own type, which the server casts where it can.
            try:
                return pa.array([value])
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                return pa.array([_as_text(value)], pa.string())
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pa.array([_as_text(value)], pa.string())
        if pa.types.is_timestamp(kind):
            return pa.array([_moment(value, zone if kind.tz else None)], kind)
        if pa.types.is_date(kind):
            day = value
            if isinstance(value, str):
                day = dt.date.fromisoformat(value.strip())
            elif isinstance(value, dt.datetime):
                day = value.date()
            return pa.array([day], kind)
        if pa.types.is_integer(kind) and not isinstance(value, bool):
            number_value = int(value.strip()) if isinstance(value, str) else value
            if isinstance(number_value, float | Decimal):
                if number_value != int(number_value):
                    raise ArithmeticError(value)
                number_value = int(number_value)
            return pa.array([number_value], kind)
        if isinstance(value, str):
            return pa.array([value.strip()], pa.string()).cast(kind)
        return pa.array([value]).cast(kind)
    except (
        pa.ArrowInvalid,
        pa.ArrowTypeError,
        OverflowError,
        ArithmeticError,
        ValueError,
        TypeError,
    ):
        raise QueryError(
            f"value {number} of the template is not of type {_pg_type(field) or kind}, "
            "the type the database expects where it is used; give it that type "
            "in [params] or --param, or cast it in the template"
        ) from None


def _moment(value: Any, zone: ZoneInfo | None) -> dt.datetime:
    """A date or time as a timestamp: a date is its midnight, and a time without
    a zone is taken in ``zone`` where the column has one."""
    if isinstance(value, str):
        text = value.strip()
        moment = (
            dt.datetime.fromisoformat(text)
            if "T" in text or " " in text or ":" in text
            else dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
        )
    elif isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    else:
        raise TypeError(value)
    if zone is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def _bindable(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_string(kind)
        or pa.types.is_date(kind)
        or pa.types.is_timestamp(kind)
    )


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _for_rules(record: Any, numeric: list[int], zone: ZoneInfo | None) -> list[Any]:
    """The record's columns as the field rules take them: a ``numeric`` one as
    Python decimals (as ODBC gives them: ``12.00`` is written ``12``); a
    ``timestamptz`` in the schools' zone; a date or timestamp Python cannot
    hold (``infinity``, a year past 9999 or before 1) as the text ``out of
    range``, which the rules give as an invalid date."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: list[Any] = list(record.columns)
    for i in numeric:
        columns[i] = [None if v is None else Decimal(v) for v in columns[i].to_pylist()]
    for i, column in enumerate(columns):
        if not isinstance(column, pa.Array):
            continue
        if pa.types.is_date32(column.type):
            counts, bounds = column.cast(pa.int32()), _DAYS
        elif pa.types.is_timestamp(column.type) and column.type.unit == "us":
            counts, bounds = column.cast(pa.int64()), _MICROSECONDS
        else:
            continue
        low, high = pc.min_max(counts).values()
        if low.is_valid and (low.as_py() < bounds[0] or high.as_py() > bounds[1]):
            inside = pc.and_(
                pc.greater_equal(counts, bounds[0]), pc.less_equal(counts, bounds[1])
            )
            kept = pc.if_else(inside, column, pa.nulls(len(column), column.type))
            columns[i] = [
                value if ok in (True, None) else "out of range"
                for value, ok in zip(kept.to_pylist(), inside.to_pylist(), strict=True)
            ]
        elif zone is not None and pa.types.is_timestamp(column.type) and column.type.tz:
            columns[i] = column.cast(pa.timestamp(column.type.unit, tz=zone.key))
    return columns
