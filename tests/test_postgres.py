"""A ``postgresql://`` URL: PostgreSQL through ADBC's libpq driver, against the
local server and the RosarioSIS database."""

from __future__ import annotations

import datetime as dt
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.config import SourceSettings
from connector.database import open_source, param_style
from connector.errors import ConfigError, ConnectError, QueryError
from connector.postgres import MAX_TEXT_CHARS, PostgresSource, libpq_uri
from connector.templates import Query

from .test_integration import run_connector

URL = "postgresql://postgres@127.0.0.1:5432/sis_rosariosis"
ODBC = (
    "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;UID=postgres;"
    "DATABASE=sis_rosariosis"
)
QUERIES = Path(__file__).parents[1] / "queries" / "rosariosis"


def source(**settings: Any) -> PostgresSource:
    opened = open_source(SourceSettings(url=URL, **settings), None)
    assert isinstance(opened, PostgresSource)
    return opened


def query(sql: str, params: list[Any] | None = None) -> Query:
    return Query(sql=sql, params=params or [], template=Path("inline.sql.j2"))


def rows(
    src: PostgresSource, q: Query, batch_size: int = 1000
) -> list[tuple[Any, ...]]:
    _, batches = src.stream(q, batch_size)
    return [row for batch in batches for row in batch]


def test_only_a_url_naming_no_driver_reads_through_libpq() -> None:
    assert param_style(SourceSettings(url=URL)) == "numeric"
    assert param_style(SourceSettings(url="postgres://h/db")) == "numeric"
    assert param_style(SourceSettings(url="postgresql+psycopg://h/db")) == "named"
    assert param_style(SourceSettings(odbc=ODBC)) == "qmark"


def test_the_libpq_uri_carries_user_password_and_login_timeout() -> None:
    settings = SourceSettings(
        url="postgresql://db.example.org:5433/sis?sslmode=verify-full",
        user="reader@district",
        login_timeout=12,
    )
    uri = libpq_uri(settings, "p@ss:w;rd/%")
    assert uri == (
        "postgresql://reader%40district:p%40ss%3Aw%3Brd%2F%25@db.example.org:5433"
        "/sis?sslmode=verify-full&connect_timeout=12&client_encoding=UTF8"
        "&application_name=connector"
    )
    # The local socket (no host), a space in a value, a password with no user.
    local = SourceSettings(
        url="postgresql:///sis?options=-c%20search_path%3Dsis", login_timeout=0
    )
    assert libpq_uri(local, "pw") == (
        "postgresql://:pw@/sis?options=-c%20search_path%3Dsis"
        "&client_encoding=UTF8&application_name=connector"
    )


@pytest.mark.integration
def test_exports_are_byte_for_byte_those_of_the_odbc_driver(
    tmp_path: Path, sis_loaded: None
) -> None:
    """RosarioSIS's query pack over both ways in: the same three files."""
    for kind, line in (("odbc", f'odbc = "{ODBC}"'), ("url", f'url = "{URL}"')):
        folder = tmp_path / kind
        folder.mkdir()
        datasets = "".join(
            f'[datasets.{name}]\ntemplate = "{QUERIES / f"{name}.sql.j2"}"\n'
            for name in ("students", "attendance", "staff")
        )
        (folder / "connector.toml").write_text(
            f"[source]\n{line}\n"
            'time_zone = "America/Chicago"\n'
            "[params]\nschool_year = 2024\nstart_date = 2024-08-19\n"
            f"end_date = 2024-10-04\n{datasets}"
        )
        done = run_connector("extract", "-c", "connector.toml", cwd=folder)
        assert done.returncode == 0, done.stderr
    for name in ("students", "attendance", "staff"):
        ours = (tmp_path / "url" / "exports" / f"{name}.csv").read_bytes()
        assert ours == (tmp_path / "odbc" / "exports" / f"{name}.csv").read_bytes()
        assert ours.count(b"\r\n") > 30


