"""Driver traps that drivers.md documents: passwords, TLS keys, types and errors.

The password tests run against a private PostgreSQL started for this module with
scram-sha-256 authentication (the shared server trusts every login on
127.0.0.1, so a wrong password would not be noticed there). What needs SQL
Server or Progress is tested at the level that runs here: the connection string
built, the converter on raw bytes, the hint on a driver's message.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pyodbc
import pytest
from typer.testing import CliRunner

from connector import drivers
from connector.cli import app
from connector.config import SourceSettings, load_job
from connector.database import OdbcSource, _query_error, open_source
from connector.datasets import Column, Kind
from connector.errors import ConfigError, ConnectError, QueryError
from connector.fields import cleaner
from connector.templates import Query

from .conftest import connector_command, require

PREFIX = "c6b_"
ADMIN_PASSWORD = "admin-only-for-this-test"


@dataclass
class PrivatePostgres:
    port: int

    def admin(self) -> pyodbc.Connection:
        return pyodbc.connect(
            f"{self.odbc('postgres')};PWD={{{ADMIN_PASSWORD}}}",
            autocommit=True,
            timeout=10,
        )

    def odbc(self, user: str) -> str:
        return (
            f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={self.port};"
            f"DATABASE=postgres;UID={user}"
        )

    def url(self, user: str) -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/postgres"

    def libpq(self, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/postgres"

    def source(self, kind: str, user: str) -> dict[str, str]:
        """``{"odbc": ...}`` or ``{"url": ...}``: the [source] key and its value
        (``libpq`` is a URL naming no driver, read through ADBC)."""
        if kind == "libpq":
            return {"url": self.libpq(user)}
        return {kind: self.odbc(user) if kind == "odbc" else self.url(user)}


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A throwaway PostgreSQL cluster on a free loopback port, passwords checked."""
    require("PostgreSQL Unicode" in pyodbc.drivers(), "psqlODBC is not installed")
    bindir = _postgres_bin()
    require(bindir is not None, "PostgreSQL's initdb is not installed")
    assert bindir is not None
    # initdb refuses to run as root: run the server as the postgres account then.
    as_user: list[str] = []
    if os.geteuid() == 0:
        require(shutil.which("runuser") is not None, "runuser is missing")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}pg_"))
    data, pwfile = folder / "data", folder / "pw"
    pwfile.write_text(ADMIN_PASSWORD + "\n")
    if as_user:
        shutil.chown(folder, "postgres")
        shutil.chown(pwfile, "postgres")
    port = _free_port()
    subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-l", str(folder / "log"), "-w", "-o", options, "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield PrivatePostgres(port)
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def login(private_postgres: PrivatePostgres) -> Iterator[str]:
    """A login role on the private server, dropped after the test."""
    user = f"{PREFIX}login_{os.getpid()}"
    with private_postgres.admin() as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{user}"')
        conn.execute(f'CREATE ROLE "{user}" LOGIN')
    yield user
    with private_postgres.admin() as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{user}"')


def set_password(pg: PrivatePostgres, user: str, password: str) -> None:
    with pg.admin() as conn:
        # ALTER ROLE takes no bound parameter: a literal, quotes doubled.
        literal = password.replace("'", "''")
        conn.execute(f"ALTER ROLE \"{user}\" PASSWORD '{literal}'")


