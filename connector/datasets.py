"""The data sets the notification service accepts, each declared once.

The CSV writer, ``connector test`` and the docs read these declarations. A template's
query must return exactly the columns named by ``Column.name`` (in any order, any
case); the export writes them in the declared order under ``Column.header``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """How a column's values are cleaned and checked."""

    ID = "id"
    NAME = "name"
    PHONE = "phone"
    DATE = "date"
    CODE = "code"
    EMAIL = "email"
    TEXT = "text"
    NUMBER = "number"


@dataclass(frozen=True)
class Column:
    name: str
    header: str
    kind: Kind
    max_length: int = 255
    is_required: bool = False


@dataclass(frozen=True)
class DataSet:
    name: str
    columns: tuple[Column, ...]
    description: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(c.header for c in self.columns)

    @property
    def id_column(self) -> Column:
        return self.columns[0]


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
        Column("periods", "Periods Missed", Kind.TEXT),
    ),
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