@pytest.mark.integration
def test_values_are_bound_with_the_types_the_server_infers(sis_loaded: None) -> None:
    """A template's text, number, date and list values, and NULL, fit the columns
    they meet, as a text value would over ODBC; none reaches the SQL text."""
    sql = (
        "SELECT COUNT(*) AS n FROM student_enrollment "
        "WHERE syear = $1 AND school_id IN ($2, $3) AND start_date >= $4 "
        "AND ($5::text IS NULL OR student_id::text = $5) AND $6 = 'x'"
    )
    with source() as src:
        typed = rows(src, query(sql, [2024, 1, 2, dt.date(2024, 1, 1), None, "x"]))
        texts = rows(src, query(sql, ["2024", "1", "2", "2024-01-01", None, "x"]))
        assert typed == texts and typed[0][0] > 100
        sneaky = "x' OR '1'='1"
        assert (
            rows(src, query(sql, [2024, 1, 2, dt.date(2024, 1, 1), None, sneaky]))[0][0]
            == 0
        )
        assert src.count(query(sql, [2024, 1, 2, "2024-01-01", None, "x"])) == 1


@pytest.mark.integration
def test_dates_and_numbers_meet_timestamps_and_text_as_over_odbc(
    sis_loaded: None,
) -> None:
    """A date, or its text, against a timestamp (a timestamptz: midnight in the
    schools' zone); a number where text is expected; a whole float as an integer."""
    day = dt.date(2024, 8, 19)
    with source(time_zone="America/Chicago") as src:
        for value in (day, "2024-08-19"):
            [[plain, zoned]] = rows(
                src,
                query(
                    "SELECT TIMESTAMP '2024-08-19 00:00' = $1 AS a, "
                    "TIMESTAMPTZ '2024-08-19 05:00+00' = $2 AS b",
                    [value, value],
                ),
            )
            assert plain and zoned, value
        assert rows(src, query("SELECT $1 AS school", [101])) == [("101",)]
        assert rows(src, query("SELECT 1 AS x WHERE 5 = $1", [5.0])) == [(1,)]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("sql", "value", "says"),
    [
        ("SELECT 1 FROM student_enrollment WHERE syear = $1", "soon", "not of type"),
        ("SELECT 1 AS x WHERE 5 = $1", 2024.9, "value 1 of the template is not of"),
        ("SELECT 1 AS x WHERE $1 IS NULL", None, "cast it in the template"),
    ],
)
def test_a_value_that_does_not_fit_says_what_to_do(
    sis_loaded: None, sql: str, value: Any, says: str
) -> None:
    with source() as src, pytest.raises(QueryError) as info:
        rows(src, query(sql, [value]))
    assert says in str(info.value)
    assert "soon" not in str(info.value) and "2024.9" not in str(info.value)


@pytest.mark.integration
def test_a_value_of_the_wrong_type_says_which_and_what_to_do(sis_loaded: None) -> None:
    with source() as src, pytest.raises(QueryError) as info:
        rows(src, query("SELECT 1 FROM student_enrollment WHERE syear = $1", ["soon"]))
    assert "value 1 of the template is not of type numeric" in str(info.value)
    assert "soon" not in str(info.value)


@pytest.mark.integration
def test_values_come_as_the_odbc_driver_gives_them(sis_loaded: None) -> None:
    """Numbers, dates, booleans and types the driver has no Arrow type for."""
    sql = """SELECT 12.00::numeric(5,2) AS a, 1.50::numeric AS b, 42::int2 AS c,
        2.5::float8 AS d, DATE '2024-09-03' AS e, true AS f,
        '6f1c4c4e-1d2b-4b5e-9b1a-0c9d3e2f1a7b'::uuid AS g, '{"k": 1}'::json AS h,
        'x'::char(3) AS i, NULL::text AS j"""
    with source() as src:
        [row] = rows(src, query(sql))
        [odd] = rows(
            src,
            query(
                "SELECT 12.50::money AS a, 1.1::float4 AS b, '::1'::inet AS c, "
                "'infinity'::date AS d, TIMESTAMPTZ '2024-08-19 03:00+00' AS e"
            ),
        )
    assert row == (
        Decimal("12.00"),
        Decimal("1.50"),
        42,
        2.5,
        dt.date(2024, 9, 3),
        True,
        "6F1C4C4E-1D2B-4B5E-9B1A-0C9D3E2F1A7B",  # as psqlODBC gives a uuid
        '{"k": 1}',
        "x",
        None,
    )
    # money as a number, a real as it prints, inet by its output function, a
    # date Python cannot hold as text the rules call invalid, a timestamptz in
    # the session's zone (UTC here).
    assert odd[:4] == (Decimal("12.50"), "1.1", "::1", "out of range")
    assert odd[4] == dt.datetime(2024, 8, 19, 3, tzinfo=dt.UTC)


