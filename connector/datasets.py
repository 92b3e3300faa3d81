"""The data sets the notification service accepts, each declared once.

The CSV writer, the validation, ``connector test``, ``connector datasets`` and the
README's column tables all read these declarations. A template's query must return
exactly the columns named by ``Column.name`` (in any order, any case), except those
derived from another column (a phone's extension); the export writes them in the
declared order under ``Column.header``.

A config can add optional columns to a data set (a second guardian phone, a custom
field, a phone extension) and choose the shape of attendance's periods; ``build``
makes the data set a job actually uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class Kind(StrEnum):
    """How a column's values are cleaned and checked."""

    ID = "id"
    NAME = "name"
    PHONE = "phone"
    EXTENSION = "extension"
    DATE = "date"
    CODE = "code"
    EMAIL = "email"
    TEXT = "text"


# What happens to a value longer than its column allows, by kind. The README's
# "Field rules" section says the same; tests/test_docs.py checks that it does.
TOO_LONG: dict[Kind, str] = {
    Kind.ID: "the row is rejected (an ID is never cut)",
    Kind.NAME: "cut at the limit (counted as fixed, the row noted in the report)",
    Kind.PHONE: "cannot happen (always 10 digits or empty)",
    Kind.EXTENSION: "the extension is dropped, with a warning",
    Kind.DATE: "cannot happen (always mm/dd/yyyy or empty)",
    Kind.CODE: "the value is dropped with a warning; the row is rejected if required",
    Kind.EMAIL: "the value is dropped, with a warning",
    Kind.TEXT: "cut at the limit (counted as fixed, the row noted in the report)",
}


@dataclass(frozen=True)
class Column:
    name: str
    header: str
    kind: Kind
    max_length: int = 255
    is_required: bool = False
    source: str | None = None
    """For an extension column: the phone column whose extension it holds."""

    @property
    def is_selected(self) -> bool:
        """Whether the template's query returns this column itself."""
        return self.source is None


@dataclass(frozen=True)
class DataSet:
    name: str
    columns: tuple[Column, ...]
    description: str
    key: tuple[str, ...] = ()
    """Columns that identify a row for the safety gate; () means the ID column."""
    unique_ids: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def selected_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_selected)

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(c.header for c in self.columns)

    @property
    def id_column(self) -> Column:
        return self.columns[0]

    @property
    def key_columns(self) -> tuple[str, ...]:
        return self.key or (self.id_column.name,)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


STUDENTS = DataSet(
    name="students",
    description="One row per enrolled student, with the family contact phones.",
    columns=(
        Column("student_id", "Student ID", Kind.ID, 255, is_required=True),
        Column("first_name", "First Name", Kind.NAME, is_required=True),
        Column("last_name", "Last Name", Kind.NAME, is_required=True),
        Column("phone", "Phone", Kind.PHONE, 10),
        Column("school", "School", Kind.CODE, is_required=True),
        Column("language", "Language", Kind.CODE),
        Column("alt_phone", "Alternate Phone", Kind.PHONE, 10),
        Column("email", "Email", Kind.EMAIL, 100),
        Column("grade", "Grade", Kind.CODE),
        Column("gender", "Gender", Kind.CODE),
    ),
)

ATTENDANCE = DataSet(
    name="attendance",
    description="One row per student absence on a school day.",
    columns=(
        Column("student_id", "Student ID", Kind.ID, 255, is_required=True),
        Column("reason_code", "Absence Code", Kind.CODE, is_required=True),
        Column("absence_date", "Absence Date", Kind.DATE, 10, is_required=True),
        Column("periods", "Periods Missed", Kind.CODE),
    ),
    key=("student_id", "absence_date"),
    unique_ids=False,
)

