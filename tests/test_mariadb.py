"""A ``mariadb://`` URL: MariaDB through MariaDB Connector/Python, against the local
server and the SIS databases loaded there."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.config import SourceSettings
from connector.database import open_source, param_style
from connector.errors import ConfigError, ConnectError, QueryError
from connector.mariadb import MariaDbSource, connect_options
from connector.native import MAX_TEXT_CHARS
from connector.templates import Query

from .conftest import IN_CI
from .sis_expectations import SIS
from .test_integration import run_connector

try:
    import mariadb
except ModuleNotFoundError:
    if IN_CI:
        raise
    pytest.skip(
        "MariaDB Connector/Python is not installed: pip install -e '.[mariadb]' "
        "(libmariadb-dev and a C compiler first)",
        allow_module_level=True,
    )

SOCKET = "unix_socket=/run/mysqld/mysqld.sock"
URL = f"mariadb://root@localhost/sis_opensis?{SOCKET}"
QUERIES = Path(__file__).parents[1] / "queries"


def source(url: str = URL, **settings: Any) -> MariaDbSource:
    opened = open_source(SourceSettings(url=url, **settings), None)
    assert isinstance(opened, MariaDbSource)
    return opened


def query(sql: str, params: list[Any] | None = None) -> Query:
    return Query(sql=sql, params=params or [], template=Path("inline.sql.j2"))


def rows(src: MariaDbSource, q: Query, batch_size: int = 1000) -> list[tuple[Any, ...]]:
    _, batches = src.stream(q, batch_size)
    return [row for batch in batches for row in batch]


def root(sql: str) -> None:
    subprocess.run(
        [
            "mariadb",
            "--socket=/run/mysqld/mysqld.sock",
            "-uroot",
            "sis_opensis",
            "-e",
            sql,
        ],
        check=True,
    )


def test_only_a_url_naming_no_driver_reads_through_connector_python() -> None:
    assert param_style(SourceSettings(url=URL)) == "qmark"
    assert param_style(SourceSettings(url="mysql://h/db")) == "qmark"
    assert param_style(SourceSettings(url="mysql+pymysql://h/db")) == "named"


def test_the_url_becomes_connect_arguments() -> None:
    settings = SourceSettings(
        url="mariadb://db.example.org:3307/sis?ssl_ca=/etc/ca.pem&ssl_verify_cert=true",
        user="reader",
        login_timeout=9,
    )
    assert connect_options(settings, "p@ss;w{rd}") == {
        "autocommit": False,
        "user": "reader",
        "password": "p@ss;w{rd}",
        "host": "db.example.org",
        "port": 3307,
        "database": "sis",
        "connect_timeout": 9,
        "ssl_ca": "/etc/ca.pem",
        "ssl_verify_cert": True,
    }
    with pytest.raises(ConfigError, match="unknown parameter 'sslmode'.*unix_socket"):
        connect_options(SourceSettings(url="mariadb://h/db?sslmode=require"), None)
    with pytest.raises(ConfigError, match="connect_timeout=abc is not whole seconds"):
        connect_options(SourceSettings(url="mariadb://h/db?connect_timeout=abc"), None)


def test_without_the_package_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mariadb", None)
    with pytest.raises(ConfigError, match=r"connector\[mariadb\].*libmariadb-dev"):
        open_source(SourceSettings(url=URL), None)


@pytest.mark.integration
@pytest.mark.parametrize("sis", ["opensis", "gibbon"])
def test_exports_hold_the_rows_of_the_odbc_driver(
    tmp_path: Path, sis_loaded: None, sis: str
) -> None:
    """A query pack over both ways in: the same rows and the same counts in the
    report. Over ODBC the rows come in key order (the chunks); over the URL in the
    server's order, which ignores an ORDER BY inside the wrapping that cuts long
    text (README, Known limits): the order may differ."""
    database = {"opensis": "sis_opensis", "gibbon": "sis_gibbon"}[sis]
    odbc = SIS[sis]["connection"].replace("PWD=;", "")
    ways = {
        "odbc": f"odbc = {json.dumps(odbc)}\nchunk_rows = 0",
        "url": f'url = "mariadb://root@localhost/{database}?{SOCKET}"',
    }
    params = "\n".join(
        f"{k} = {v.isoformat() if isinstance(v, dt.date) else json.dumps(v)}"
        for k, v in SIS[sis]["params"].items()
    )
    datasets = "".join(
        f'[datasets.{name}]\ntemplate = "{QUERIES / sis / f"{name}.sql.j2"}"\n'
        for name in ("students", "attendance", "staff")
    )
    reports = {}
    for kind, line in ways.items():
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "connector.toml").write_text(
            f'[source]\n{line}\ntime_zone = "America/Chicago"\n'
            f"[params]\n{params}\n{datasets}"
        )
        done = run_connector("extract", "-c", "connector.toml", cwd=folder)
        assert done.returncode == 0, done.stderr
        reports[kind] = json.loads((folder / "exports" / "run-report.json").read_text())
    for name in ("students", "attendance", "staff"):
        ours = (tmp_path / "url" / "exports" / f"{name}.csv").read_bytes()
        theirs = (tmp_path / "odbc" / "exports" / f"{name}.csv").read_bytes()
        assert ours.split(b"\r\n")[0] == theirs.split(b"\r\n")[0]
        assert sorted(ours.split(b"\r\n")) == sorted(theirs.split(b"\r\n"))
        assert ours.count(b"\r\n") - 1 == SIS[sis]["expected_rows"][name]
        for key in ("fetched", "written", "rejected", "expected", "fixes", "warnings"):
            assert (
                reports["url"]["datasets"][name][key]
                == reports["odbc"]["datasets"][name][key]
            ), (name, key)


@pytest.mark.integration
def test_values_are_bound_never_pasted(sis_loaded: None) -> None:
    sql = (
        "SELECT COUNT(*) AS n FROM students "
        "WHERE student_id >= ? AND student_id IN (?, ?, ?) AND ? = 'x' "
        "AND (? IS NULL OR last_name = ?)"
    )
    with source() as src:
        [[three]] = rows(src, query(sql, [1, 1, 2, "3", "x", None, None]))
        assert three == 3
        sneaky = "x' OR '1'='1"
        assert rows(src, query(sql, [1, 1, 2, 3, sneaky, None, None])) == [(0,)]
        assert src.count(query(sql, ["1", 1, 2, 3, "x", None, None])) == 1


@pytest.mark.integration
def test_values_come_as_the_odbc_driver_gives_them(sis_loaded: None) -> None:
    sql = """SELECT CAST(12.00 AS DECIMAL(5,2)) AS a, 42 AS b, CAST(2.5 AS DOUBLE) AS c,
        DATE '2024-09-03' AS d, TIMESTAMP '2024-09-03 23:30:00' AS e,
        CAST('é' AS CHAR(3)) AS f, CAST(NULL AS CHAR(3)) AS g,
        JSON_OBJECT('k', 1) AS h"""
    with source() as src:
        [row] = rows(src, query(sql))
    assert row == (
        Decimal("12.00"),
        42,
        2.5,
        dt.date(2024, 9, 3),
        dt.datetime(2024, 9, 3, 23, 30),
        "é",
        None,
        '{"k": 1}',
    )


@pytest.mark.integration
def test_batches_stay_small_and_every_row_comes(sis_loaded: None) -> None:
    with source() as src:
        _, batches = src.stream(query("SELECT seq AS n FROM seq_1_to_10000"), 3000)
        sizes = [len(batch) for batch in batches]
    assert sum(sizes) == 10000 and max(sizes) <= 3000 and len(sizes) >= 4


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["text", "blob"])
def test_a_value_longer_than_the_limit_is_an_error_naming_its_row(
    sis_loaded: None, kind: str
) -> None:
    long = f"REPEAT('é', {MAX_TEXT_CHARS + 1})"
    value = long if kind == "text" else f"CAST({long} AS BINARY)"
    sql = (
        f"SELECT seq AS n, CASE WHEN seq = 1500 THEN {value} END AS v "
        "FROM seq_1_to_2000"
    )
    with source() as src, pytest.raises(QueryError) as info:
        rows(src, query(sql), 700)
    assert f"column v, row 1500: a value is longer than {MAX_TEXT_CHARS}" in str(
        info.value
    )
    with source() as src:
        [[text]] = rows(src, query(f"SELECT REPEAT('é', {MAX_TEXT_CHARS}) AS v"))
    assert text == "é" * MAX_TEXT_CHARS


@pytest.fixture
def probe_table(sis_loaded: None) -> Iterator[str]:
    table = "connector_snapshot_probe"
    root(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (n int) ENGINE=InnoDB")
    root(f"INSERT INTO {table} SELECT seq FROM seq_1_to_10")
    yield table
    root(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.integration
def test_every_query_of_a_run_sees_one_snapshot(probe_table: str) -> None:
    with source() as src:
        before = src.count(query(f"SELECT n FROM {probe_table}"))
        root(f"INSERT INTO {probe_table} VALUES (11)")
        later = rows(src, query(f"SELECT n FROM {probe_table}"))
    assert before == len(later) == 10


@pytest.mark.integration
def test_batches_closed_unread_leave_nothing_open(sis_loaded: None) -> None:
    """The column check fails before the first batch is read (a column the data
    set does not declare): nothing waits on the connection."""
    with source() as src:
        _, batches = src.stream(query("SELECT seq AS n FROM seq_1_to_100000"), 10)
        batches.close()
        assert rows(src, query("SELECT 7 AS n")) == [(7,)]


@pytest.mark.integration
def test_a_stream_left_early_frees_the_connection(sis_loaded: None) -> None:
    with source() as src:
        _, batches = src.stream(query("SELECT seq AS n FROM seq_1_to_100000"), 10)
        assert len(next(batches)) <= 10
        batches.close()
        assert rows(src, query("SELECT 7 AS n")) == [(7,)]


@pytest.mark.integration
def test_a_failed_query_names_the_template_and_never_a_value(
    sis_loaded: None,
) -> None:
    with source() as src, pytest.raises(QueryError) as info:
        rows(
            src,
            query("SELECT last_name FROM students WHERE no_such_column = ?", ["Lopez"]),
        )
    text = str(info.value)
    assert text.startswith("query from inline.sql.j2 failed: ")
    assert "no_such_column" in text and "Lopez" not in text


@pytest.mark.integration
def test_the_query_timeout_stops_a_long_query(sis_loaded: None) -> None:
    with source(query_timeout=1) as src, pytest.raises(QueryError) as info:
        rows(src, query("SELECT SLEEP(5) AS n"))
    assert "query_timeout" in str(info.value)


@pytest.fixture(scope="module")
def login(sis_loaded: None) -> Iterator[tuple[str, str]]:
    """A user with a password, over TCP (root logs in through the socket only)."""
    user, password = "connector_native_test", "Right;Pass{word}@%"
    for host in ("localhost", "127.0.0.1"):
        root(f"DROP USER IF EXISTS '{user}'@'{host}'")
        root(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
        root(f"GRANT SELECT ON sis_opensis.* TO '{user}'@'{host}'")
    yield user, password
    for host in ("localhost", "127.0.0.1"):
        root(f"DROP USER IF EXISTS '{user}'@'{host}'")


@pytest.mark.integration
def test_a_password_logs_in_exactly_and_a_wrong_one_is_exit_3(
    login: tuple[str, str],
) -> None:
    user, password = login
    url = f"mariadb://{user}@127.0.0.1:3306/sis_opensis"
    with open_source(SourceSettings(url=url), password) as src:
        assert rows(src, query("SELECT CURRENT_USER() AS who")) == [
            (f"{user}@127.0.0.1",)
        ]
    with pytest.raises(ConnectError) as refused:
        open_source(SourceSettings(url=url), password[:-1])
    assert refused.value.exit_code == 3
    assert password[:-1] not in str(refused.value)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("mariadb://root@127.0.0.1:9/sis_opensis", 1),
        (f"mariadb://root@localhost/no_such_db?{SOCKET}", 1),
        ("mariadb://root@localhost/sis_opensis?unix_socket=/nowhere.sock", 1),
    ],
)
def test_a_connection_failure_is_one_clear_line(
    sis_loaded: None, url: str, code: int
) -> None:
    with pytest.raises(ConnectError) as info:
        open_source(SourceSettings(url=url, login_timeout=3), "Secret-Pw;1")
    text = str(info.value)
    assert "\n" not in text and "Secret-Pw" not in text
    assert info.value.exit_code == code, text


def test_mariadb_is_the_package_under_test() -> None:
    assert mariadb.__version__


@pytest.mark.integration
def test_an_error_in_the_middle_of_a_result_is_never_an_end(sis_loaded: None) -> None:
    """The driver ends a streamed result quietly where the server sent an error
    instead of row 5000: the run stops with the server's error, not a half file."""
    sql = (
        "SELECT b.seq + (SELECT s.seq FROM seq_1_to_2 s "
        "WHERE s.seq <= IF(b.seq = 5000, 2, 1)) AS n FROM seq_1_to_10000 b"
    )
    with source() as src, pytest.raises(QueryError) as info:
        rows(src, query(sql), 1000)
    assert "Subquery returns more than 1 row" in str(info.value)