@pytest.mark.integration
def test_batches_stay_small_and_every_row_comes(sis_loaded: None) -> None:
    with source() as src:
        _, batches = src.stream(query("SELECT generate_series(1, 10000) AS n"), 3000)
        sizes = [len(batch) for batch in batches]
    assert sum(sizes) == 10000 and max(sizes) <= 3000 and len(sizes) >= 4


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["text", "bytea", "json"])
def test_a_value_longer_than_the_limit_is_an_error_naming_its_row(
    sis_loaded: None, kind: str
) -> None:
    long = f"repeat('é', {MAX_TEXT_CHARS + 1})"
    value = {
        "text": long,
        "bytea": f"convert_to({long}, 'UTF8')",
        "json": f"to_json({long})",
    }[kind]
    sql = (
        f"SELECT n, CASE WHEN n = 1500 THEN {value} END AS v "
        "FROM generate_series(1, 2000) n"
    )
    with source() as src, pytest.raises(QueryError) as info:
        rows(src, query(sql), 700)
    assert f"column v, row 1500: a value is longer than {MAX_TEXT_CHARS}" in str(
        info.value
    )
    # At the limit, a value comes whole.
    with source() as src:
        [[text]] = rows(src, query(f"SELECT repeat('é', {MAX_TEXT_CHARS}) AS v"))
    assert text == "é" * MAX_TEXT_CHARS


@pytest.mark.integration
def test_every_query_of_a_run_sees_one_snapshot(sis_loaded: None) -> None:
    """Rows added after the first query are not seen by the later ones."""
    table = "connector_snapshot_probe"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "sis_rosariosis", "-qc"]
    subprocess.run(
        [
            *psql,
            f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} AS "
            "SELECT generate_series(1, 10) AS n",
        ],
        check=True,
    )
    try:
        with source() as src:
            before = src.count(query(f"SELECT n FROM {table}"))
            subprocess.run([*psql, f"INSERT INTO {table} VALUES (11)"], check=True)
            later = rows(src, query(f"SELECT n FROM {table}"))
        assert before == len(later) == 10
    finally:
        subprocess.run([*psql, f"DROP TABLE IF EXISTS {table}"], check=True)


@pytest.mark.integration
def test_batches_closed_unread_leave_nothing_open(sis_loaded: None) -> None:
    """The column check fails before the first batch is read (a column the data
    set does not declare): nothing waits on the connection."""
    with source() as src:
        _, batches = src.stream(query("SELECT generate_series(1, 100000) AS n"), 10)
        batches.close()
        assert rows(src, query("SELECT 7 AS n")) == [(7,)]


@pytest.mark.integration
def test_a_stream_left_early_frees_the_connection(sis_loaded: None) -> None:
    """``connector test`` reads one batch and moves on to the next data set."""
    with source() as src:
        _, batches = src.stream(query("SELECT generate_series(1, 100000) AS n"), 10)
        assert len(next(batches)) <= 10
        batches.close()
        assert rows(src, query("SELECT 7 AS n")) == [(7,)]


@pytest.mark.integration
def test_a_failed_query_names_the_template_and_never_a_value(
    sis_loaded: None,
) -> None:
    with source() as src, pytest.raises(QueryError) as info:
        rows(src, query("SELECT CAST(last_name AS integer) FROM students"))
    text = str(info.value)
    assert text.startswith("query from inline.sql.j2 failed: ")
    assert "invalid input syntax for type integer: <value>" in text
    assert "Query was" not in text and "connector_rows" not in text
    assert '"' not in text


@pytest.mark.integration
def test_the_query_timeout_stops_a_long_query(sis_loaded: None) -> None:
    with source(query_timeout=1) as src, pytest.raises(QueryError) as info:
        rows(src, query("SELECT pg_sleep(5)"))
    assert "query_timeout" in str(info.value)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("url", "error", "code"),
    [
        ("postgresql://postgres@127.0.0.1:9/sis", ConnectError, 1),
        ("postgresql://postgres@127.0.0.1:5432/no_such_db", ConnectError, 1),
        ("postgresql://nobody_here@127.0.0.1:5432/sis_rosariosis", ConnectError, 3),
        (
            "postgresql://postgres@127.0.0.1:5432/sis_rosariosis?bogus=1",
            ConnectError,
            2,
        ),
        ("postgresql://postgres@127.0.0.1/sis?sslmode=bogus", ConnectError, 2),
    ],
)
def test_a_connection_failure_is_one_clear_line(
    sis_loaded: None, url: str, error: type[Exception], code: int
) -> None:
    with pytest.raises(error) as info:
        open_source(SourceSettings(url=url, login_timeout=3), "Secret-Pw;1")
    text = str(info.value)
    assert "\n" not in text and "Secret-Pw" not in text
    assert getattr(info.value, "exit_code", None) == code, text