SPECIAL = {
    "semicolon": "pa;ss",
    "close-brace": "pa}ss",
    "at": "pa@ss",
    "percent": "pa%ss",
    "open-brace": "pa{ss",
    "all": "x;}@%{y}}{=' \"é;",
}


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["odbc", "url", "libpq"])
@pytest.mark.parametrize("password", list(SPECIAL.values()), ids=list(SPECIAL))
def test_a_password_with_special_characters_logs_in_exactly(
    private_postgres: PrivatePostgres,
    login: str,
    kind: str,
    password: str,
) -> None:
    set_password(private_postgres, login, password)
    where = private_postgres.source(kind, login)

    with open_source(SourceSettings(**where), password) as src:  # type: ignore[arg-type]
        params: list[object] | dict[str, object] = [] if kind != "url" else {}
        _, batches = src.stream(
            Query("SELECT current_user AS who", params, Path("inline.sql")), 10
        )
        assert [row for batch in batches for row in batch] == [(login,)]

    # The server really checks: the same password less its last character fails.
    with pytest.raises(ConnectError) as refused:
        open_source(SourceSettings(**where), password[:-1])  # type: ignore[arg-type]
    assert refused.value.exit_code == 3


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["odbc", "url", "libpq"])
def test_a_wrong_password_is_refused_with_exit_3_and_never_shown(
    private_postgres: PrivatePostgres,
    login: str,
    tmp_path: Path,
    kind: str,
) -> None:
    set_password(private_postgres, login, SPECIAL["all"])
    wrong = "Wrong;}{@%-Pa55"
    [(key, value)] = private_postgres.source(kind, login).items()
    write_source(tmp_path, f'{key} = {_toml(value)}\npassword_secret = "sis-db"')
    env = {"PATH": "/usr/bin:/bin"}
    for password, code in ((wrong, 3), (SPECIAL["all"], 0)):
        result = subprocess.run(
            [*connector_command(), "test", "-c", "connector.toml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**env, "CONNECTOR_SECRET_SIS_DB": password},
            timeout=120,
        )
        output = result.stdout + result.stderr
        if code == 3:
            assert result.returncode == 3, output
            assert "refused the login" in result.stderr
            assert "Traceback" not in output
        else:
            # Logged in: the server is shown, then "SELECT 1" lacks the columns.
            assert "server: postgresql" in result.stdout.lower(), output
            assert "refused the login" not in output, output
        assert password not in output
        assert wrong not in output and SPECIAL["all"] not in output


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- SQL Server: Encrypt= and TrustServerCertificate= ---------------------------

ENCRYPT = [None, True, False, "strict"]
TRUST = [None, True, False]
DRIVER_18 = "DRIVER={ODBC Driver 18 for SQL Server};SERVER=sis-sql,1433;DATABASE=SIS"


@pytest.mark.parametrize("trust", TRUST, ids=lambda v: f"trust={v}")
@pytest.mark.parametrize("encrypt", ENCRYPT, ids=lambda v: f"encrypt={v}")
@pytest.mark.parametrize("family", ["mssql", "freetds"])
def test_tls_settings_become_the_drivers_attributes(
    family: drivers.Family, encrypt: bool | str | None, trust: bool | None
) -> None:
    tls = drivers.Tls(encrypt, trust)  # type: ignore[arg-type]
    parts, warnings = drivers.tls_attributes(family, tls, {})

    words = {"mssql": {True: "yes", False: "no", "strict": "strict"}}
    words["freetds"] = {True: "require", False: "off", "strict": "strict"}
    expected = []
    if encrypt is not None:
        key = "Encrypt" if family == "mssql" else "Encryption"
        expected.append(f"{key}={words[family][encrypt]}")
    if trust is not None and family == "mssql":
        expected.append(f"TrustServerCertificate={'yes' if trust else 'no'}")
    assert parts == expected
    # Trusting is always warned about and never added unless asked for.
    assert any("NOT verified" in w for w in warnings) == bool(trust)
    assert ("TrustServerCertificate=yes" in parts) == (
        trust is True and family == "mssql"
    )


def built(settings: SourceSettings, password: str | None) -> str:
    """The connection string OdbcSource would connect with (no driver needed)."""
    src = OdbcSource.__new__(OdbcSource)
    src._settings, src._password = settings, password
    driver = src._driver_name()
    src._family = drivers.driver_family(driver)
    return src._connection_string(driver)


@pytest.mark.parametrize("trust", TRUST, ids=lambda v: f"trust={v}")
@pytest.mark.parametrize("encrypt", ENCRYPT, ids=lambda v: f"encrypt={v}")
def test_the_driver_18_connection_string_for_each_combination(
    encrypt: bool | str | None, trust: bool | None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = SourceSettings(
        odbc=DRIVER_18,
        user="connector",
        encrypt=encrypt,  # type: ignore[arg-type]
        trust_server_certificate=trust,
    )
    text = built(settings, "p;w}d")

    expected = [DRIVER_18, "UID={connector}", "PWD={p;w}}d}"]
    if encrypt is not None:
        expected.append(f"Encrypt={ {True: 'yes', False: 'no'}.get(encrypt, encrypt) }")
    if trust is not None:
        expected.append(f"TrustServerCertificate={'yes' if trust else 'no'}")
    assert text == ";".join(expected)
    assert drivers.odbc_keys(text)["PWD"] == "p;w}d"
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == (1 if trust else 0)


def test_freetds_gets_its_own_keys_and_utf8_text() -> None:
    settings = SourceSettings(
        odbc="DRIVER={FreeTDS};SERVER=sis-sql;PORT=1433;TDS_Version=7.4",
        encrypt=True,
    )
    text = built(settings, None)
    assert text.endswith(";TDS_Version=7.4;Encryption=require;ClientCharset=UTF-8")


def test_the_old_windows_driver_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    built(SourceSettings(odbc="DRIVER={SQL Server};SERVER=sis-sql"), None)
    assert "install ODBC Driver 18" in caplog.text


def test_tls_settings_with_an_unknown_dsn_leave_the_error_to_connecting() -> None:
    settings = SourceSettings(odbc="DSN=c6b_no_such_dsn", encrypt=True)
    assert built(settings, None) == "DSN=c6b_no_such_dsn"
    settings = SourceSettings(dsn="c6b_no_such_dsn", encrypt=True)
    with pytest.raises(ConnectError) as info:
        OdbcSource(settings, None)
    assert info.value.exit_code == 2


def test_trust_written_in_the_string_is_warned_about_too() -> None:
    keys = drivers.odbc_keys(DRIVER_18 + ";TrustServerCertificate=yes")
    parts, warnings = drivers.tls_attributes("mssql", drivers.Tls(), keys)
    assert parts == [] and len(warnings) == 1 and "NOT verified" in warnings[0]


@pytest.mark.parametrize(
    ("extra", "setting"),
    [
        (";Encrypt=yes", 'encrypt = "strict"'),
        (";encrypt=no", "encrypt = true"),
        (";TrustServerCertificate={yes}", "trust_server_certificate = false"),
        (";Encrypt=yes;TrustServerCertificate=yes", "trust_server_certificate = true"),
    ],
    ids=["encrypt", "case", "trust-braced", "trust"],
)
def test_a_setting_also_written_in_the_string_is_a_config_error(
    tmp_path: Path, extra: str, setting: str
) -> None:
    config = write_source(tmp_path, f"odbc = {_toml(DRIVER_18 + extra)}\n{setting}")
    with pytest.raises(ConfigError, match="both set; keep only the") as info:
        load_job(config)
    assert "source" in str(info.value)


def test_the_drivers_md_sql_server_example_is_a_valid_config(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "drivers.md").read_text(encoding="utf-8")
    example = text.split("## SQL Server", 1)[1].split("```\n", 2)[1]
    lines = example.splitlines()[:3]  # the Driver 18 string and its two keys
    assert lines[1].startswith("encrypt = true")
    job = load_job(write_source(tmp_path, "\n".join(lines)))
    assert job.source.tls == drivers.Tls(encrypt=True, trust_server_certificate=None)


@pytest.mark.parametrize("value", ['"yes"', "1", '"mandatory"'])
def test_encrypt_takes_true_false_or_strict(tmp_path: Path, value: str) -> None:
    config = write_source(tmp_path, f"odbc = {_toml(DRIVER_18)}\nencrypt = {value}")
    with pytest.raises(ConfigError, match='source.encrypt: must be true, false or "'):
        load_job(config)


@pytest.mark.parametrize(
    "source",
    [
        'odbc = "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1"',
        'url = "postgresql+psycopg://connector@db/sis"',
    ],
    ids=["odbc", "url"],
)
def test_tls_settings_on_another_database_are_a_config_error(
    tmp_path: Path, source: str
) -> None:
    config = write_source(tmp_path, f"{source}\nencrypt = true")
    with pytest.raises(ConfigError, match="SQL Server"):
        load_job(config)


def test_tls_settings_reach_a_sql_server_url_query(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from connector.database import _with_tls

    settings = SourceSettings(
        url="mssql+pyodbc://connector@SIS?driver=ODBC+Driver+18+for+SQL+Server",
        encrypt=True,
        trust_server_certificate=False,
    )
    url = _with_tls(sa.make_url(settings.url or ""), settings)
    assert url.query["Encrypt"] == "yes"
    assert url.query["TrustServerCertificate"] == "no"


def write_source(folder: Path, source: str) -> Path:
    (folder / "students.sql").write_text("SELECT 1")
    config = folder / "connector.toml"
    config.write_text(
        f'[source]\n{source}\n[datasets.students]\ntemplate = "students.sql"\n'
    )
    return config


def test_trusting_logs_a_warning_each_run(caplog: pytest.LogCaptureFixture) -> None:
    """The warning comes before connecting (Driver 18 is not installed here)."""
    settings = SourceSettings(odbc=DRIVER_18, trust_server_certificate=True)
    with pytest.raises(ConnectError):
        OdbcSource(settings, None)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "trust_server_certificate = true" in warnings[0].getMessage()


def test_a_certificate_failure_says_what_to_do() -> None:
    message = (
        "[08001] [Microsoft][ODBC Driver 18 for SQL Server]SSL Provider: "
        "[error:0A000086:SSL routines::certificate verify failed:self-signed "
        "certificate] (-1) (SQLDriverConnect)"
    )
    hint = drivers.connect_hint(message)
    assert hint is not None
    assert "CA certificate" in hint and "trust_server_certificate" in hint
    assert drivers.connect_hint("Login timeout expired") is None


# --- SQL Server: DATETIMEOFFSET ---------------------------------------------------


def raw_datetimeoffset(
    when: tuple[int, int, int, int, int, int], nanos: int, hours: int, minutes: int
) -> bytes:
    """The driver's SQL_SS_TIMESTAMPOFFSET_STRUCT, as pyodbc hands it over."""
    return struct.pack("<6hI2h", *when, nanos, hours, minutes)


# One instant, 04:30 UTC on 3 March 2026: 22:30 on 2 March in Chicago.
SAME_INSTANT = [
    ((2026, 3, 3, 4, 30, 0), 0, 0, 0),
    ((2026, 3, 2, 22, 30, 0), 0, -6, 0),
    ((2026, 3, 3, 10, 0, 0), 0, 5, 30),
    ((2026, 3, 2, 23, 30, 0), 0, -5, 0),
]


@pytest.mark.parametrize(
    ("when", "nanos", "hours", "minutes"),
    SAME_INSTANT,
    ids=["utc", "chicago", "kolkata", "new-york"],
)
def test_datetimeoffset_gives_the_chicago_date_across_utc_midnight(
    when: tuple[int, int, int, int, int, int], nanos: int, hours: int, minutes: int
) -> None:
    value = drivers.datetimeoffset(raw_datetimeoffset(when, nanos, hours, minutes))

    assert value == dt.datetime(2026, 3, 3, 4, 30, tzinfo=dt.UTC)
    assert value.utcoffset() == dt.timedelta(hours=hours, minutes=minutes)
    date = Column("absence_date", "Absence Date", Kind.DATE, 10, is_required=True)
    clean = cleaner(date, ZoneInfo("America/Chicago"))
    assert clean(value)[0] == "03/02/2026"
    assert cleaner(date, ZoneInfo("UTC"))(value)[0] == "03/03/2026"


def test_datetimeoffset_keeps_fractions_and_negative_minutes() -> None:
    raw = raw_datetimeoffset((2025, 12, 31, 23, 59, 59), 123_456_789, -3, -30)
    value = drivers.datetimeoffset(raw)
    assert value.microsecond == 123_456
    assert value.utcoffset() == -dt.timedelta(hours=3, minutes=30)
    assert value.astimezone(dt.UTC) == dt.datetime(
        2026, 1, 1, 3, 29, 59, 123_456, tzinfo=dt.UTC
    )


@pytest.mark.integration
def test_raw_bytes_through_a_real_driver_give_the_school_date(
    sis_loaded: None,
) -> None:
    """pyodbc hands a converter the column's bytes as they are: here a bytea."""
    raw = raw_datetimeoffset((2026, 3, 3, 4, 30, 0), 0, 0, 0)
    with OdbcSource(SourceSettings(odbc=LIVE["postgres"][0]), None) as src:
        # psqlODBC reports bytea as SQL_LONGVARBINARY (ByteaAsLongVarBinary=1).
        src._conn.add_output_converter(pyodbc.SQL_LONGVARBINARY, drivers.datetimeoffset)
        sql = "SELECT CAST(? AS bytea) AS d UNION ALL SELECT NULL"
        _, batches = src.stream(Query(sql, [raw], Path("inline.sql")), 10)
        values = [row[0] for batch in batches for row in batch]
    date = Column("absence_date", "Absence Date", Kind.DATE, 10, is_required=True)
    clean = cleaner(date, ZoneInfo("America/Chicago"))
    assert [clean(v)[0] for v in values] == ["03/02/2026", ""]
    assert drivers.datetimeoffset(None) is None


@pytest.mark.integration
def test_the_converter_is_registered_on_a_real_connection(sis_loaded: None) -> None:
    settings = SourceSettings(
        odbc="DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;UID=postgres;"
        "DATABASE=postgres"
    )
    with OdbcSource(settings, None) as src:
        converter = src._conn.get_output_converter(drivers.SQL_SS_TIMESTAMPOFFSET)
    assert converter is drivers.datetimeoffset


# --- Progress OpenEdge --------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "[DataDirect][ODBC Progress OpenEdge Wire Protocol driver][OPENEDGE]Column "
        "LastName in table PUB.Student has value exceeding its max length or "
        "precision. (-210012) (SQLFetch)",
        # Older releases wrote "it max length".
        "[DataDirect][ODBC OPENEDGE driver][OPENEDGE]Column Addr in table "
        "PUB.Family has value exceeding it max length or precision. (-210012)",
    ],
    ids=["current", "older"],
)
def test_a_progress_width_error_says_how_to_fix_it(message: str) -> None:
    error = _query_error(
        Query("SELECT 1", [], Path("queries/x/students.sql.j2")),
        pyodbc.Error("HY000", message),
        None,
    )
    assert isinstance(error, QueryError)
    text = str(error)
    assert text.startswith("query from queries/x/students.sql.j2 failed:")
    assert "wider than the column's SQL width" in text
    assert "SUBSTRING(" in text and "SQL Width Scan w/Fix Option" in text


# --- Text: decoding per driver, long columns ---------------------------------------

NAMES = "Nguyễn Zoë 李明 Ørjan 김민준 Łucja O’Brien 😀"
LONG = "é" * 300_000 + "END"


@pytest.mark.parametrize(
    ("driver", "dbms", "family"),
    [
        ("ODBC Driver 18 for SQL Server", "Microsoft SQL Server", "mssql"),
        ("libmsodbcsql-17.10.so.6.1", "Microsoft SQL Server", "mssql"),
        ("FreeTDS", "Microsoft SQL Server", "freetds"),
        ("libtdsodbc.so", "Microsoft SQL Server", "freetds"),
        ("PostgreSQL Unicode", "PostgreSQL", "postgres"),
        ("MariaDB Unicode", "MariaDB", "mariadb"),
        ("MySQL ODBC 8.0 Unicode Driver", "MySQL", "mysql"),
        ("SQLite3", "SQLite", "sqlite"),
        ("Oracle in instantclient_21_12", "Oracle", "oracle"),
        ("Progress OpenEdge 12.2 Driver", "OpenEdge", "progress"),
    ],
)
def test_each_driver_gets_its_decoding(driver: str, dbms: str, family: str) -> None:
    assert drivers.driver_family(driver, dbms) == family
    plan = drivers.decoding_for(drivers.driver_family(driver))
    assert plan is not None
    if family in ("mssql", "oracle", "progress"):
        assert plan.char_as_wide and plan.wchar == "utf-16le"
    elif family in ("mariadb", "mysql", "sqlite"):
        assert (plan.char, plan.wchar) == ("utf-8", "utf-8")
    else:
        assert (plan.char, plan.wchar) == ("utf-8", "utf-16le")
    assert drivers.decoding_for(family, "cp1252") == drivers.Decoding(  # type: ignore[arg-type]
        "cp1252", "cp1252", "cp1252"
    )


def test_freetds_gets_utf8_client_text_unless_the_string_says() -> None:
    assert drivers.driver_attributes("freetds", {}) == ["ClientCharset=UTF-8"]
    keys = drivers.odbc_keys("DRIVER={FreeTDS};ClientCharset=ISO-8859-1")
    assert drivers.driver_attributes("freetds", keys) == []
    assert drivers.driver_attributes("mssql", {}) == []


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("DRIVER={A};UID=x", {"DRIVER": "A", "UID": "x"}),
        ("driver={A b};PWD={a;b}}c};X=1;", {"DRIVER": "A b", "PWD": "a;b}c", "X": "1"}),
        ("DSN=s; Encrypt = yes ;uid=u", {"DSN": "s", "ENCRYPT": "yes", "UID": "u"}),
    ],
)
def test_odbc_keys(text: str, keys: dict[str, str]) -> None:
    assert drivers.odbc_keys(text) == keys


