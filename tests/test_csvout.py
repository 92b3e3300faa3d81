import csv
import io
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.csvout import ExportWriter, column_order, shape_batch
from connector.datasets import ATTENDANCE, STUDENTS, Column, DataSet, Kind
from connector.errors import ExportError

TEXT = DataSet(
    "students",
    (Column("a", "A", Kind.TEXT), Column("b", "B", Kind.TEXT)),
    "two text columns",
)


def write(
    dataset: DataSet, columns: list[str], rows: list[tuple[object, ...]], path: Path
) -> bytes:
    writer = ExportWriter(dataset, path)
    order = column_order(dataset, columns)
    writer.write_rows(shape_batch(dataset, order, rows, writer.result.issues))
    writer.finish()
    writer.commit()
    return path.read_bytes()


def test_writer_quotes_every_field_and_ends_records_with_crlf(tmp_path: Path) -> None:
    dataset = DataSet(
        "attendance",
        tuple(Column(n, n.upper(), Kind.TEXT) for n in "abcd"),
        "four",
    )
    data = write(
        dataset, list("abcd"), [(None, "", 0, 'Al "Bud" Ray')], tmp_path / "x.csv"
    )
    assert data == b'"A","B","C","D"\r\n"","","0","Al ""Bud"" Ray"\r\n'


def test_writer_header_and_column_order_follow_the_declaration(tmp_path: Path) -> None:
    columns = list(reversed(ATTENDANCE.column_names))
    data = write(
        ATTENDANCE, columns, [(1, "2025-08-04", "A", "S1")], tmp_path / "a.csv"
    )
    assert data.split(b"\r\n")[0] == (
        b'"Student ID","Absence Code","Absence Date","Periods Missed"'
    )
    assert data.split(b"\r\n")[1] == b'"S1","A","08/04/2025","1"'


def test_column_order_names_missing_and_unexpected() -> None:
    with pytest.raises(ExportError) as info:
        column_order(STUDENTS, ["student_id", "first_name", "nickname"])
    assert "missing last_name" in str(info.value)
    assert "unexpected nickname" in str(info.value)


def test_writer_rejects_duplicate_ids(tmp_path: Path) -> None:
    writer = ExportWriter(TEXT, tmp_path / "s.csv")
    with pytest.raises(ExportError, match="row 2"):
        writer.write_rows([("1", "x"), ("1", "y")])
    writer.discard()
    assert list(tmp_path.iterdir()) == []


def test_discard_leaves_yesterdays_file(tmp_path: Path) -> None:
    target = tmp_path / "s.csv"
    target.write_bytes(b"yesterday")
    writer = ExportWriter(TEXT, target)
    writer.write_rows([("1", "x")])
    writer.discard()
    assert target.read_bytes() == b"yesterday"
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.none() | st.text(), st.none() | st.text()), max_size=20))
def test_any_unicode_gives_strict_ascii_csv(
    rows: list[tuple[str | None, str | None]],
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        dataset = DataSet("attendance", TEXT.columns, "any")
        data = write(dataset, ["a", "b"], list(rows), Path(folder) / "x.csv")
    text = data.decode("ascii")
    records = text.split("\r\n")
    assert records[-1] == ""
    assert len(records) == len(rows) + 2
    for record in records[:-1]:
        assert "\r" not in record and "\n" not in record
        assert record.startswith('"') and record.endswith('"')
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    expected = shape_batch(dataset, [0, 1], list(rows), Counter())
    assert [tuple(r) for r in parsed[1:]] == expected
