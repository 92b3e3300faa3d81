"""The ODBC layer against the real drivers: decoding, binding, streaming, errors."""

from __future__ import annotations

import gc
import subprocess
import threading
from pathlib import Path

import pytest

from connector.config import SourceSettings
from connector.database import OdbcSource, odbc_quote
from connector.templates import Query

from .sis_expectations import SIS

NAMES = "Nguyễn Zoë 李明 Ørjan 김민준 Łucja O’Brien"
CLIENTS = {
    "rosariosis": [
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "sis_rosariosis",
        "-At",
        "-F",
        "\t",
        "-c",
    ],
    "opensis": [
        "mysql",
        "-uroot",
        "--default-character-set=utf8mb4",
        "sis_opensis",
        "-N",
        "-e",
    ],
}
NAME_SQL = (
    "SELECT CAST(student_id AS CHAR(20)), first_name, last_name FROM students "
    "ORDER BY student_id"
)


def source(sis: str, **settings: object) -> OdbcSource:
    connection = SIS[sis]["connection"].replace("PWD=;", "")
    return OdbcSource(SourceSettings(odbc=connection, **settings), None)  # type: ignore[arg-type]


def query(sql: str, params: list[object] | None = None) -> Query:
    return Query(sql=sql, params=params or [], template=Path("inline.sql.j2"))


@pytest.mark.integration
@pytest.mark.parametrize("sis", ["rosariosis", "opensis"])
def test_names_decode_exactly_as_the_database_client_shows_them(
    sis: str, sis_loaded: None
) -> None:
    sql = NAME_SQL.replace("CHAR(20)", "VARCHAR(20)" if sis == "rosariosis" else "CHAR")
    with source(sis, batch_size=7) as src:
        _, batches = src.stream(query(sql), 7)
        ours = [
            tuple("" if v is None else str(v) for v in row)
            for b in batches
            for row in b
        ]
    client = subprocess.run(
        [*CLIENTS[sis], sql],
        capture_output=True,
        check=True,
        text=True,
        encoding="utf-8",
    )
    theirs = [tuple(line.split("\t")) for line in client.stdout.splitlines()]
    theirs = [tuple("" if v == "NULL" else v for v in row) for row in theirs]
    assert len(ours) > 100
    assert ours == theirs
    assert any(not "".join(row).isascii() for row in ours)


@pytest.mark.integration
@pytest.mark.parametrize("sis", ["rosariosis", "opensis"])
def test_unicode_round_trips_through_a_bound_parameter(
    sis: str, sis_loaded: None
) -> None:
    cast = "CAST(? AS VARCHAR(200))" if sis == "rosariosis" else "CAST(? AS CHAR(200))"
    with source(sis) as src:
        columns, batches = src.stream(query(f"SELECT {cast} AS v", [NAMES]), 10)
        assert columns == ["v"]
        assert [row for batch in batches for row in batch] == [(NAMES,)]


@pytest.mark.integration
def test_postgres_streams_through_a_cursor(sis_loaded: None) -> None:
    with source("rosariosis", batch_size=50) as src:
        assert "UseDeclareFetch=1;Fetch=50" in src._conn_str
        _, batches = src.stream(query("SELECT generate_series(1, 1000)"), 50)
        sizes = [len(b) for b in batches]
    assert sizes == [50] * 20


@pytest.mark.integration
def test_query_timeout_stops_a_long_query(sis_loaded: None) -> None:
    from connector.errors import QueryError

    with source("rosariosis", query_timeout=1) as src:
        with pytest.raises(QueryError, match="query_timeout|timeout|cancel"):
            _, batches = src.stream(query("SELECT pg_sleep(5)"), 10)
            list(batches)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("plain", "{plain}"), ("a;b", "{a;b}"), ("x}y", "{x}}y}"), ("{z}", "{{z}}}")],
)
def test_odbc_quote(value: str, quoted: str) -> None:
    assert odbc_quote(value) == quoted