@pytest.mark.integration
def test_the_query_timeout_while_rows_stream_says_so(sis_loaded: None) -> None:
    with source(query_timeout=1) as src, pytest.raises(QueryError) as info:
        _, batches = src.stream(query("SELECT seq AS n FROM seq_1_to_5000000"), 1000)
        for _ in batches:
            subprocess.run(["sleep", "0.02"], check=True)  # a slow writer
    assert "query_timeout" in str(info.value)


@pytest.fixture
def odd_dates(sis_loaded: None) -> Iterator[str]:
    table = "connector_odd_dates"
    root(
        f"SET SESSION sql_mode = ''; DROP TABLE IF EXISTS {table}; "
        f"CREATE TABLE {table} (n int, d date, t time); "
        f"INSERT INTO {table} VALUES (1, '2024-08-00', '08:30:00'), "
        "(2, '2024-08-19', '-00:00:01')"
    )
    yield table
    root(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.integration
def test_a_zero_day_is_a_clear_error_and_a_time_reads_as_over_odbc(
    odd_dates: str,
) -> None:
    with source() as src, pytest.raises(QueryError) as info:
        rows(src, query(f"SELECT n, d FROM {odd_dates}"))
    text = str(info.value)
    assert text.count("query from") == 1 and "date columns: d" in text
    assert "NULLIF" in text
    with source() as src:
        assert rows(src, query(f"SELECT n, t FROM {odd_dates} ORDER BY n")) == [
            (1, "08:30:00"),
            (2, "-00:00:01"),
        ]


@pytest.mark.integration
def test_tls_asked_for_of_a_server_without_it_is_refused(sis_loaded: None) -> None:
    """This server has no TLS: asking for it must not connect in clear."""
    with pytest.raises(ConnectError) as info:
        open_source(SourceSettings(url=f"{URL}&ssl=true"), None)
    assert info.value.exit_code == 2 and "not encrypted" in str(info.value)