STAFF = DataSet(
    name="staff",
    description="One row per staff member; IDs must never equal a student ID.",
    columns=(
        Column("staff_id", "Staff ID", Kind.ID, 255, is_required=True),
        Column("last_name", "Last Name", Kind.NAME, is_required=True),
        Column("first_name", "First Name", Kind.NAME, is_required=True),
        Column("phone", "Phone", Kind.PHONE, 10),
        Column("school", "School", Kind.CODE),
        Column("language", "Language", Kind.CODE),
        Column("title", "Title", Kind.CODE),
        Column("alt_phone", "Alternate Phone", Kind.PHONE, 10),
        Column("email", "Email", Kind.EMAIL, 100),
    ),
)

DATASETS: dict[str, DataSet] = {d.name: d for d in (STUDENTS, ATTENDANCE, STAFF)}
ORDER = ("students", "staff", "attendance")
"""Extraction order: students first, so staff and attendance can be checked
against the student IDs."""

PERIOD_SHAPES = ("day", "event", "columns")
"""How attendance carries the periods missed (``[datasets.attendance] periods``):

- ``day``: one record per student and absent day; ``periods`` holds the periods
  missed (a count or a list such as ``1,3,4``; empty for a full day);
- ``event``: one record per absence event (one period, or one full day);
  ``period`` holds that period, and a day with three missed periods has three rows;
- ``columns``: one record per student and day with several fields,
  ``period_1`` ... ``period_N``, each holding that period's absence code or empty.
"""


def attendance(shape: str = "day", period_columns: int = 8) -> DataSet:
    """The attendance data set with its periods in the given shape."""
    base = ATTENDANCE.columns[:3]
    if shape == "day":
        return ATTENDANCE
    if shape == "event":
        period = Column("period", "Period", Kind.CODE)
        return replace(
            ATTENDANCE,
            columns=(*base, period),
            key=("student_id", "absence_date", "period"),
        )
    if shape == "columns":
        periods = tuple(
            Column(f"period_{n}", f"Period {n}", Kind.CODE)
            for n in range(1, period_columns + 1)
        )
        return replace(ATTENDANCE, columns=(*base, *periods))
    raise ValueError(f"unknown periods shape {shape!r}; known: {PERIOD_SHAPES}")


def build(
    name: str,
    extra: Iterable[Column] = (),
    *,
    periods: str = "day",
    period_columns: int = 8,
) -> DataSet:
    """The data set ``name`` as a job uses it: its shape and the config's columns.

    Added columns come after the declared ones, in the config's order. A name
    that repeats a declared column, or an extension column whose ``source`` is
    not a phone column, is a ``ValueError``.
    """
    dataset = (
        attendance(periods, period_columns)
        if name == "attendance"
        else (DATASETS[name])
    )
    extra = tuple(extra)
    if not extra:
        return dataset
    names = set(dataset.column_names)
    for column in extra:
        if column.name in names:
            raise ValueError(f"column {column.name!r} is already in data set {name}")
        names.add(column.name)
        if column.kind is Kind.EXTENSION:
            phones = {
                c.name for c in (*dataset.columns, *extra) if c.kind is Kind.PHONE
            }
            if column.source not in phones:
                raise ValueError(
                    f"extension column {column.name!r} needs source = one of the "
                    f"phone columns ({', '.join(sorted(phones))})"
                )
        elif column.source is not None:
            raise ValueError(f"column {column.name!r}: source is for extension columns")
    return replace(dataset, columns=(*dataset.columns, *extra))


def markdown_table(dataset: DataSet) -> str:
    """The data set's columns as a Markdown table (the README holds these)."""
    lines = [
        "| # | header | query column | kind | max | required |",
        "|---|---|---|---|---|---|",
    ]
    for n, c in enumerate(dataset.columns, start=1):
        source = f"(from {c.source})" if c.source else f"`{c.name}`"
        lines.append(
            f"| {n} | {c.header} | {source} | {c.kind} | {c.max_length} | "
            f"{'yes' if c.is_required else ''} |"
        )
    return "\n".join(lines)
