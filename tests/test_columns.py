"""The columnar path gives exactly what the row path gives: texts, notes, bytes."""

from __future__ import annotations

import datetime as dt
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyodbc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.columns import clean_array
from connector.csvout import ColumnBatch, ExportWriter, RowPolicy, column_order
from connector.datasets import ATTENDANCE, STUDENTS, Column, Kind
from connector.errors import ExportError, QueryError
from connector.fields import clean_column

from .sis_expectations import SIS
from .test_database import query, source

HOSTILE = [
    "",
    " ",
    "Ann",
    " Ann",
    "Ann ",
    "Ann  Lee",
    "O'Brien-Smith Jr.",
    "Zoë",
    "Nguyễn",
    "a\tb",
    "a\r\nb",
    "x" * 300,
    "ann@example.org",
    "ann@@example.org",
    "josé@example.com",
    "(217) 555-0140",
    "+1 217 555 0140 x12",
    "217-555-0140 ext. 12",
    "(217) 555-0140 X9",
    "2175550140#4",
    "217.555.0140;ext=7",
    "217-555-0140 extension 55",
    "217-555-0140 x",
    "217-555-0140\vx12",
    "217-555-0140 x12 x13",
    "123-45-6789 x12",
    "217-555-0140",
    "2175550140",
    "123-45-6789",
    "123456789",
    '"quoted"',
    "😀",
    "\x00",
]
KINDS = [Kind.ID, Kind.NAME, Kind.CODE, Kind.TEXT, Kind.EMAIL, Kind.PHONE]


def both(values: list[Any], column: Column) -> None:
    texts, notes = clean_column(values, column)
    array, array_notes = clean_array(pa.array(values, pa.string()), column)
    assert array.to_pylist() == texts
    assert array_notes == notes


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_columnar_cleaning_equals_the_field_rules_on_hostile_values(
    kind: Kind,
) -> None:
    both([*HOSTILE, None], Column("c", "C", kind, 10 if kind is Kind.PHONE else 20))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(KINDS),
    st.lists(st.none() | st.text(max_size=30) | st.sampled_from(HOSTILE), max_size=30),
)
def test_columnar_cleaning_equals_the_field_rules(
    kind: Kind, values: list[Any]
) -> None:
    both(values, Column("c", "C", kind, 10 if kind is Kind.PHONE else 25))


def test_dates_are_formatted_once_per_day_with_the_same_texts() -> None:
    days = [dt.date(2025, 1, 2), None, dt.date(1999, 12, 31), dt.date(2025, 1, 2)]
    column = ATTENDANCE.column("absence_date")
    texts, _ = clean_column(days, column)
    array, notes = clean_array(pa.array(days, pa.date32()), column)
    assert array.to_pylist() == texts == ["01/02/2025", "", "12/31/1999", "01/02/2025"]
    assert notes == []


def student(sid: Any, first: Any, phone: Any = None, email: Any = None) -> tuple:
    return (sid, first, "Lee", phone, "101", None, phone, email, "05", "F")


ROWS = [
    student("S1", "Ann", "(217) 555-0140", "a@example.org"),
    student("S2", "Zoë", "217.555.0141"),
    student("S1", "Ann"),  # repeats an ID
    student("S3", None),  # required but empty
    student("Sé4", "Ann"),  # an ID outside ASCII
    student("S5", "Ann  Marie", "x", "bad@"),
    student("S6", "x" * 300, "+1 217 555 0142 ext 9"),
    student("S7", 'The "Rock"'),
]


def write(tmp_path: Path, name: str, batch: Any) -> tuple[bytes, Any]:
    writer = ExportWriter(
        STUDENTS,
        tmp_path / name,
        policy=RowPolicy(on_row_error="drop", max_rejected=1.0),
    )
    try:
        writer.write_batch(column_order(STUDENTS, STUDENTS.selected_names), batch)
    except ExportError:
        writer.discard()
        raise
    result = writer.finish()
    writer.commit()
    return (tmp_path / name).read_bytes(), result


def test_arrow_batches_and_row_batches_write_the_same_bytes(tmp_path: Path) -> None:
    columns = list(zip(*ROWS, strict=True))
    record = pa.RecordBatch.from_arrays(
        [pa.array(c, pa.string()) for c in columns], names=list(STUDENTS.selected_names)
    )
    rows, by_rows = write(tmp_path, "rows.csv", ROWS)
    arrow, by_arrow = write(tmp_path, "arrow.csv", ColumnBatch(record))
    assert arrow == rows
    assert by_arrow.notes == by_rows.notes
    assert by_arrow.fixes == by_rows.fixes and by_arrow.warnings == by_rows.warnings
    assert (by_arrow.written, by_arrow.rejected) == (by_rows.written, by_rows.rejected)
    assert by_rows.rejected == 3