TIMESTAMPS = """SELECT 'S1' AS student_id, 'A' AS reason_code,
       TIMESTAMPTZ '2026-03-03 04:30:00+00' AS absence_date, NULL AS periods
UNION ALL
SELECT 'S2', 'A', DATE '2026-03-02', NULL
UNION ALL
SELECT 'S3', 'A', TIMESTAMP '2026-03-02 23:59:00', NULL
ORDER BY 1
"""


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["odbc", "url", "libpq"])
@pytest.mark.parametrize("host_zone", ["UTC", "Asia/Tokyo", "America/Los_Angeles"])
def test_a_timestamp_gives_the_school_date_whatever_the_host_zone(
    tmp_path: Path, sis_loaded: None, kind: str, host_zone: str
) -> None:
    """04:30 UTC on 3 March is still 2 March in Chicago; a DATE stays itself."""
    from .conftest import connector_command

    source = {
        "odbc": 'odbc = "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;'
        'UID=postgres;DATABASE=postgres"',
        "url": 'url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"',
        "libpq": 'url = "postgresql://postgres@127.0.0.1:5432/postgres"',
    }[kind]
    (tmp_path / "attendance.sql").write_text(TIMESTAMPS)
    (tmp_path / "students.sql").write_text("SELECT 1")
    (tmp_path / "connector.toml").write_text(
        f'[source]\n{source}\ntime_zone = "America/Chicago"\n'
        '[datasets.students]\ntemplate = "students.sql"\n'
        '[datasets.attendance]\ntemplate = "attendance.sql"\n'
    )
    result = subprocess.run(
        [*connector_command(), "extract", "-c", "connector.toml", "-d", "attendance"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TZ": host_zone, "PGTZ": host_zone},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = (tmp_path / "exports" / "attendance.csv").read_bytes()
    assert data.split(b"\r\n")[1:4] == [
        b'"S1","A","03/02/2026",""',
        b'"S2","A","03/02/2026",""',
        b'"S3","A","03/02/2026",""',
    ]


@pytest.mark.integration
def test_a_driver_error_never_carries_a_row_value(sis_loaded: None) -> None:
    from connector.errors import QueryError

    with source("rosariosis") as src, pytest.raises(QueryError) as info:
        _, batches = src.stream(
            query("SELECT CAST(last_name AS integer) FROM students"), 10
        )
        list(batches)
    text = str(info.value)
    assert "invalid input syntax for type integer: <value>" in text
    assert text.count('"') == 0


def _end_postgres_session() -> None:
    # A streamed query shows as FETCH once its cursor is declared.
    subprocess.run(
        [
            *("psql", "-h", "127.0.0.1", "-U", "postgres", "-qAt", "-c"),
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE (query LIKE '%7.25%' OR query LIKE 'FETCH%') "
            "AND pid <> pg_backend_pid()",
        ],
        check=True,
        capture_output=True,
    )


def _end_mariadb_session() -> None:
    found = subprocess.run(
        [
            *("mariadb", "-uroot", "-N", "-e"),
            "SELECT id FROM information_schema.processlist "
            "WHERE info LIKE '%7.25%' AND id <> CONNECTION_ID()",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for session in found:
        subprocess.run(["mariadb", "-uroot", "-e", f"KILL CONNECTION {session}"])


@pytest.mark.integration
@pytest.mark.parametrize(
    ("settings", "sql"),
    [
        ({"odbc": SIS["rosariosis"]["connection"]}, "SELECT pg_sleep(7.25)"),
        (
            {"url": "postgresql://postgres@127.0.0.1:5432/sis_rosariosis"},
            "SELECT pg_sleep(7.25)",
        ),
        pytest.param(
            {"url": "postgresql+psycopg://postgres@127.0.0.1/sis_rosariosis"},
            "SELECT pg_sleep(7.25)",
            # psycopg cannot close its server cursor on the dead connection and
            # says so when the cursor is collected.
            marks=pytest.mark.filterwarnings(
                "ignore::pytest.PytestUnraisableExceptionWarning"
            ),
        ),
        ({"odbc": SIS["opensis"]["connection"]}, "SELECT SLEEP(7.25)"),
        (
            {
                "url": "mariadb://root@localhost/sis_opensis?unix_socket=/run/mysqld/mysqld.sock"
            },
            "SELECT SLEEP(7.25)",
        ),
    ],
    ids=["psqlodbc", "postgresql-url", "sqlalchemy", "mariadb-odbc", "mariadb-url"],
)
def test_a_session_ended_mid_query_says_so_not_check_the_template(
    sis_loaded: None, settings: dict[str, str], sql: str
) -> None:
    from connector.database import open_source
    from connector.errors import QueryError

    end = _end_mariadb_session if "SLEEP(" in sql else _end_postgres_session
    settings = {k: v.replace("PWD=;", "") for k, v in settings.items()}
    timer = threading.Timer(1.5, end)
    with open_source(SourceSettings(**settings), None) as src:  # type: ignore[arg-type]
        timer.start()
        try:
            with pytest.raises(QueryError) as info:
                named = settings.get("url", "").startswith("postgresql+")
                q = Query(
                    sql=sql, params={} if named else [], template=Path("x.sql.j2")
                )
                _, batches = src.stream(q, 10)
                list(batches)
        finally:
            timer.join()
    text = str(info.value)
    # What the dead connection left (the error's context holds it) is collected
    # within this test.
    del info
    gc.collect()
    assert "the connection to the database was lost during the query" in text
    assert "run again" in text and "check the template" not in text
