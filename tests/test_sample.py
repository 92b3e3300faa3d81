"""The sample SIS that ``connector demo`` extracts, and its demo templates."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import pytest

from connector.datasets import DATASETS
from connector.sample import DEMO_END, DEMO_START, SampleSummary, build_sample_sis

TEMPLATES = files("connector") / "demo_queries"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleSummary]:
    path = tmp_path_factory.mktemp("sample") / "sis.db"
    return path, build_sample_sis(path)


@pytest.fixture
def db(sample: tuple[Path, SampleSummary]) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(sample[0])) as conn:
        yield conn


def render(name: str, **params: Any) -> tuple[str, list[Any]]:
    """Render a demo template the way the engine promises to: values bound, not pasted.

    A stand-in for the real renderer, for this test only. Every ``{{ ... }}`` becomes
    ``?`` (a list becomes ``?, ?, ?``) and its value is collected. Dates are bound as
    ISO text, as SQLAlchemy's SQLite dialect does; sqlite3's own date adapter is
    deprecated from Python 3.12.
    """
    bound: list[Any] = []

    def bind(value: Any) -> str:
        values = list(value) if isinstance(value, list | tuple) else [value]
        bound.extend(v.isoformat() if isinstance(v, date) else v for v in values)
        return ", ".join("?" * len(values))

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, finalize=bind)
    source = (TEMPLATES / f"{name}.sql.j2").read_text(encoding="utf-8")
    return env.from_string(source).render(**params), bound


def run(
    conn: sqlite3.Connection, name: str, **params: Any
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    sql, bound = render(name, start_date=DEMO_START, end_date=DEMO_END, **params)
    cursor = conn.execute(sql, bound)
    rows = cursor.fetchall()
    return tuple(d[0] for d in cursor.description), rows


def column(conn: sqlite3.Connection, sql: str) -> list[Any]:
    return [row[0] for row in conn.execute(sql)]


def dump(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.iterdump())


def test_build_sample_sis_same_seed_same_content(tmp_path: Path) -> None:
    first = build_sample_sis(tmp_path / "a.db", students=400, seed=7)
    second = build_sample_sis(tmp_path / "b.db", students=400, seed=7)
    build_sample_sis(tmp_path / "c.db", students=400, seed=8)

    assert first == second
    assert dump(tmp_path / "a.db") == dump(tmp_path / "b.db")
    assert dump(tmp_path / "a.db") != dump(tmp_path / "c.db")


def test_build_sample_sis_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "sis.db"
    path.parent.mkdir()
    path.write_text("not a database")

    summary = build_sample_sis(path, students=50)

    with closing(sqlite3.connect(path)) as conn:
        assert len(run(conn, "students")[1]) == summary.students == 50
    assert [p.name for p in path.parent.iterdir()] == ["sis.db"]


def test_build_sample_sis_leaves_no_temp_file_on_failure(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        build_sample_sis(tmp_path / "sis.db", students=0)

    assert list(tmp_path.iterdir()) == []


def test_summary_defaults(sample: tuple[Path, SampleSummary]) -> None:
    summary = sample[1]

    assert (summary.students, summary.staff) == (3000, 200)
    assert (summary.start_date, summary.end_date) == (date(2026, 3, 2), DEMO_END)
    assert summary.seed == 2026


@pytest.mark.parametrize("name", ["students", "attendance", "staff"])
def test_template_returns_declared_columns_and_summary_counts(
    db: sqlite3.Connection, sample: tuple[Path, SampleSummary], name: str
) -> None:
    names, rows = run(db, name)

    assert names == DATASETS[name].column_names
    assert len(rows) == sample[1].expected_rows()[name]


@pytest.mark.parametrize("name", ["students", "attendance", "staff"])
def test_template_binds_every_value(name: str) -> None:
    source = (TEMPLATES / f"{name}.sql.j2").read_text(encoding="utf-8")
    sql, bound = render(name, start_date=DEMO_START, end_date=DEMO_END, schools=["1"])

    assert sql.count("?") == len(bound)
    assert "2026" not in sql and "'1'" not in sql
    assert not [line for line in source.splitlines() if "--" in line and "{{" in line]


@pytest.mark.parametrize(
    ("name", "school_column"),
    [("students", 4), ("attendance", None), ("staff", 4)],
    ids=["students", "attendance", "staff"],
)
def test_template_filters_schools(
    db: sqlite3.Connection, name: str, school_column: int | None
) -> None:
    everything = run(db, name)[1]
    some = run(db, name, schools=["101", "301"])[1]

    assert 0 < len(some) < len(everything)
    if school_column is not None:
        assert {row[school_column] for row in some} == {"101", "301"}


def test_attendance_rows_are_absences_on_weekdays_in_range(
    db: sqlite3.Connection,
) -> None:
    rows = run(db, "attendance")[1]
    days = {date.fromisoformat(row[2]) for row in rows}

    assert {row[1] for row in rows} == {"A", "E", "I"}
    assert all(DEMO_START <= day <= DEMO_END and day.weekday() < 5 for day in days)
    assert len(days) == 20
    assert {row[3] for row in rows} >= {None, 1, 2, 3}
    assert column(db, "SELECT min(attendance_date) FROM attendance") == ["2026-02-23"]


def test_attendance_narrow_range(db: sqlite3.Connection) -> None:
    sql, bound = render(
        "attendance", start_date=date(2026, 3, 3), end_date=date(2026, 3, 3)
    )

    rows = db.execute(sql, bound).fetchall()

    assert rows and {row[2] for row in rows} == {"2026-03-03"}


def test_student_ids_unique_and_never_staff_ids(db: sqlite3.Connection) -> None:
    students = column(db, "SELECT student_number FROM students")
    staff = column(db, "SELECT employee_number FROM staff")

    assert len(set(students)) == len(students)
    assert len(set(staff)) == len(staff)
    assert not set(students) & set(staff)
    assert "W" in column(db, "SELECT enroll_status FROM students")
    assert 0 in column(db, "SELECT is_active FROM staff")


def test_students_have_zero_to_three_guardians(db: sqlite3.Connection) -> None:
    counts = column(
        db,
        "SELECT count(sc.contact_id) FROM students AS s"
        " LEFT JOIN student_contacts AS sc ON sc.student_id = s.id GROUP BY s.id",
    )
    shared = column(
        db,
        "SELECT count(*) FROM student_contacts GROUP BY contact_id HAVING count(*) > 1",
    )

    assert set(counts) == {0, 1, 2, 3}
    assert shared


@pytest.mark.parametrize(
    "name",
    [
        "José", "Zoë", "Nguyễn", "Đặng", "Wiśniewski", "Łucja", "Müller", "Weißmann",
        "O’Brien", "O'Neil", "St. John", "Mary-Kate", "李", "明", "김", "민준",
        "  Ana", "López ", 'Robert "Bobby"', "Anna\tMaria", "Li\nWei",
    ],
)  # fmt: skip
def test_messy_names_present(db: sqlite3.Connection, name: str) -> None:
    names = run(db, "students")[1]

    assert any(name in (row[1], row[2]) for row in names)


def test_messy_staff_names_present(db: sqlite3.Connection) -> None:
    rows = run(db, "staff")[1]
    names = {row[1] for row in rows} | {row[2] for row in rows}

    assert {"O’Brien", " Thomas", "St. John  ", 'Katherine "Kate"'} <= names


PHONE_SHAPES = {
    "(217) 555-0123": r"\(\d{3}\) 555-01\d\d",
    "217.555.0123 x12": r"\d{3}\.555\.01\d\d x\d\d",
    "+1 217 555 0123": r"\+1 \d{3} 555 01\d\d",
    "1-217-555-0123": r"1-\d{3}-555-01\d\d",
    "2175550123": r"\d{3}55501\d\d",
    " 217-555-0123 ": r" \d{3}-555-01\d\d ",
    "217-555-0123 (cell)": r"\d{3}-555-01\d\d \(cell\)",
    "555-0123": r"555-01\d\d",
    "N/A": r"N/A",
    "000-000-0000": r"000-000-0000",
    "blank": r"",
}


@pytest.mark.parametrize("pattern", PHONE_SHAPES.values(), ids=PHONE_SHAPES.keys())
def test_messy_phones_present(db: sqlite3.Connection, pattern: str) -> None:
    phones = phone_values(db)

    assert any(re.fullmatch(pattern, p) for p in phones if p is not None)
    assert None in phones


def test_phones_stay_in_fictional_block(db: sqlite3.Connection) -> None:
    for phone in phone_values(db):
        if phone and phone not in ("N/A", "000-000-0000"):
            assert re.search(r"555[-. ]?01\d\d", phone), phone


def phone_values(db: sqlite3.Connection) -> list[str | None]:
    return column(
        db,
        "SELECT phone FROM contacts UNION ALL SELECT work_phone FROM contacts"
        " UNION ALL SELECT work_phone FROM staff UNION ALL SELECT cell_phone FROM staff"
        " UNION ALL SELECT main_phone FROM schools",
    )


def test_students_other_values(db: sqlite3.Connection) -> None:
    names, rows = run(db, "students")
    by_column: dict[str, Sequence[Any]] = {
        name: [row[i] for row in rows] for i, name in enumerate(names)
    }

    assert set(by_column["school"]) == {"101", "102", "201", "301"}
    assert set(by_column["grade"]) == {"KG", *map(str, range(1, 13))}
    assert set(by_column["language"]) == {None, "", "es", "vi", "zh"}
    assert by_column["language"].count(None) > len(rows) / 2
    assert {"F", "M", "X", "", None} == set(by_column["gender"])
    assert None in by_column["email"] and "" in by_column["email"]
    assert None in by_column["phone"] and None in by_column["alt_phone"]