def test_phones_needing_no_fix_count_no_fix(tmp_path: Path) -> None:
    rows = [student("S1", "Ann", "2175550140"), student("S2", "Bo")]
    record = pa.RecordBatch.from_arrays(
        [pa.array(c, pa.string()) for c in zip(*rows, strict=True)],
        names=list(STUDENTS.selected_names),
    )
    _, by_rows = write(tmp_path, "rows.csv", rows)
    _, by_arrow = write(tmp_path, "arrow.csv", ColumnBatch(record))
    assert by_arrow.fixes == by_rows.fixes == {}


@pytest.mark.parametrize(
    ("odd", "where"),
    [
        (student("S9", "Ann 123-45-6789"), "row 3 (ID S9), column first_name"),
        # Among phones in common shapes, which are never tested for one.
        (student("S9", "Ann", "123-45-6789"), "row 3 (ID S9), column phone"),
        (
            student("S9", "Ann", "217-555-0140 x123-45-6789"),
            "row 3 (ID S9), column phone",
        ),
    ],
)
def test_a_social_security_number_stops_both_paths_alike(
    tmp_path: Path, odd: tuple[Any, ...], where: str
) -> None:
    rows = [*ROWS[:2], odd, student("S10", "Bo", "(217) 555-0143")]
    record = pa.RecordBatch.from_arrays(
        [pa.array(c, pa.string()) for c in zip(*rows, strict=True)],
        names=list(STUDENTS.selected_names),
    )
    errors = []
    for name, batch in (("r.csv", rows), ("a.csv", ColumnBatch(record))):
        with pytest.raises(ExportError) as caught:
            write(tmp_path, name, batch)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert where in errors[0]


# Phone-like texts around the common shapes: extensions, odd marks and spaces.
PHONE_LIKE = st.from_regex(
    r"\A[ +(1]{0,3}[0-9]{3}[) .\-]{0,2}[0-9]{3}[ .\-]?[0-9]{4}"
    r"([ \t\v]{0,2}(ext\.?|EXT|x|X|#|;ext=|extension)[ \t]{0,2}[0-9]{0,3}[ ]?)?\Z",
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | st.sampled_from(HOSTILE) | PHONE_LIKE, max_size=30))
def test_phone_fixes_counted_in_bulk_add_up_to_the_notes(values: list[Any]) -> None:
    column = Column("c", "C", Kind.PHONE, 10)
    texts, notes = clean_column(values, column)
    counts: Counter[str] = Counter()
    array, kept = clean_array(pa.array(values, pa.string()), column, counts=counts)
    assert array.to_pylist() == texts
    # Every fix is either counted in bulk or noted, once.
    assert counts + Counter(rule for _, rule in kept) == Counter(r for _, r in notes)
    assert set(kept) <= set(notes) and kept == sorted(kept)


@pytest.mark.integration
def test_unbounded_text_is_read_whole_and_narrow_columns_in_columns(
    sis_loaded: None,
) -> None:
    with source("rosariosis") as src:
        _, batches = src.stream(query("SELECT repeat('x', 5000)::text AS v"), 10)
        wide = list(batches)
        _, batches = src.stream(query("SELECT 'abc'::varchar(20) AS v"), 10)
        narrow = list(batches)
    assert not isinstance(wide[0], ColumnBatch) and wide[0] == [("x" * 5000,)]
    assert isinstance(narrow[0], ColumnBatch) and list(narrow[0]) == [("abc",)]


def test_a_value_over_the_fetch_buffer_is_an_error_not_a_cut() -> None:
    from connector.database import _arrow_error

    class Truncated(Exception):
        pass

    error = _arrow_error(
        query("SELECT v FROM t"),
        Truncated(
            "A value (at least one) is too large to be written into the "
            "allocated buffer without truncation."
        ),
        None,
        40000,
    )
    assert isinstance(error, QueryError)
    assert "inline.sql.j2: a text value after row 40000 is longer than 2048" in str(
        error
    )


@pytest.mark.integration
@pytest.mark.parametrize("sis", ["rosariosis", "opensis"])
def test_columnar_stream_counts_in_the_same_snapshot(
    sis: str, sis_loaded: None
) -> None:
    sql = "SELECT student_id FROM students"
    with source(sis) as src:
        expected = src.count(query(sql))
        _, batches = src.stream(query(sql), 7)
        assert sum(len(b) for b in batches) == expected > 0


def phone_shapes(area: str, exchange: str, line: str) -> list[str]:
    return [
        f"{area}{exchange}{line}",
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"+1 {area} {exchange} {line}",
        f"1-{area}-{exchange}-{line}",
        f"{area}-{exchange}-{line} x12",
        f"{area} {exchange} {line}",
    ]


