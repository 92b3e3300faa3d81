"""Expectations for the integration tests of the SIS query packs (queries/<sis>/).

For each SIS and data set, ``counts`` holds an independent COUNT query, written
against the base tables with the same business rules as the template (see
queries/<sis>/README.md) but without reusing its SQL. The number of rows the
template returns, rendered with ``params``, must equal that count.

The count queries are plain SQL with the parameter values written in as
literals (they are not templates); keep them in step with ``params``.
They were checked against the databases built by ``/work/shared/sis/load_all.sh``
(``expected_rows`` records what they returned then; the count query is the
reference, ``expected_rows`` is informational).

``accented_student`` is a student whose first and last names are non-ASCII in
the database, with their student_id as the template outputs it and the names
expected after ``anyascii`` transliteration and the name clean-up (letters,
space, apostrophe, hyphen and period kept).

"Current" rules use min(CURRENT_DATE, end of school year); both school years
here are over, so the counts do not depend on the day the tests run (as long as
the clock is after 2026-05-29).
"""

from __future__ import annotations

import datetime
from typing import Any

ROSARIOSIS_CONNECTION = (
    "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;UID=postgres;PWD=;"
    "DATABASE=sis_rosariosis"
)
OPENSIS_CONNECTION = (
    "DRIVER={MariaDB Unicode};SOCKET=/run/mysqld/mysqld.sock;UID=root;PWD=;"
    "CHARSET=utf8mb4;DATABASE=sis_opensis"
)

# --------------------------------------------------------------------------
# RosarioSIS (PostgreSQL), school year 2024
# --------------------------------------------------------------------------
_ROSARIO_CURRENT = """
    EXISTS (
        SELECT 1
        FROM student_enrollment e
        WHERE e.student_id = {student}
          AND e.syear = 2024
          AND (e.end_date IS NULL
               OR e.end_date >= LEAST(CURRENT_DATE,
                                      (SELECT MAX(m.end_date)
                                       FROM school_marking_periods m
                                       WHERE m.mp = 'FY'
                                         AND m.school_id = e.school_id
                                         AND m.syear = e.syear)))
    )"""

ROSARIOSIS_COUNTS = {
    # distinct students with a 2024 enrollment not ended before the year's end
    "students": "SELECT COUNT(*) FROM students s WHERE"
    + _ROSARIO_CURRENT.format(student="s.student_id"),
    # distinct (student, day) pairs with at least one period coded state 'A'
    "attendance": """
        SELECT COUNT(DISTINCT CAST(ap.student_id AS text) || '/'
                              || CAST(ap.school_date AS text))
        FROM attendance_period ap, attendance_codes ac
        WHERE ac.id = ap.attendance_code
          AND ac.syear = 2024
          AND ac.state_code = 'A'
          AND ap.school_date >= DATE '2024-08-19'
          AND ap.school_date <= DATE '2024-10-04'
          AND"""
    + _ROSARIO_CURRENT.format(student="ap.student_id"),
    # distinct people (trimmed, case-folded names) among 2024 non-parent users
    "staff": """
        SELECT COUNT(DISTINCT lower(btrim(first_name)) || '|'
                              || lower(btrim(last_name)))
        FROM staff
        WHERE syear = 2024
          AND profile IS DISTINCT FROM 'parent'""",
}

# --------------------------------------------------------------------------
# openSIS (MariaDB), school year 2025
# --------------------------------------------------------------------------
_OPENSIS_CURRENT = """
    {student} IN (
        SELECT e.student_id
        FROM student_enrollment e
        LEFT JOIN school_years y ON y.syear = e.syear AND y.school_id = e.school_id
        WHERE e.syear = 2025
          AND (e.end_date IS NULL
               OR e.end_date >= LEAST(CURDATE(), IFNULL(y.end_date, CURDATE())))
    )"""

OPENSIS_COUNTS = {
    "students": "SELECT COUNT(*) FROM students s WHERE"
    + _OPENSIS_CURRENT.format(student="s.student_id"),
    "attendance": """
        SELECT COUNT(DISTINCT ap.student_id, ap.school_date)
        FROM attendance_period ap
        INNER JOIN attendance_codes ac
                ON ac.id = ap.attendance_code
               AND ac.syear = 2025
               AND ac.state_code = 'A'
        WHERE ap.school_date >= '2025-08-04'
          AND ap.school_date <= '2025-10-03'
          AND"""
    + _OPENSIS_CURRENT.format(student="ap.student_id"),
    # distinct people (trimmed, case-folded names) among enabled, non-parent staff
    # with a 2025 school relationship that is open (NULL or zero end date) or
    # runs to the end of the year
    "staff": """
        SELECT COUNT(DISTINCT LOWER(TRIM(s.first_name)), LOWER(TRIM(s.last_name)))
        FROM staff s
        WHERE IFNULL(s.is_disable, '') <> 'Y'
          AND IFNULL(s.profile, '') <> 'parent'
          AND EXISTS (
              SELECT 1
              FROM staff_school_relationship r
              LEFT JOIN school_years y
                     ON y.syear = r.syear AND y.school_id = r.school_id
              WHERE r.staff_id = s.staff_id
                AND r.syear = 2025
                AND (r.end_date IS NULL
                     OR r.end_date < '1000-01-01'
                     OR r.end_date >= LEAST(CURDATE(), IFNULL(y.end_date, CURDATE())))
          )""",
}

SIS: dict[str, dict[str, Any]] = {
    "rosariosis": {
        "connection": ROSARIOSIS_CONNECTION,
        "params": {
            "school_year": 2024,
            "start_date": datetime.date(2024, 8, 19),
            "end_date": datetime.date(2024, 10, 4),
        },
        "counts": ROSARIOSIS_COUNTS,
        "expected_rows": {"students": 153, "attendance": 453, "staff": 33},
        "accented_student": {
            "student_id": "33",
            "first_name": "Siobhan",  # Siobhán
            "last_name": "Dang",  # Đặng
        },
    },
    "opensis": {
        "connection": OPENSIS_CONNECTION,
        "params": {
            "school_year": 2025,
            "start_date": datetime.date(2025, 8, 4),
            "end_date": datetime.date(2025, 10, 3),
        },
        "counts": OPENSIS_COUNTS,
        "expected_rows": {"students": 128, "attendance": 491, "staff": 25},
        "accented_student": {
            "student_id": "88",
            "first_name": "Ines",  # Inés
            "last_name": "Dvorak",  # Dvořák
        },
    },
}

# Parameters per data set: students and staff need only school_year.
DATASET_PARAMS = {
    "students": ("school_year",),
    "staff": ("school_year",),
    "attendance": ("school_year", "start_date", "end_date"),
}


def params_for(sis: str, dataset: str) -> dict[str, Any]:
    """The template parameters the tests pass for one (sis, data set)."""
    p = SIS[sis]["params"]
    return {k: p[k] for k in DATASET_PARAMS[dataset]}
