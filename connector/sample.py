"""Build the sample SIS database that ``connector demo`` extracts.

The district is invented: every person is a random pairing of first and last names
from the lists below, every phone number sits in the fictional 555-0100..555-0199
block, and every mail domain is a reserved ``example`` domain. The data is messy on
purpose, the way real SIS data is (accents and other scripts, stray spaces, quotes,
tabs, a dozen phone styles, blanks and NULLs), so the demo exercises the same cleaning
a real extract needs.

Identifiers: students are ``S100001``, ``S100002``, ...; staff are ``E1001``,
``E1002``, ...; so a staff ID can never equal a student ID. The tables and what the demo
templates assume about them are described in ``connector/demo_queries/README.md``.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import tempfile
import unicodedata
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger(__name__)

DEMO_START = date(2026, 3, 2)
"""First day of the default demo date range (a Monday)."""

DEMO_END = date(2026, 3, 27)
"""Last day of the default demo date range: 20 school days after ``DEMO_START``."""

# Attendance is recorded from one week before the demo range, so that the date filter
# in the attendance template has rows to leave out.
_ATTENDANCE_START = date(2026, 2, 23)
_WITHDRAWAL_DATE = date(2026, 2, 13)

_SCHEMA = """
CREATE TABLE sample_info (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE schools (
    school_id INTEGER PRIMARY KEY,
    school_code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    low_grade INTEGER NOT NULL,
    high_grade INTEGER NOT NULL,
    main_phone TEXT
);
CREATE TABLE students (
    id INTEGER PRIMARY KEY,
    student_number TEXT NOT NULL UNIQUE,
    first_name TEXT,
    middle_name TEXT,
    last_name TEXT,
    birth_date TEXT,
    gender TEXT,
    grade_level INTEGER NOT NULL,
    school_id INTEGER NOT NULL REFERENCES schools (school_id),
    home_language TEXT,
    email TEXT,
    enroll_status TEXT NOT NULL,
    entry_date TEXT NOT NULL,
    exit_date TEXT
);
CREATE TABLE contacts (
    contact_id INTEGER PRIMARY KEY,
    first_name TEXT,
    last_name TEXT,
    phone TEXT,
    work_phone TEXT,
    email TEXT
);
CREATE TABLE student_contacts (
    student_id INTEGER NOT NULL REFERENCES students (id),
    contact_id INTEGER NOT NULL REFERENCES contacts (contact_id),
    relationship TEXT NOT NULL,
    priority INTEGER NOT NULL,
    PRIMARY KEY (student_id, contact_id),
    UNIQUE (student_id, priority)
);
CREATE TABLE staff (
    id INTEGER PRIMARY KEY,
    employee_number TEXT NOT NULL UNIQUE,
    first_name TEXT,
    last_name TEXT,
    title TEXT,
    school_id INTEGER REFERENCES schools (school_id),
    work_phone TEXT,
    cell_phone TEXT,
    email TEXT,
    language TEXT,
    is_active INTEGER NOT NULL
);
CREATE TABLE attendance_codes (
    code TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    is_absence INTEGER NOT NULL
);
CREATE TABLE attendance (
    attendance_id INTEGER PRIMARY KEY,
    student_id INTEGER NOT NULL REFERENCES students (id),
    school_id INTEGER NOT NULL REFERENCES schools (school_id),
    attendance_date TEXT NOT NULL,
    code TEXT NOT NULL REFERENCES attendance_codes (code),
    periods_missed INTEGER,
    UNIQUE (student_id, attendance_date)
);
CREATE INDEX attendance_by_date ON attendance (attendance_date);
"""


class _School(NamedTuple):
    school_id: int
    code: str
    name: str
    low_grade: int  # 0 is KG
    high_grade: int
    main_phone: str


_SCHOOLS = (
    _School(1, "101", "Maple Grove Elementary", 0, 5, "(217) 555-0100"),
    _School(2, "102", "Prairie Creek Elementary", 0, 5, "(217) 555-0110"),
    _School(3, "201", "Ridgeview Middle School", 6, 8, "(217) 555-0120"),
    _School(4, "301", "Lakeside High School", 9, 12, "(217) 555-0130"),
)

_ATTENDANCE_CODES = (
    ("A", "Unexcused absence", 1),
    ("E", "Excused absence", 1),
    ("I", "Illness", 1),
    ("T", "Tardy", 0),
)


@dataclass(frozen=True)
class _Origin:
    """A pool of names that tend to go together, and the family's likely language."""

    weight: int
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    languages: tuple[str | None, ...]


_ORIGINS = (
    _Origin(
        48,
        (
            "Emma", "Liam", "Olivia", "Noah", "Ava", "Mason", "Sophia", "Ethan",
            "Harper", "Logan", "Amelia", "Jackson", "Grace", "Henry", "Chloe",
            "Mary-Kate", "Caleb", "Abigail", "Wyatt", "Lily", "Owen", "Hannah",
        ),
        (
            "Smith", "Johnson", "Williams", "Brown", "Miller", "Davis", "Wilson",
            "Anderson", "Taylor", "Moore", "Carter", "Mitchell", "O’Brien",
            "O'Neil", "St. John", "McAllister", "Baker", "Hughes", "Foster",
        ),
        (None, None, None, None, None, ""),
    ),
    _Origin(
        22,
        (
            "José", "María", "Juan", "Sofía", "Mateo", "Valentina", "Andrés",
            "Camila", "Martín", "Lucía", "Ximena", "Diego", "Ana", "Jesús",
        ),
        (
            "García", "Martínez", "Rodríguez", "López", "Hernández", "González",
            "Pérez", "Sánchez", "Ramírez", "Núñez", "Peña", "de la Cruz",
        ),
        ("es", "es", "es", None, None, ""),
    ),
    _Origin(
        8,
        ("Minh", "Thảo", "Huy", "Linh", "Phương", "Tuấn", "Anh", "Quỳnh", "Bảo"),
        ("Nguyễn", "Trần", "Lê", "Phạm", "Đặng", "Hoàng", "Võ", "Bùi"),
        ("vi", "vi", None, ""),
    ),
    _Origin(
        5,
        ("Wei", "Jing", "Hao", "Xin", "Yu", "Mei", "Jun"),
        ("Wang", "Zhang", "Chen", "Liu", "Li", "Zhao"),
        ("zh", None, None),
    ),
    _Origin(
        2,
        ("明", "伟", "芳", "静", "磊", "婷"),
        ("李", "王", "张", "陈", "刘"),
        ("zh", "zh", None),
    ),
    _Origin(
        4,
        ("Min-jun", "Seo-yeon", "Ji-ho", "Ha-eun", "Do-yoon", "Su-ah"),
        ("Kim", "Park", "Lee", "Choi", "Jung"),
        (None, None, ""),
    ),
    _Origin(
        1,
        ("민준", "서연", "지호", "하은"),
        ("김", "박", "이", "최"),
        (None,),
    ),
    _Origin(
        10,
        (
            "Zoë", "Łucja", "Jakub", "Zofia", "Lukas", "Jürgen", "Chloé", "Anaïs",
            "Søren", "Björn", "Małgorzata", "Renée", "François", "Siobhán",
        ),
        (
            "Müller", "Weißmann", "Wiśniewski", "Kowalski", "Schröder", "Dubois",
            "Lefèvre", "Østergaard", "Nowak", "Ó Súilleabháin", "Łukasik",
        ),
        (None, None, None, ""),
    ),
)  # fmt: skip

# Names every build contains at least once (when it has enough people), so the demo
# always shows the awkward cases: other scripts, both apostrophes, stray whitespace,
# an embedded double quote, a tab and a newline.
_PLANTED_STUDENT_NAMES = (
    ("José", "Müller"),
    ("Zoë", "O’Brien"),
    ("Minh", "Nguyễn"),
    ("Thảo", "Đặng"),
    ("Łucja", "Wiśniewski"),
    ("Mary-Kate", "O'Neil"),
    ("Lukas", "Weißmann"),
    ("Grace", "St. John"),
    ("明", "李"),
    ("민준", "김"),
    ("  Ana", "López "),
    ('Robert "Bobby"', "Smith"),
    ("Anna\tMaria", "Keller"),
    ("Li\nWei", "Chen"),
)
_PLANTED_STAFF_NAMES = (
    ("Siobhán", "O’Brien"),
    (" Thomas", "St. John  "),
    ("Jürgen", "Weißmann"),
    ('Katherine "Kate"', "Nowak"),
)

# Phone styles as typed into real SIS screens; ``{a}`` is an area code, ``{x}`` the
# last four digits (always 01xx), ``{e}`` an extension. The weights favour clean forms.
_PHONE_STYLES: tuple[tuple[str | None, int], ...] = (
    ("{a}-555-{x}", 40),
    ("({a}) 555-{x}", 15),
    ("{a}555{x}", 12),
    ("{a}.555.{x} x{e}", 3),
    ("+1 {a} 555 {x}", 4),
    ("1-{a}-555-{x}", 4),
    (" {a}-555-{x} ", 3),
    ("{a}-555-{x} (cell)", 3),
    ("555-{x}", 2),
    ("N/A", 2),
    ("000-000-0000", 1),
    ("", 3),
    (None, 4),
)
_AREA_CODES = ("217", "217", "217", "309", "618", "312")

_STAFF_TITLES = (
    ("Teacher", 62),
    ("Paraprofessional", 10),
    ("Custodian", 5),
    ("Food Service", 4),
    ("Counselor", 3),
    ("Librarian", 2),
    ("Nurse", 2),
    ("Secretary", 4),
    ("Bus Driver", 5),
)
_DISTRICT_TITLES = frozenset({"Superintendent", "Bus Driver"})


@dataclass(frozen=True)
class SampleSummary:
    """What a sample SIS holds, as the demo templates will see it.

    ``students``, ``staff`` and ``attendance`` are the row counts the three demo
    templates return for ``start_date``..``end_date`` with no school filter.
    """

    seed: int
    students: int
    staff: int
    attendance: int
    start_date: date
    end_date: date

    def expected_rows(self) -> dict[str, int]:
        """Return the expected row count per data set name."""
        return {
            "students": self.students,
            "attendance": self.attendance,
            "staff": self.staff,
        }


@dataclass
class _Student:
    number: str
    first_name: str
    last_name: str
    gender: str | None
    grade: int
    school_id: int
    language: str | None
    email: str | None
    birth_date: date
    contact_ids: list[int] = field(default_factory=list)
    is_active: bool = True


def build_sample_sis(
    path: Path, *, students: int = 3000, seed: int = 2026
) -> SampleSummary:
    """Write an invented district's SIS to the SQLite file ``path``.

    The same ``seed`` and ``students`` always give the same content. ``students`` is
    the number of enrolled students; a few withdrawn ones are added, which the
    templates must leave out. An existing file at ``path`` is replaced only once the
    new one is complete.
    """
    if students < 1:
        raise ValueError(f"students must be at least 1, not {students}")

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)

    try:
        with closing(sqlite3.connect(tmp)) as conn:
            summary = _fill(conn, random.Random(seed), students, seed)
            conn.commit()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    logger.info(
        "sample SIS written to %s: %d students, %d staff, %d absences",
        path,
        summary.students,
        summary.staff,
        summary.attendance,
    )
    return summary