def test_phones_checked_in_bulk_equal_phonenumbers_on_many_numbers() -> None:
    rng = random.Random(7)
    values: list[Any] = [None, ""]
    for _ in range(1500):
        area = f"{rng.randrange(100, 1000)}"
        exchange = f"{rng.randrange(0, 1000):03d}"
        values.extend(phone_shapes(area, exchange, f"{rng.randrange(10000):04d}"))
    for column in (
        STUDENTS.column("phone"),
        Column("x", "X", Kind.EXTENSION, 6, source="phone"),
    ):
        both(values, column)


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"\A[0-9]{3}\Z"),
    st.from_regex(r"\A[0-9]{3}\Z"),
    st.from_regex(r"\A[0-9]{4}\Z"),
)
def test_phone_shapes_equal_phonenumbers(area: str, exchange: str, line: str) -> None:
    both(phone_shapes(area, exchange, line), STUDENTS.column("phone"))


@pytest.mark.integration
@pytest.mark.parametrize("chunk", [1, 7, 1000], ids=["1", "7", "1000"])
@pytest.mark.parametrize(
    "key", [("student_id",), ("first_name", "student_id")], ids=["id", "name-id"]
)
def test_keyset_chunks_give_every_row_once(
    chunk: int, key: tuple[str, ...], sis_loaded: None
) -> None:
    sql = "SELECT student_id, first_name FROM students;"
    with source("opensis") as src:
        _, batches = src.stream(query(sql), 1000)
        whole = sorted(r for b in batches for r in b)
    with source("opensis", chunk_rows=chunk) as src:
        keyed = replace(query(sql), key=key)
        expected = src.count(keyed)
        columns, batches = src.stream(keyed, 5)
        rows = [r for b in batches for r in b]
    assert columns == ["student_id", "first_name"]
    assert len(rows) == expected == len(whole) > 7
    assert sorted(rows) == whole
    at = [columns.index(k) for k in key]
    assert len({tuple(r[i] for i in at) for r in rows}) == len(rows)


@pytest.fixture
def case_table(sis_loaded: None) -> Iterator[str]:
    """A MariaDB table under a case-blind collation: IDs equal but for case, a
    repeated ID, a key shared by many rows, a NULL in the second key column."""
    name = f"c7_chunks_{os.getpid()}"
    root = SIS["opensis"]["connection"].replace("PWD=;", "")
    root = root.replace("DATABASE=sis_opensis", "")
    rows = [("A1", "2025-01-01"), ("a1", "2025-01-01"), ("B1", "2025-01-02")]
    rows += [("b1", "2025-01-02"), ("C1", None), ("C1", "2025-01-03")]
    rows += [("c1", "2025-01-03"), ("D1", "2025-01-04"), ("D1", "2025-01-04")]
    rows += [("E1", f"2025-02-{d:02d}") for d in range(1, 12)]
    rows += [("e1", "2025-02-05"), ("F1", "2025-03-01")]
    rows += [("G1", "2025-03-01")] * 9
    with pyodbc.connect(root, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(
            f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        )
        conn.execute(
            f"CREATE TABLE {name}.absences (n INT PRIMARY KEY, "
            "student_id VARCHAR(20) NOT NULL, day DATE NULL, "
            "KEY k (student_id, day))"
        )
        conn.cursor().executemany(
            f"INSERT INTO {name}.absences VALUES (?, ?, ?)",
            [(n, sid, day) for n, (sid, day) in enumerate(rows)],
        )
    try:
        yield name
    finally:
        with pyodbc.connect(root, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.mark.integration
@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 7, 100])
@pytest.mark.parametrize(
    "key", [("student_id",), ("student_id", "day")], ids=["id", "id-day"]
)
def test_keys_equal_under_the_collation_stay_in_one_chunk(
    case_table: str, chunk: int, key: tuple[str, ...]
) -> None:
    """Every row comes exactly once, whatever the chunk size: IDs that differ
    only in case, a repeated ID, a key shared by more rows than a chunk, and
    a NULL day (which sorts first)."""
    sql = f"SELECT n, student_id, day FROM {case_table}.absences"
    with source("opensis") as src:
        _, batches = src.stream(query(sql), 1000)
        whole = sorted(r[0] for b in batches for r in b)
    with source("opensis", chunk_rows=chunk) as src:
        keyed = replace(query(sql), key=key)
        assert src.count(keyed) == len(whole) == 31
        _, batches = src.stream(keyed, 5)
        got = [r[0] for b in batches for r in b]
    assert sorted(got) == whole


def test_a_column_batch_reads_as_rows() -> None:
    record = pa.RecordBatch.from_arrays(
        [pa.array(["a", "b", None]), pa.array([1, 2, 3])], names=["x", "x"]
    )
    batch = ColumnBatch(record)
    assert len(batch) == 3
    assert list(batch) == [("a", 1), ("b", 2), (None, 3)]
    assert batch[1] == ("b", 2) and batch[1:] == [("b", 2), (None, 3)]
