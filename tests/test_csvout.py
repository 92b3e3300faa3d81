"""The writer: strict CSV bytes, row validation, row policies and the tripwire."""

import csv
import errno
import io
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from connector import report
from connector.cli import os_error_line
from connector.csvout import ExportWriter, RowPolicy, column_order, shape_batch
from connector.datasets import ATTENDANCE, STAFF, STUDENTS, Column, DataSet, Kind, build
from connector.errors import ConfigError, ExportError
from connector.fields import clean_text, looks_like_ssn

TEXT = DataSet(
    "attendance",
    (Column("a", "A", Kind.TEXT), Column("b", "B", Kind.TEXT)),
    "two text columns",
    unique_ids=False,
)
DROP = RowPolicy(on_row_error="drop", max_rejected=1.0)
FAIL = RowPolicy(on_row_error="fail")


def student(
    sid: str = "S1", first: Any = "Ann", last: Any = "Lee", **kw: Any
) -> tuple[Any, ...]:
    row = dict(
        student_id=sid,
        first_name=first,
        last_name=last,
        phone=None,
        school="101",
        language=None,
        alt_phone=None,
        email=None,
        grade="05",
        gender="F",
    )
    row.update(kw)
    return tuple(row.values())


def write(
    dataset: DataSet,
    rows: list[tuple[Any, ...]],
    path: Path,
    columns: list[str] | None = None,
    **kw: Any,
) -> ExportWriter:
    writer = ExportWriter(dataset, path, **kw)
    order = column_order(dataset, columns or list(dataset.selected_names))
    writer.write_batch(order, rows)
    writer.finish()
    writer.commit()
    return writer


def test_writer_quotes_every_field_and_ends_records_with_crlf(tmp_path: Path) -> None:
    dataset = DataSet(
        "attendance",
        tuple(Column(n, n.upper(), Kind.TEXT) for n in "abcd"),
        "four",
        unique_ids=False,
    )
    path = tmp_path / "x.csv"
    write(dataset, [(None, "", 0, 'Al "Bud" Ray')], path)
    assert path.read_bytes() == b'"A","B","C","D"\r\n"","","0","Al ""Bud"" Ray"\r\n'