@pytest.mark.integration
@pytest.mark.parametrize(
    "url",
    [URL, "mariadb://root@localhost/sis_opensis?unix_socket=/run/mysqld/mysqld.sock"],
    ids=["postgresql", "mariadb"],
)
def test_a_column_the_data_set_lacks_stops_at_once(
    tmp_path: Path, sis_loaded: None, url: str
) -> None:
    (tmp_path / "students.sql").write_text(
        "SELECT '1' AS student_id, 'A' AS first_name, 'B' AS last_name, "
        "NULL AS phone, '1' AS school, NULL AS language, NULL AS alt_phone, "
        "NULL AS email, NULL AS grade, NULL AS gender, 1 AS extra"
    )
    (tmp_path / "connector.toml").write_text(
        f'[source]\nurl = "{url}"\n[datasets.students]\ntemplate = "students.sql"\n'
    )
    done = run_connector("extract", "-c", "connector.toml", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "extra" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def encoded_databases(sis_loaded: None) -> Any:
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"]
    made = []
    for name, encoding in (
        ("connector_latin1", "LATIN1"),
        ("connector_ascii", "SQL_ASCII"),
    ):
        subprocess.run([*psql, f"DROP DATABASE IF EXISTS {name}"], check=True)
        subprocess.run(
            [
                *psql,
                f"CREATE DATABASE {name} ENCODING '{encoding}' "
                "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
            ],
            check=True,
        )
        made.append(name)
    yield
    for name in made:
        subprocess.run([*psql, f"DROP DATABASE IF EXISTS {name}"], check=True)


@pytest.mark.integration
def test_a_latin1_database_reads_and_a_sql_ascii_one_says_what_to_do(
    encoded_databases: None,
) -> None:
    base = "postgresql://postgres@127.0.0.1:5432/"
    with open_source(SourceSettings(url=base + "connector_latin1"), None) as src:
        assert rows(src, query("SELECT 'Zoë Müller'::text AS v")) == [("Zoë Müller",)]
    with pytest.raises(ConnectError) as info:
        open_source(SourceSettings(url=base + "connector_ascii"), None)
    assert info.value.exit_code == 2
    assert "SQL_ASCII" in str(info.value) and "source.encoding" in str(info.value)
    with pytest.raises(ConfigError, match="source.encoding is for ODBC"):
        open_source(SourceSettings(url=URL, encoding="latin-1"), None)


@pytest.mark.integration
def test_an_error_quoting_a_row_value_never_shows_it(sis_loaded: None) -> None:
    secret = "Alice Secretname"
    for sql in (
        f"SELECT '{secret}'::timestamptz AS v",
        f"SELECT '{secret}'::int[] AS v",
        f"SELECT '{secret}'::json AS v",
    ):
        with source() as src, pytest.raises(QueryError) as info:
            rows(src, query(sql))
        assert "Alice" not in str(info.value), str(info.value)


@pytest.mark.integration
@pytest.mark.parametrize(
    "line",
    [
        f'odbc = "{ODBC}"',
        f'url = "{URL}"',
        'url = "mariadb://root@localhost/sis_opensis?unix_socket=/run/mysqld/mysqld.sock"',
        'odbc = "DRIVER={MariaDB Unicode};SOCKET=/run/mysqld/mysqld.sock;UID=root;'
        'CHARSET=utf8mb4;DATABASE=sis_opensis"',
    ],
    ids=["psqlodbc", "postgresql", "mariadb", "mariadb-odbc"],
)
def test_a_template_ending_in_a_comment_runs(
    tmp_path: Path, sis_loaded: None, line: str
) -> None:
    """No line break after a last-line ``--`` comment: psqlODBC's own words after
    the statement must not fall into it."""
    (tmp_path / "students.sql").write_text(
        "SELECT '1' AS student_id, 'A' AS first_name, 'B' AS last_name, "
        "NULL AS phone, '1' AS school, NULL AS language, NULL AS alt_phone, "
        "NULL AS email, NULL AS grade, NULL AS gender -- the last line, unended"
    )
    (tmp_path / "connector.toml").write_text(
        f'[source]\n{line}\n[datasets.students]\ntemplate = "students.sql"\n'
    )
    for command in ("extract", "test"):
        done = run_connector(command, "-c", "connector.toml", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
