"""Tables for extract_bench.py: invented students and attendance, in SQL only.

The rows are made by the database itself (``generate_series`` on PostgreSQL, the
Sequence engine on MariaDB) from the row number, so both servers hold the same rows
and loading 10 million takes a minute, not an hour.
"""

from __future__ import annotations

import subprocess

DATABASE = "c7_bench"
PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"]
MARIADB = ["mariadb", "--socket=/run/mysqld/mysqld.sock", "-u", "root"]

FIRST = ["Ava", "Liam", "Noah", "Emma", "Mia", "Lucas", "Aria", "Ethan"]
FIRST_INTL = ["Ørjan", "José", "Zoë", "Nguyễn", "Łukasz"]
LAST = ["Smith", "Lopez", "Nguyen", "Johnson", "O'Brien", "Garcia", "Lee", "Brown"]
LAST_INTL = ["Müller", "Ibáñez", "Dvořák", "Søren", "Gonçalves"]
AREAS = ["217", "312", "773", "630", "847", "309", "618", "815"]


def _pick(db: str, words: list[str], index: str) -> str:
    quoted = ", ".join("'" + w.replace("'", "''") + "'" for w in words)
    if db == "pg":
        return f"(ARRAY[{quoted}])[({index}) % {len(words)} + 1]"
    index = index.replace(" / ", " DIV ")  # MariaDB's / is not integer division
    return f"ELT(({index}) % {len(words)} + 1, {quoted})"


def _cat(db: str, *parts: str) -> str:
    return " || ".join(parts) if db == "pg" else f"CONCAT({', '.join(parts)})"


def _pad(db: str, expr: str, width: int) -> str:
    cast = f"({expr})::text" if db == "pg" else f"({expr})"
    return f"lpad({cast}, {width}, '0')"


def _phone(db: str, salt: int) -> str:
    area = _pick(db, AREAS, f"i / 7 + {salt}")
    exchange = (
        f"200 + (i * {7 + salt}) % 800"
        if db == "pg"
        else (f"200 + (i * {7 + salt}) % 800")
    )
    ex = f"({exchange})::text" if db == "pg" else f"({exchange})"
    line = _pad(db, f"(i * {37 + salt}) % 10000", 4)
    shapes = [
        _cat(db, "'('", area, "') '", ex, "'-'", line),
        _cat(db, area, "'-'", ex, "'-'", line),
        _cat(db, area, "'.'", ex, "'.'", line),
        _cat(db, "'+1 '", area, "' '", ex, "' '", line),
        _cat(db, area, ex, line),
    ]
    cases = " ".join(f"WHEN {n} THEN {s}" for n, s in enumerate(shapes))
    return f"CASE (i + {salt}) % 6 {cases} ELSE NULL END"


def students_sql(db: str, rows: int) -> str:
    first = (
        f"CASE WHEN i % 20 = 0 THEN {_pick(db, FIRST_INTL, 'i / 20')} "
        f"ELSE {_pick(db, FIRST, 'i')} END"
    )
    last = (
        f"CASE WHEN i % 20 = 10 THEN {_pick(db, LAST_INTL, 'i / 20')} "
        f"ELSE {_pick(db, LAST, 'i / 8')} END"
    )
    ext = "CASE WHEN i % 50 = 0 THEN ' ext. 12' ELSE '' END"
    alt = f"CASE WHEN i % 3 = 0 THEN {_cat(db, _phone(db, 3), ext)} ELSE NULL END"
    address = _cat(db, "'s'", "i", "'@example.org'")
    email = f"CASE WHEN i % 4 = 0 THEN NULL ELSE {address} END"
    series = (
        f"generate_series(1, {rows}) AS i"
        if db == "pg"
        else (f"(SELECT seq AS i FROM seq_1_to_{rows}) s")
    )
    sid = _cat(db, "'S'", _pad(db, "i", 7))
    return f"""
DROP TABLE IF EXISTS students;
CREATE TABLE students (
  student_id varchar(20) PRIMARY KEY, first_name varchar(100), last_name varchar(100),
  phone varchar(40), school varchar(10), language varchar(10),
  alt_phone varchar(60), email varchar(100), grade varchar(4), gender varchar(2));
INSERT INTO students SELECT {sid}, {first}, {last}, {_phone(db, 0)},
  {_pick(db, ["101", "102", "203", "305"], "i")},
  CASE i % 10 WHEN 0 THEN 'es' WHEN 1 THEN NULL ELSE 'en' END,
  {alt}, {email}, {_pad(db, "i % 13", 2)},
  CASE i % 2 WHEN 0 THEN 'F' ELSE 'M' END
FROM {series};
"""


def attendance_sql(db: str, rows: int, table: str) -> str:
    series = (
        f"generate_series(1, {rows}) AS i"
        if db == "pg"
        else (f"(SELECT seq AS i FROM seq_1_to_{rows}) s")
    )
    # Each block of 300,000 rows is one school day, each student once in it: the
    # key (student_id, absence_date) is unique, as keyset chunks need.
    day = (
        "DATE '2024-08-20' + (i - 1) / 300000"
        if db == "pg"
        else "DATE '2024-08-20' + INTERVAL ((i - 1) DIV 300000) DAY"
    )
    sid = _cat(db, "'S'", _pad(db, "1 + (i * 7) % 300000", 7))
    return f"""
DROP TABLE IF EXISTS {table};
CREATE TABLE {table} (
  id bigint PRIMARY KEY, student_id varchar(20) NOT NULL,
  absence_date date NOT NULL, reason_code varchar(8), periods varchar(20));
INSERT INTO {table} SELECT i, {sid}, {day}, {_pick(db, ["A", "E", "U", "T", "M"], "i")},
  CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN '1,3,4' WHEN 2 THEN '2' ELSE '1,2,3,4,5,6' END
FROM {series};
CREATE INDEX {table}_key ON {table} (student_id, absence_date);
"""


def run_sql(db: str, sql: str, database: str | None = DATABASE) -> str:
    if db == "pg":
        cmd = [*PSQL, "-d", database or "postgres"]
    else:
        cmd = [*MARIADB, *([database] if database else []), "-N", "-B"]
    done = subprocess.run(cmd, input=sql, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{db}: {done.stderr.strip()}")
    return done.stdout


def ensure_database(db: str) -> None:
    if db == "pg":
        exists = run_sql(
            db, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", "postgres"
        )
        if not exists.strip():
            run_sql(db, f"CREATE DATABASE {DATABASE}", "postgres")
    else:
        run_sql(db, f"CREATE DATABASE IF NOT EXISTS {DATABASE}", None)


def row_count(db: str, table: str) -> int:
    try:
        return int(run_sql(db, f"SELECT COUNT(*) FROM {table}").strip() or 0)
    except SystemExit:
        return -1


def load(db: str, students: int, sizes: list[int]) -> None:
    """Create the tables that are missing or of another size."""
    ensure_database(db)
    if row_count(db, "students") != students:
        run_sql(db, students_sql(db, students))
    for size in sizes:
        table = attendance_table(size)
        if row_count(db, table) != size:
            run_sql(db, attendance_sql(db, size, table))


def attendance_table(size: int) -> str:
    return f"attendance_{size}"


def drop_big(db: str, keep: int = 2_000_000) -> None:
    """Drop attendance tables larger than ``keep`` rows (disk is shared)."""
    for size in (10_000_000,):
        if size > keep:
            run_sql(db, f"DROP TABLE IF EXISTS {attendance_table(size)}")