def _fill(
    conn: sqlite3.Connection, rng: random.Random, students: int, seed: int
) -> SampleSummary:
    conn.executescript(_SCHEMA)
    conn.executemany(
        "INSERT INTO sample_info VALUES (?, ?)",
        [("seed", str(seed)), ("students", str(students))],
    )
    conn.executemany("INSERT INTO schools VALUES (?, ?, ?, ?, ?, ?)", _SCHOOLS)
    conn.executemany("INSERT INTO attendance_codes VALUES (?, ?, ?)", _ATTENDANCE_CODES)

    enrolled = _insert_families(conn, rng, students)
    staff = _insert_staff(conn, rng, max(8, students // 15))
    absences = _insert_attendance(conn, rng, enrolled)

    return SampleSummary(
        seed=seed,
        students=students,
        staff=staff,
        attendance=absences,
        start_date=DEMO_START,
        end_date=DEMO_END,
    )


def _insert_families(
    conn: sqlite3.Connection, rng: random.Random, students: int
) -> list[tuple[int, _Student]]:
    """Insert students with their guardians; return the enrolled ones by row id."""
    withdrawn = max(1, students // 100)
    roster: list[_Student] = []
    phones = _PhoneMaker(rng)
    contact_id = 0

    while len(roster) < students + withdrawn:
        origin = rng.choices(_ORIGINS, weights=[o.weight for o in _ORIGINS])[0]
        family_name = rng.choice(origin.last_names)
        language = rng.choice(origin.languages)

        guardian_ids: list[int] = []
        for _ in range(rng.choices((0, 1, 2, 3), weights=(1, 62, 33, 4))[0]):
            contact_id += 1
            guardian_ids.append(contact_id)
            _insert_guardian(conn, rng, phones, contact_id, origin, family_name)

        size = rng.choices((1, 2, 3, 4), weights=(55, 30, 12, 3))[0]
        for _ in range(min(size, students + withdrawn - len(roster))):
            student = _new_student(rng, len(roster), origin, family_name, language)
            student.contact_ids = guardian_ids
            roster.append(student)

    for student in rng.sample(roster, withdrawn):
        student.is_active = False
    active = [s for s in roster if s.is_active]
    for student, (first, last) in zip(
        rng.sample(active, min(len(active), len(_PLANTED_STUDENT_NAMES))),
        _PLANTED_STUDENT_NAMES,
        strict=False,
    ):
        student.first_name, student.last_name = first, last

    enrolled = []
    for row_id, student in enumerate(roster, start=1):
        _insert_student(conn, row_id, student)
        if student.is_active:
            enrolled.append((row_id, student))
    return enrolled


def _new_student(
    rng: random.Random,
    index: int,
    origin: _Origin,
    family_name: str,
    language: str | None,
) -> _Student:
    number = f"S{100001 + index}"
    grade = rng.randint(0, 12)
    school_ids = [s.school_id for s in _SCHOOLS if s.low_grade <= grade <= s.high_grade]
    email = rng.choices(
        (f"{number.lower()}@students.example.org", None, ""), weights=(92, 6, 2)
    )[0]
    return _Student(
        number=number,
        first_name=_smudge(rng, rng.choice(origin.first_names)),
        last_name=_smudge(rng, family_name),
        gender=rng.choices(("F", "M", "X", "", None), weights=(48, 48, 1, 2, 1))[0],
        grade=grade,
        school_id=rng.choice(school_ids),
        language=language,
        email=email,
        birth_date=date(2020 - grade, 9, 1) + timedelta(days=rng.randrange(365)),
    )


def _insert_student(conn: sqlite3.Connection, row_id: int, student: _Student) -> None:
    conn.execute(
        "INSERT INTO students VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row_id,
            student.number,
            student.first_name,
            student.last_name,
            student.birth_date.isoformat(),
            student.gender,
            student.grade,
            student.school_id,
            student.language,
            student.email,
            "A" if student.is_active else "W",
            "2025-08-20",
            None if student.is_active else _WITHDRAWAL_DATE.isoformat(),
        ),
    )
    relationships = ("Mother", "Father", "Guardian", "Grandparent")
    conn.executemany(
        "INSERT INTO student_contacts VALUES (?, ?, ?, ?)",
        [
            (row_id, contact_id, relationships[(contact_id + i) % 4], i + 1)
            for i, contact_id in enumerate(student.contact_ids)
        ],
    )


def _insert_guardian(
    conn: sqlite3.Connection,
    rng: random.Random,
    phones: _PhoneMaker,
    contact_id: int,
    origin: _Origin,
    family_name: str,
) -> None:
    first = rng.choice(origin.first_names)
    last = family_name if rng.random() < 0.85 else rng.choice(origin.last_names)
    local = _ascii_mailbox(first, last) or f"family{contact_id}"
    email = rng.choices(
        (f"{local}{rng.randint(1, 99)}@example.com", None, ""), weights=(75, 20, 5)
    )[0]
    phone = phones.make()
    work_phone = phones.make() if rng.random() < 0.3 else None
    conn.execute(
        "INSERT INTO contacts VALUES (?, ?, ?, ?, ?, ?)",
        (contact_id, _smudge(rng, first), _smudge(rng, last), phone, work_phone, email),
    )


def _insert_staff(conn: sqlite3.Connection, rng: random.Random, active: int) -> int:
    """Insert ``active`` current staff plus a few who left; return ``active``."""
    phones = _PhoneMaker(rng)
    titles = ["Superintendent"]
    for building in _SCHOOLS:
        titles += ["Principal", "Secretary"]
        if building.high_grade >= 6:
            titles.append("Assistant Principal")
    names, weights = zip(*_STAFF_TITLES, strict=True)
    while len(titles) < active + max(1, active // 40):
        titles.append(rng.choices(names, weights=weights)[0])

    people = [_staff_name(rng) for _ in titles]
    for index, name in zip(
        rng.sample(range(len(people)), min(len(people), len(_PLANTED_STAFF_NAMES))),
        _PLANTED_STAFF_NAMES,
        strict=False,
    ):
        people[index] = name
    leavers = set(rng.sample(range(len(titles)), len(titles) - active))

    for index, (title, (first, last)) in enumerate(zip(titles, people, strict=True)):
        number = f"E{1001 + index}"
        school: _School | None = None
        if title not in _DISTRICT_TITLES:
            school = rng.choice(_SCHOOLS)
        if school is not None and rng.random() < 0.6:
            work_phone: str | None = f"{school.main_phone} x{rng.randint(10, 99)}"
        else:
            work_phone = phones.make()
        local = _ascii_mailbox(first, last) or number.lower()
        conn.execute(
            "INSERT INTO staff VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                index + 1,
                number,
                first,
                last,
                title,
                None if school is None else school.school_id,
                work_phone,
                phones.make() if rng.random() < 0.5 else None,
                rng.choices((f"{local}@k12.example.org", None), weights=(96, 4))[0],
                rng.choices((None, "", "es", "vi"), weights=(85, 5, 8, 2))[0],
                0 if index in leavers else 1,
            ),
        )
    return active


def _staff_name(rng: random.Random) -> tuple[str, str]:
    origin = rng.choices(_ORIGINS, weights=[o.weight for o in _ORIGINS])[0]
    first = _smudge(rng, rng.choice(origin.first_names))
    return first, _smudge(rng, rng.choice(origin.last_names))


def _insert_attendance(
    conn: sqlite3.Connection,
    rng: random.Random,
    enrolled: list[tuple[int, _Student]],
) -> int:
    """Insert absences and tardies; return the absences within the demo range."""
    days = [
        _ATTENDANCE_START + timedelta(days=n)
        for n in range((DEMO_END - _ATTENDANCE_START).days + 1)
    ]
    school_days = [d for d in days if d.weekday() < 5]
    rows = []
    absences = 0

    for row_id, student in enrolled:
        # Most students miss a day or two a month; a few are chronically absent.
        rate = rng.choices((0.02, 0.06, 0.2), weights=(80, 16, 4))[0]
        for day in school_days:
            roll = rng.random()
            if roll < rate:
                code = rng.choices(("A", "E", "I"), weights=(30, 40, 30))[0]
                periods = rng.randint(1, 5) if rng.random() < 0.15 else None
                absences += DEMO_START <= day <= DEMO_END
            elif roll < rate + 0.01:
                code, periods = "T", None
            else:
                continue
            rows.append(
                (row_id, student.school_id, day.isoformat(), code, periods),
            )

    conn.executemany(
        "INSERT INTO attendance (student_id, school_id, attendance_date, code,"
        " periods_missed) VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    return absences


class _PhoneMaker:
    """Phone numbers in the fictional 555-01xx block, in every style of the list.

    The first numbers made walk through every style once, so even a small build shows
    each of them; after that, styles are drawn by weight.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._made = 0

    def make(self) -> str | None:
        if self._made < len(_PHONE_STYLES):
            style = _PHONE_STYLES[self._made][0]
        else:
            styles, weights = zip(*_PHONE_STYLES, strict=True)
            style = self._rng.choices(styles, weights=weights)[0]
        self._made += 1

        if style is None:
            return None
        return style.format(
            a=self._rng.choice(_AREA_CODES),
            x=f"01{self._rng.randint(0, 99):02d}",
            e=self._rng.randint(10, 99),
        )


def _smudge(rng: random.Random, name: str) -> str:
    """Return ``name``, now and then with stray spaces or in capitals, as typed."""
    roll = rng.random()
    if roll < 0.004:
        return f" {name}"
    if roll < 0.008:
        return f"{name} "
    if roll < 0.015:
        return name.upper()
    return name


def _ascii_mailbox(first: str, last: str) -> str:
    """Return ``first.last`` folded to ASCII letters, or "" if nothing is left."""
    parts = []
    for name in (first, last):
        folded = unicodedata.normalize("NFKD", name)
        parts.append("".join(c for c in folded if c.isascii() and c.isalnum()))
    return ".".join(p for p in parts if p).lower()