def _sqlite_file(tmp_path: Path) -> Path:
    import sqlite3

    path = tmp_path / "names.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, name TEXT, note VARCHAR(20))")
        conn.execute("INSERT INTO t VALUES (1, ?, ?)", (NAMES, NAMES))
        conn.execute("INSERT INTO t VALUES (2, ?, 'x')", (LONG,))
    conn.close()
    return path


LIVE = {
    "postgres": (
        "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;UID=postgres;"
        "DATABASE=postgres",
        "SELECT CAST(? AS text) AS v UNION ALL SELECT repeat('é', 300000) || 'END'",
    ),
    "mariadb": (
        "DRIVER={MariaDB Unicode};SOCKET=/run/mysqld/mysqld.sock;UID=root;"
        "CHARSET=utf8mb4",
        "SELECT CAST(? AS CHAR) AS v UNION ALL "
        "SELECT CONCAT(REPEAT('é', 300000), 'END')",
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("database", ["postgres", "mariadb", "sqlite3"])
def test_names_and_long_text_are_read_in_full(
    tmp_path: Path, database: str, sis_loaded: None
) -> None:
    """A 300,000-character text value arrives whole, and no row goes missing."""
    if database == "sqlite3":
        require("SQLite3" in pyodbc.drivers(), "the SQLite3 ODBC driver is missing")
        odbc = f"DRIVER={{SQLite3}};DATABASE={_sqlite_file(tmp_path)}"
        sql, params = "SELECT name AS v FROM t ORDER BY id", []
    else:
        odbc, sql = LIVE[database]
        params = [NAMES]
    with OdbcSource(SourceSettings(odbc=odbc, batch_size=1), None) as src:
        _, batches = src.stream(Query(sql, params, Path("inline.sql")), 1)
        rows = [row for batch in batches for row in batch]
    assert rows == [(NAMES,), (LONG,)]


@pytest.mark.integration
def test_the_wide_path_for_narrow_text_reads_names_exactly(sis_loaded: None) -> None:
    """SQL Server's, Oracle's and Progress's plan, run on a real Unicode driver."""
    plan = drivers.decoding_for("mssql")
    assert plan is not None and plan.char_as_wide
    conn = pyodbc.connect(LIVE["postgres"][0])
    try:
        conn.setdecoding(pyodbc.SQL_CHAR, encoding=plan.char, ctype=pyodbc.SQL_WCHAR)
        conn.setdecoding(pyodbc.SQL_WCHAR, encoding=plan.wchar)
        conn.setencoding(encoding=plan.encode)
        row = conn.execute(
            "SELECT CAST(? AS varchar(100)), CAST(? AS text)", NAMES, NAMES
        ).fetchone()
    finally:
        conn.close()
    assert tuple(row) == (NAMES, NAMES)


def test_drivers_command_says_which_size_of_driver_is_visible() -> None:
    result = CliRunner().invoke(app, ["drivers"])
    assert result.exit_code == 0
    bits = struct.calcsize("P") * 8
    assert result.stdout.splitlines()[0].startswith(f"Python is {bits}-bit")


@pytest.mark.parametrize("sis", ["aeries", "rosariosis"])
def test_init_mentions_the_tls_keys_for_sql_server_only(sis: str) -> None:
    """Uncommented, the keys init shows a SQL Server DBA load as they are."""
    from connector.init import Answers, find_pack, render_config

    text = render_config(find_pack(sis), Answers())
    lines = text.splitlines()
    shown = [line for line in lines if "encrypt = true" in line]
    assert len(shown) == (1 if sis == "aeries" else 0)
    if shown:
        source = text.split("[source]\n", 1)[1].split("\n\n", 1)[0]
        source = source.replace("# encrypt = true", "encrypt = true").replace(
            "# trust_server_certificate", "trust_server_certificate"
        )
        settings = SourceSettings(**tomllib.loads(source))
        assert settings.tls == drivers.Tls(True, False)