def test_header_is_exact_ascii_without_bom(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    write(STUDENTS, [student()], path)
    data = path.read_bytes()
    assert data.startswith(b'"Student ID","First Name","Last Name","Phone",')
    assert data.split(b"\r\n")[0].decode("ascii") == ",".join(
        f'"{h}"' for h in STUDENTS.headers
    )


def test_writer_header_and_column_order_follow_the_declaration(tmp_path: Path) -> None:
    columns = list(reversed(ATTENDANCE.column_names))
    path = tmp_path / "a.csv"
    write(ATTENDANCE, [(1, "2025-08-04", "A", "S1")], path, columns)
    data = path.read_bytes()
    assert data.split(b"\r\n")[0] == (
        b'"Student ID","Absence Code","Absence Date","Periods Missed"'
    )
    assert data.split(b"\r\n")[1] == b'"S1","A","08/04/2025","1"'


def test_column_order_names_missing_and_unexpected() -> None:
    with pytest.raises(ExportError) as info:
        column_order(STUDENTS, ["student_id", "first_name", "nickname"])
    assert "missing last_name" in str(info.value)
    assert "unexpected nickname" in str(info.value)


def test_a_duplicate_id_names_both_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    writer = ExportWriter(STUDENTS, path, policy=FAIL)
    order = column_order(STUDENTS, STUDENTS.selected_names)
    with pytest.raises(ExportError) as info:
        writer.write_batch(order, [student("S1"), student("S2"), student("S1")])
    writer.discard()
    assert str(info.value).startswith(
        "data set students, row 3 (ID S1), column student_id: repeats the ID of an "
        "earlier row (first in row 1)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_names_the_export_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    """/dev/full fails every write with ENOSPC, as a full output folder does."""
    path = tmp_path / "s.csv"
    path.write_bytes(b"yesterday")
    writer = ExportWriter(STUDENTS, path, policy=FAIL)
    writer._file.close()
    writer._file = open("/dev/full", "wb")  # noqa: SIM115 - closed by discard()
    order = column_order(STUDENTS, STUDENTS.selected_names)
    writer.write_batch(order, [student("S1"), student("S2")])
    with pytest.raises(OSError) as info:
        writer.finish()
    writer.discard()  # the buffered rows fail again: not a second error

    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    line = os_error_line(info.value, [("output.folder", tmp_path)])
    assert line.startswith(f"cannot write {path}: no space left on the device")
    assert "output.folder" in line
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]
    assert path.read_bytes() == b"yesterday"


def test_a_full_disk_names_the_run_report_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(prefix: str = "", dir: str | None = None) -> tuple[int, str]:
        name = Path(str(dir)) / f"{prefix}full"
        name.touch()
        return os.open("/dev/full", os.O_WRONLY), str(name)

    monkeypatch.setattr(report.tempfile, "mkstemp", full)
    with pytest.raises(OSError) as info:
        report.RunReport().write(tmp_path)
    assert info.value.filename == str(tmp_path / report.REPORT_NAME)
    assert list(tmp_path.iterdir()) == []


def test_drop_policy_keeps_the_first_and_reports_the_rest(tmp_path: Path) -> None:
    writer = write(
        STUDENTS,
        [student("S1"), student("S1"), student("S2", last=None), student("S3")],
        tmp_path / "s.csv",
        policy=DROP,
    )
    result = writer.result
    assert (result.fetched, result.written, result.rejected) == (4, 2, 2)
    assert result.rejections == {
        "student_id:duplicate_id": 1,
        "last_name:required_empty": 1,
    }
    notes = [n.as_dict() for n in result.notes]
    assert notes == [
        {
            "row": 2,
            "id": "S1",
            "column": "student_id",
            "rule": "duplicate_id",
            "detail": "first in row 1",
        },
        {"row": 3, "id": "S2", "column": "last_name", "rule": "required_empty"},
    ]
    lines = (tmp_path / "s.csv").read_bytes().split(b"\r\n")
    assert [line.split(b",")[0] for line in lines[1:-1]] == [b'"S1"', b'"S3"']


def test_a_required_value_left_empty_by_a_rule_names_the_rule(tmp_path: Path) -> None:
    writer = ExportWriter(ATTENDANCE, tmp_path / "a.csv", policy=FAIL)
    order = column_order(ATTENDANCE, ATTENDANCE.selected_names)
    with pytest.raises(ExportError) as info:
        writer.write_batch(order, [("S1", "A", "2025-02-30", None)])
    writer.discard()
    assert str(info.value).startswith(
        "data set attendance, row 1 (ID S1), column absence_date: required but "
        "empty after cleaning (value date_invalid)"
    )


def test_a_name_empty_after_cleaning_is_a_row_error(tmp_path: Path) -> None:
    writer = write(STUDENTS, [student(first="😀")], tmp_path / "s.csv", policy=DROP)
    assert writer.result.rejections == {"first_name:required_empty": 1}
    assert writer.result.written == 0


def test_too_many_rejections_fail_the_data_set(tmp_path: Path) -> None:
    writer = ExportWriter(
        STUDENTS, tmp_path / "s.csv", policy=RowPolicy(max_rejected=0.05)
    )
    order = column_order(STUDENTS, STUDENTS.selected_names)
    rows = [student(f"S{i}") for i in range(19)] + [student("S99", first=None)]
    writer.write_batch(order, rows)
    assert writer.finish().rejected == 1  # 1 of 20 is 5%: allowed
    writer.discard()

    writer = ExportWriter(
        STUDENTS, tmp_path / "s.csv", policy=RowPolicy(max_rejected=0.05)
    )
    writer.write_batch(order, rows[:9] + [student("S99", first=None)])
    with pytest.raises(
        ExportError, match=r"1 of 10 rows broke a rule.*row 10 \(ID S99\)"
    ):
        writer.finish()
    writer.discard()


def test_an_id_too_long_is_rejected_never_cut(tmp_path: Path) -> None:
    writer = write(STUDENTS, [student("S" * 256)], tmp_path / "s.csv", policy=DROP)
    assert writer.result.rejections == {"student_id:id_too_long": 1}


def test_staff_ids_must_not_equal_student_ids(tmp_path: Path) -> None:
    students = write(STUDENTS, [student("100"), student("101")], tmp_path / "s.csv")
    staff_row = ("101", "Ray", "Al", None, None, None, None, None, None)
    writer = ExportWriter(
        STAFF, tmp_path / "t.csv", policy=FAIL, clashing_ids=students.ids
    )
    with pytest.raises(ExportError, match=r"row 1 \(ID 101\).*students export row 2"):
        writer.write_batch(column_order(STAFF, STAFF.selected_names), [staff_row])
    writer.discard()


@pytest.mark.parametrize(("policy", "written"), [("warn", 2), ("reject", 1)])
def test_attendance_for_an_unknown_student(
    tmp_path: Path, policy: Any, written: int
) -> None:
    students = write(STUDENTS, [student("S1")], tmp_path / "s.csv")
    rows = [("S1", "A", "2025-08-04", 1), ("S9", "A", "2025-08-04", 1)]
    writer = write(
        ATTENDANCE,
        rows,
        tmp_path / "a.csv",
        policy=RowPolicy(unknown_students=policy, max_rejected=1.0),
        student_ids=students.ids,
    )
    assert writer.result.written == written
    [note] = writer.result.notes
    assert (note.row, note.id, note.rule) == (2, "S9", "unknown_student")


def test_a_social_security_number_stops_everything(tmp_path: Path) -> None:
    target = tmp_path / "s.csv"
    target.write_bytes(b"yesterday")
    dataset = build("students", [Column("note", "Note", Kind.TEXT)])
    writer = ExportWriter(dataset, target, policy=DROP)
    order = column_order(dataset, dataset.selected_names)
    with pytest.raises(ExportError) as info:
        writer.write_batch(order, [(*student("S7"), "SSN 123-45-6789")])
    writer.discard()
    assert str(info.value).startswith(
        "data set students, row 1 (ID S7), column note: a value looks like a US "
        "social security number"
    )
    assert "123-45" not in str(info.value)
    assert target.read_bytes() == b"yesterday"


@pytest.mark.parametrize(
    ("row", "where"),
    [
        # cleaning drops the digits from a name: the raw value is tested
        (student("S1", first="123-45-6789"), "row 2 (ID S1), column first_name"),
        (student("123-45-6789"), "row 2, column student_id"),  # never printed
        (
            student("S1", language="１２３-４５-６７８９"),
            "row 2 (ID S1), column language",
        ),
        # not left empty: stopped
        (student("S1", phone="123-45-6789"), "row 2 (ID S1), column phone"),
    ],
    ids=["in-a-name", "as-the-id", "full-width", "in-a-phone"],
)
def test_the_tripwire_sees_raw_and_cleaned_values(
    tmp_path: Path, row: tuple[Any, ...], where: str
) -> None:
    writer = ExportWriter(STUDENTS, tmp_path / "s.csv", policy=DROP)
    order = column_order(STUDENTS, STUDENTS.selected_names)
    with pytest.raises(ExportError) as info:
        writer.write_batch(order, [student("S0"), row])
    writer.discard()
    assert str(info.value).startswith(f"data set students, {where}: a value looks like")
    assert "6789" not in str(info.value)


@pytest.mark.parametrize(
    ("odd", "shown", "rule"),
    [
        ("S\u00e91", "S\\xe91", "id_not_ascii"),
        ("S1\u00a0", "S1\\xa0", "id_not_ascii"),  # a no-break space
        ("\u3000S1", "\\u3000S1", "id_not_ascii"),
        ("S1\t", "S1\\t", "id_not_printable"),
        ("S\x011", "S\\x011", "id_not_printable"),
        ("S\r\n1", "S\\r\\n1", "id_not_printable"),
        ("S  1", "S\\x20\\x201", "id_not_printable"),
        (" S1", "\\x20S1", "id_not_printable"),
    ],
    ids=[
        "accent",
        "nbsp",
        "ideographic-space",
        "tab",
        "control",
        "break",
        "two-spaces",
        "leading-space",
    ],
)
def test_an_id_is_never_changed_into_another(
    tmp_path: Path, odd: str, shown: str, rule: str
) -> None:
    # The odd ID comes first: were it cleaned into "S1" (or "Se1", "S 1"), the
    # real student's row would be the one rejected as a repeat.
    real = "Se1" if rule == "id_not_ascii" and "\u00e9" in odd else "S1"
    real = "S 1" if odd == "S  1" else real
    writer = write(
        STUDENTS, [student(odd), student(real)], tmp_path / "s.csv", policy=DROP
    )
    assert writer.result.rejections == {f"student_id:{rule}": 1}
    assert writer.result.written == 1
    # The rejected row is named by its own ID, escaped, not by the real one.
    assert [(n.row, n.id, n.rule) for n in writer.result.notes] == [(1, shown, rule)]


def test_a_rejected_id_in_the_error_line_cannot_read_as_another(
    tmp_path: Path,
) -> None:
    writer = ExportWriter(STUDENTS, tmp_path / "s.csv", policy=FAIL)
    order = column_order(STUDENTS, STUDENTS.selected_names)
    with pytest.raises(ExportError) as info:
        writer.write_batch(order, [student(" S1")])
    writer.discard()
    line = " ".join(str(info.value).split())  # as the one error line shows it
    assert "row 1 (ID \\x20S1), column student_id" in line


def test_an_id_loses_only_the_spaces_a_char_column_pads_with(tmp_path: Path) -> None:
    writer = write(STUDENTS, [student("S1   "), student("S2")], tmp_path / "s.csv")
    assert writer.result.written == 2
    assert list(writer.ids) == ["S1", "S2"]


def test_a_cut_name_is_noted_per_row(tmp_path: Path) -> None:
    dataset = build("students")
    limited = tuple(
        replace(c, max_length=5) if c.name == "last_name" else c
        for c in dataset.columns
    )
    dataset = replace(dataset, columns=limited)
    writer = write(dataset, [student("S1", last="Weißmüller")], tmp_path / "s.csv")
    assert [(n.row, n.id, n.column, n.rule) for n in writer.result.notes] == [
        (1, "S1", "last_name", "truncated")
    ]
    assert writer.result.fixes["last_name:truncated"] == 1


def test_the_same_phone_twice_is_reported_not_sent(tmp_path: Path) -> None:
    rows = [student(phone="(217) 555-0140", alt_phone="1-217-555-0140")]
    writer = write(STUDENTS, rows, tmp_path / "s.csv")
    assert writer.result.warnings == {"alt_phone:phone_duplicate": 1}
    assert b'"2175550140","101","","",' in (tmp_path / "s.csv").read_bytes()


def test_added_columns_and_an_extension_column(tmp_path: Path) -> None:
    dataset = build(
        "students",
        [
            Column("guardian2_phone", "Guardian 2 Phone", Kind.PHONE, 10),
            Column("phone_ext", "Phone Extension", Kind.EXTENSION, 6, source="phone"),
        ],
    )
    assert dataset.selected_names[-1] == "guardian2_phone"
    rows = [(*student(phone="(217) 555-0140 ext. 12"), "217.555.0199")]
    write(dataset, rows, tmp_path / "s.csv")
    header, record = (tmp_path / "s.csv").read_bytes().split(b"\r\n")[:2]
    assert header.endswith(b'"Gender","Guardian 2 Phone","Phone Extension"')
    assert record.endswith(b'"F","2175550199","12"')


def test_a_timestamp_with_a_zone_needs_the_school_zone(tmp_path: Path) -> None:
    import datetime as dt

    writer = ExportWriter(ATTENDANCE, tmp_path / "a.csv")
    order = column_order(ATTENDANCE, ATTENDANCE.selected_names)
    aware = dt.datetime(2025, 8, 5, 4, 30, tzinfo=dt.UTC)
    with pytest.raises(ConfigError, match="set source.time_zone"):
        writer.write_batch(order, [("S1", "A", aware, None)])
    writer.discard()


def test_discard_leaves_yesterdays_file(tmp_path: Path) -> None:
    target = tmp_path / "s.csv"
    target.write_bytes(b"yesterday")
    writer = ExportWriter(TEXT, target)
    writer.write_rows([("1", "x")])
    writer.discard()
    assert target.read_bytes() == b"yesterday"
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.text(),
            # Nine-digit numbers would trip the SSN check (tested above).
            st.none()
            | st.text()
            | st.integers(-(10**7), 10**7)
            | st.floats(allow_nan=False, max_value=1e7, min_value=-1e7),
        ),
        max_size=20,
    )
)
def test_any_unicode_gives_strict_ascii_csv(rows: list[tuple[Any, Any]]) -> None:
    assume(not any(looks_like_ssn(clean_text(v), Kind.TEXT) for r in rows for v in r))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.csv"
        write(TEXT, list(rows), path)
        data = path.read_bytes()
    text = data.decode("ascii")
    records = text.split("\r\n")
    assert records[-1] == ""
    assert len(records) == len(rows) + 2
    for record in records[:-1]:
        assert "\r" not in record and "\n" not in record
        assert record.startswith('"') and record.endswith('"')
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    expected, _ = shape_batch(TEXT, {"a": 0, "b": 1}, list(rows))
    assert [tuple(r) for r in parsed[1:]] == expected


_IDS = st.sampled_from(["S1", "S2", "S3", "S4", "S5", "", "x" * 300])
_NAMES = st.sampled_from(["Ann", "Zoë", "", None, "Łucja O’Brien", "x" * 300])
_PHONES = st.sampled_from([None, "(217) 555-0140", "217.555.0141", "N/A", "x12"])


def _split_write(
    dataset: DataSet,
    rows: list[tuple[Any, ...]],
    cuts: list[int],
    path: Path,
    checks_each_row: bool = False,
    **kw: Any,
) -> tuple[bytes | str, Any, dict[str, int]]:
    """Write ``rows`` in batches cut at ``cuts``: the bytes (or the error),
    the result and the IDs kept. ``checks_each_row`` takes the row-by-row ID
    checks for every batch."""
    writer = ExportWriter(dataset, path, policy=DROP, **kw)
    if checks_each_row:
        writer._may_repeat = lambda keys: True  # type: ignore[method-assign]
    order = column_order(dataset, list(dataset.selected_names))
    bounds = [0, *sorted(set(cuts)), len(rows)]
    try:
        for start, end in zip(bounds, bounds[1:], strict=False):
            writer.write_batch(order, rows[start:end])
        writer.finish()
    except ExportError as exc:
        writer.discard()
        return str(exc), None, {}
    writer.commit()
    return path.read_bytes(), writer.result, dict(writer.ids)


@settings(max_examples=150, deadline=None)
@given(
    students=st.lists(st.tuples(_IDS, _NAMES, _PHONES), max_size=25),
    absences=st.lists(_IDS, max_size=25),
    cuts=st.lists(st.integers(0, 25), max_size=4),
)
def test_how_rows_fall_into_batches_changes_nothing(
    students: list[tuple[str, Any, Any]], absences: list[str], cuts: list[int]
) -> None:
    """Batches without a repeated ID skip the row-by-row ID checks: cut
    anywhere, the file, every count and note, and the IDs kept are the same as
    with those checks on every row."""
    rows = [student(sid, first, phone=phone) for sid, first, phone in students]
    visits = [(sid, "A", "2025-08-04", 1) for sid in absences]
    staff = [(sid, "Ray", "Al", None, None, None, None, None, None) for sid in absences]
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        whole = _split_write(STUDENTS, rows, cuts, base / "a.csv")
        single = _split_write(STUDENTS, rows, [], base / "b.csv", True)
        assert whole[0] == single[0]
        if whole[1] is None:
            return
        assert whole[1].notes == single[1].notes
        assert (whole[1].fixes, whole[1].warnings, whole[1].rejections) == (
            single[1].fixes,
            single[1].warnings,
            single[1].rejections,
        )
        assert whole[2] == single[2]
        for dataset, extra, kw in (
            (ATTENDANCE, visits, {"student_ids": whole[2]}),
            (STAFF, staff, {"clashing_ids": whole[2]}),
        ):
            a = _split_write(dataset, extra, cuts, base / "c.csv", **kw)
            b = _split_write(dataset, extra, [], base / "d.csv", True, **kw)
            assert a[0] == b[0]
            if a[1] is not None:
                assert a[1].notes == b[1].notes and a[2] == b[2]
                assert (a[1].written, a[1].rejected) == (b[1].written, b[1].rejected)
