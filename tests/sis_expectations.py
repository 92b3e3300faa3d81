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
GIBBON_CONNECTION = (
    "DRIVER={MariaDB Unicode};SOCKET=/run/mysqld/mysqld.sock;UID=root;PWD=;"
    "CHARSET=utf8mb4;DATABASE=sis_gibbon"
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

# --------------------------------------------------------------------------
# Gibbon (MariaDB), school year 2025-2026 (gibbonSchoolYearID 025)
# --------------------------------------------------------------------------
# Current student: enrolled in the year that starts in 2025, status Full, not
# ended before the year's last day.
_GIBBON_CURRENT = """
    {student} IN (
        SELECT e.gibbonPersonID
        FROM gibbonStudentEnrolment e
        INNER JOIN gibbonSchoolYear y ON y.gibbonSchoolYearID = e.gibbonSchoolYearID
        INNER JOIN gibbonPerson sp ON sp.gibbonPersonID = e.gibbonPersonID
        WHERE y.firstDay >= '2025-01-01' AND y.firstDay < '2026-01-01'
          AND sp.status = 'Full'
          AND IFNULL(sp.dateEnd, '9999-12-31') >= LEAST(CURDATE(), y.lastDay)
    )"""

# The day-level (non-Class) log entry of a day that no later entry replaces.
_GIBBON_LAST_OF_DAY = """
    NOT EXISTS (
        SELECT 1
        FROM gibbonAttendanceLogPerson later
        WHERE later.gibbonPersonID = l.gibbonPersonID
          AND later.date = l.date
          AND IFNULL(later.context, '') <> 'Class'
          AND (later.timestampTaken > l.timestampTaken
               OR (later.timestampTaken = l.timestampTaken
                   AND later.gibbonAttendanceLogPersonID
                       > l.gibbonAttendanceLogPersonID))
    )"""

GIBBON_COUNTS = {
    "students": "SELECT COUNT(*) FROM gibbonPerson s WHERE"
    + _GIBBON_CURRENT.format(student="s.gibbonPersonID"),
    # (student, day) pairs whose last day-level entry is an absent code
    # (direction Out, scope Offsite or Offsite - Left), codes matched by name
    "attendance": """
        SELECT COUNT(DISTINCT l.gibbonPersonID, l.date)
        FROM gibbonAttendanceLogPerson l
        INNER JOIN gibbonAttendanceCode c ON c.name = l.type
        WHERE l.date >= '2025-09-01'
          AND l.date <= '2025-10-10'
          AND IFNULL(l.context, '') <> 'Class'
          AND c.direction = 'Out'
          AND c.scope IN ('Offsite', 'Offsite - Left')
          AND l.date NOT IN (SELECT d.date FROM gibbonSchoolYearSpecialDay d
                             WHERE d.type = 'School Closure')
          AND"""
    + _GIBBON_LAST_OF_DAY
    + "\n          AND"
    + _GIBBON_CURRENT.format(student="l.gibbonPersonID"),
    # staff rows whose person exists, is Full and has not left before the
    # end of the 2025 year
    "staff": """
        SELECT COUNT(*)
        FROM gibbonStaff t
        INNER JOIN gibbonPerson p ON p.gibbonPersonID = t.gibbonPersonID
        WHERE p.status = 'Full'
          AND IFNULL(p.dateEnd, '9999-12-31') >= (
              SELECT LEAST(CURDATE(), MIN(y.lastDay)) FROM gibbonSchoolYear y
              WHERE y.firstDay >= '2025-01-01' AND y.firstDay < '2026-01-01')""",
}

# Phones of current students as the rules of queries/gibbon/README.md pick them,
# built without window functions: every non-blank phone slot of each contact
# adult (an adult linked twice counts at his best link), as raw text with
# "+<country code> " in front when the code has digits and the number has no "+",
# joined in order (contactPriority, family, family-adult row, slot).
_GIBBON_SEP = "'@@'"  # never part of a phone
_GIBBON_SLOT_VALUE = """
    IF(REGEXP_REPLACE(a.phone{n}CountryCode, '[^0-9]', '') = ''
         OR TRIM(a.phone{n}) LIKE '+%',
       a.phone{n},
       CONCAT('+', REGEXP_REPLACE(a.phone{n}CountryCode, '[^0-9]', ''), ' ',
              TRIM(a.phone{n})))"""
_GIBBON_SLOTS = " UNION ALL ".join(
    f"""
        SELECT fc.gibbonPersonID AS student, fa.contactPriority AS prio,
               fa.gibbonFamilyID AS fam, fa.gibbonFamilyAdultID AS link,
               {n} AS slot, {_GIBBON_SLOT_VALUE.format(n=n)} AS val
        FROM gibbonFamilyChild fc
        INNER JOIN gibbonFamilyAdult fa ON fa.gibbonFamilyID = fc.gibbonFamilyID
        INNER JOIN gibbonPerson a ON a.gibbonPersonID = fa.gibbonPersonID
        WHERE TRIM(a.phone{n}) <> ''
          AND NOT EXISTS (
              SELECT 1
              FROM gibbonFamilyChild fc2
              INNER JOIN gibbonFamilyAdult fa2
                      ON fa2.gibbonFamilyID = fc2.gibbonFamilyID
              WHERE fc2.gibbonPersonID = fc.gibbonPersonID
                AND fa2.gibbonPersonID = fa.gibbonPersonID
                AND (fa2.contactPriority, fa2.gibbonFamilyID,
                     fa2.gibbonFamilyAdultID)
                    < (fa.contactPriority, fa.gibbonFamilyID,
                       fa.gibbonFamilyAdultID))"""
    for n in (1, 2, 3, 4)
)
_GIBBON_PHONES = f"""
    SELECT lst.student,
           SUBSTRING_INDEX(lst.vals, {_GIBBON_SEP}, 1) AS phone,
           IF(lst.n > 1,
              SUBSTRING_INDEX(SUBSTRING_INDEX(lst.vals, {_GIBBON_SEP}, 2),
                              {_GIBBON_SEP}, -1),
              NULL) AS alt_phone
    FROM (SELECT slots.student, COUNT(*) AS n,
                 GROUP_CONCAT(slots.val
                              ORDER BY slots.prio, slots.fam, slots.link, slots.slot
                              SEPARATOR {_GIBBON_SEP}) AS vals
          FROM ({_GIBBON_SLOTS}) slots
          GROUP BY slots.student) lst
    WHERE {_GIBBON_CURRENT.format(student="lst.student")}"""

# 10 NANP digits of a raw phone by the connector's rules, else NULL: a trailing
# "(note)" and an extension are dropped; letters, or a "+" code other than 1,
# give NULL; the code 1 of "+1" and a leading 1 of 11 digits are dropped; what
# is left must be NXX-NXX-XXXX. (Plain expressions: MariaDB has no LATERAL.)
_GIBBON_TEXT = (
    "REGEXP_REPLACE(REGEXP_REPLACE(TRIM({col}),"
    " '[[:space:]]*[(][A-Za-z .]*[)][[:space:]]*$', ''),"
    " '(?i)[[:space:]]*(;[[:space:]]*ext[[:space:]]*=|ext[.]?|extension|x|#)"
    "[[:space:]]*[0-9]*[[:space:]]*$', '')"
)


def _gibbon_nanp(col: str) -> str:
    text = _GIBBON_TEXT.format(col=col)
    digits = f"REGEXP_REPLACE({text}, '[^0-9]', '')"
    after_code = f"IF({text} LIKE '+%', SUBSTRING({digits}, 2), {digits})"
    national = (
        f"IF(LENGTH({after_code}) = 11 AND {after_code} LIKE '1%',"
        f" SUBSTRING({after_code}, 2), {after_code})"
    )
    return f"""(CASE
            WHEN {text} REGEXP '[A-Za-z]' THEN NULL
            WHEN {text} LIKE '+%' AND {digits} NOT LIKE '1%' THEN NULL
            WHEN {national} REGEXP '^[2-9][0-9]{{2}}[2-9][0-9]{{6}}$'
                THEN {national}
        END)"""


GIBBON_REPORT = {
    "students_phone_malformed": f"""
        SELECT COUNT(*) FROM ({_GIBBON_PHONES}) ph
        WHERE TRIM(ph.phone) <> ''
          AND {_gibbon_nanp("ph.phone")} IS NULL""",
    "students_alt_phone_malformed": f"""
        SELECT COUNT(*) FROM ({_GIBBON_PHONES}) ph
        WHERE TRIM(ph.alt_phone) <> ''
          AND {_gibbon_nanp("ph.alt_phone")} IS NULL""",
    "students_alt_equals_phone": f"""
        SELECT COUNT(*) FROM ({_GIBBON_PHONES}) ph
        WHERE {_gibbon_nanp("ph.phone")}
              = {_gibbon_nanp("ph.alt_phone")}""",
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
    "gibbon": {
        "connection": GIBBON_CONNECTION,
        "params": {
            "school_year": 2025,
            "start_date": datetime.date(2025, 9, 1),
            "end_date": datetime.date(2025, 10, 10),
        },
        "counts": GIBBON_COUNTS,
        "expected_rows": {"students": 475, "attendance": 999, "staff": 74},
        "accented_student": {
            "student_id": "2826",  # gibbonPersonID 0000002826 (ZEROFILL)
            "first_name": "Siobhan",  # Siobhán
            "last_name": "Dvorak",  # Dvořák
        },
        # one number each, over the students the template returns: raw phone
        # (alt_phone) not blank but not 10 valid NANP digits, and both valid
        # and equal (the mother recorded twice)
        "report": GIBBON_REPORT,
        "expected_report": {
            "students_phone_malformed": 3,
            "students_alt_phone_malformed": 15,
            "students_alt_equals_phone": 1,
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


# --------------------------------------------------------------------------
# RosarioSIS on its MySQL port (MariaDB), school year 2024: the same seed as
# the PostgreSQL database, so the same rules give the same counts.
# --------------------------------------------------------------------------
ROSARIOSIS_MYSQL_CONNECTION = (
    "DRIVER={MariaDB Unicode};SOCKET=/run/mysqld/mysqld.sock;UID=root;PWD=;"
    "CHARSET=utf8mb4;DATABASE=sis_rosariosis_mysql"
)
_ROSARIO_MYSQL_CURRENT = """
    {student} IN (
        SELECT e.student_id
        FROM student_enrollment e
        WHERE e.syear = 2024
          AND (e.end_date IS NULL
               OR e.end_date >= LEAST(CURDATE(),
                                      (SELECT MAX(m.end_date)
                                       FROM school_marking_periods m
                                       WHERE m.mp = 'FY'
                                         AND m.school_id = e.school_id
                                         AND m.syear = e.syear)))
    )"""

ROSARIOSIS_MYSQL_COUNTS = {
    "students": "SELECT COUNT(*) FROM students s WHERE"
    + _ROSARIO_MYSQL_CURRENT.format(student="s.student_id"),
    "attendance": """
        SELECT COUNT(DISTINCT ap.student_id, ap.school_date)
        FROM attendance_period ap
        INNER JOIN attendance_codes ac
                ON ac.id = ap.attendance_code
               AND ac.syear = 2024
               AND ac.state_code = 'A'
        WHERE ap.school_date >= '2024-08-19'
          AND ap.school_date <= '2024-10-04'
          AND"""
    + _ROSARIO_MYSQL_CURRENT.format(student="ap.student_id"),
    "staff": """
        SELECT COUNT(DISTINCT LOWER(TRIM(first_name)), LOWER(TRIM(last_name)))
        FROM staff
        WHERE syear = 2024
          AND IFNULL(profile, '') <> 'parent'""",
}

# --------------------------------------------------------------------------
# OpenEMIS Core (MariaDB), academic period 2025/2026
# --------------------------------------------------------------------------
OPENEMIS_CONNECTION = (
    "DRIVER={MariaDB Unicode};SOCKET=/run/mysqld/mysqld.sock;UID=root;PWD=;"
    "CHARSET=utf8mb4;DATABASE=sis_openemis"
)
# Current: an enrolment row of the period starting in 2025 with status CURRENT.
_OPENEMIS_CURRENT = """
    {student} IN (
        SELECT ist.student_id
        FROM institution_students ist
        INNER JOIN academic_periods ap ON ap.id = ist.academic_period_id
        INNER JOIN student_statuses ss ON ss.id = ist.student_status_id
        WHERE ap.start_year = 2025
          AND ap.academic_period_level_id > 0
          AND ss.code = 'CURRENT'
    )"""

OPENEMIS_COUNTS = {
    "students": "SELECT COUNT(*) FROM security_users su WHERE"
    + _OPENEMIS_CURRENT.format(student="su.id"),
    # each full-day absence range expanded with MariaDB's sequence engine to its
    # Monday-to-Friday dates inside the window (the data has no calendar events)
    "attendance": """
        SELECT COUNT(DISTINCT a.student_id, a.start_date + INTERVAL s.seq DAY)
        FROM institution_student_absences a
        INNER JOIN seq_0_to_366 s ON a.start_date + INTERVAL s.seq DAY <= a.end_date
        INNER JOIN absence_types t ON t.id = a.absence_type_id
        WHERE a.full_day = 1
          AND t.code <> 'LATE'
          AND DAYOFWEEK(a.start_date + INTERVAL s.seq DAY) BETWEEN 2 AND 6
          AND a.start_date + INTERVAL s.seq DAY BETWEEN '2025-08-18' AND '2025-10-03'
          AND"""
    + _OPENEMIS_CURRENT.format(student="a.student_id"),
    # people with an assignment still running at the end of the period
    "staff": """
        SELECT COUNT(DISTINCT ins.staff_id)
        FROM institution_staff ins
        INNER JOIN staff_statuses x ON x.id = ins.staff_status_id
        WHERE x.code = 'ASSIGNED'
          AND (ins.end_date IS NULL
               OR ins.end_date >= LEAST(CURDATE(), '2026-06-05'))""",
}

SIS["rosariosis-mysql"] = {
    **SIS["rosariosis"],
    "connection": ROSARIOSIS_MYSQL_CONNECTION,
    "counts": ROSARIOSIS_MYSQL_COUNTS,
}
SIS["openemis"] = {
    "connection": OPENEMIS_CONNECTION,
    "params": {
        "school_year": 2025,
        "start_date": datetime.date(2025, 8, 18),
        "end_date": datetime.date(2025, 10, 3),
    },
    "counts": OPENEMIS_COUNTS,
    "expected_rows": {"students": 152, "attendance": 377, "staff": 27},
    "accented_student": {
        "student_id": "7401128283",  # openemis_no, security_users.id 45
        "first_name": "Noah",
        "last_name": "Lopez",  # López
    },
}


# A few rows of each export, field by field (headers as written), checked by
# hand against the source tables (see each pack's README for the rules).
def _row(dataset: str, *values: str) -> dict[str, str]:
    headers = {
        "students": (
            "Student ID",
            "First Name",
            "Last Name",
            "Phone",
            "School",
            "Language",
            "Alternate Phone",
            "Email",
            "Grade",
            "Gender",
        ),
        "attendance": ("Student ID", "Absence Code", "Absence Date", "Periods Missed"),
        "staff": (
            "Staff ID",
            "Last Name",
            "First Name",
            "Phone",
            "School",
            "Language",
            "Title",
            "Alternate Phone",
            "Email",
        ),
    }[dataset]
    return dict(zip(headers, values, strict=True))


_ROSARIO_ROWS = {
    # household phone of the primary residence first, then the custody
    # contact's cell; the first custody e-mail; Female -> F
    "students": [
        _row(
            "students",
            "2",
            "Hannah",
            "Abdi",
            "6305550148",
            "0427",
            "English",
            "8475550172",
            "abdi_arjun@example.org",
            "06",
            "F",
        )
    ],
    # seven periods coded M (Medical / Illness) by the office
    "attendance": [_row("attendance", "6", "M", "09/16/2024", "7")],
    "staff": [
        _row(
            "staff",
            "T4",
            "Ozturk",
            "Aaliyah",
            "7085550111",
            "1",
            "",
            "Principal",
            "7735550148",
            "aaliyah.ozturk@springfield-sd.example.org",
        )
    ],
}
KNOWN_ROWS: dict[str, dict[str, list[dict[str, str]]]] = {
    "rosariosis": _ROSARIO_ROWS,
    "rosariosis-mysql": _ROSARIO_ROWS,
    "opensis": {
        "students": [
            _row(
                "students",
                "1",
                "Vihaan",
                "Ahuja",
                "3125550143",
                "1",
                "English",
                "8475550129",
                "emma.ahuja@example.org",
                "11",
                "M",
            )
        ],
        "staff": [
            _row(
                "staff",
                "T1",
                "Ghosh",
                "Bob",
                "",
                "1",
                "English",
                "Super Administrator",
                "",
                "bob@os4ed.com",
            )
        ],
    },
    "gibbon": {
        # the form-group register says Absent, reason Other; three lessons
        "attendance": [_row("attendance", "876", "Other", "09/09/2025", "3")],
        "staff": [
            _row(
                "staff",
                "T119",
                "Schultz",
                "Nathan",
                "",
                "Gibbon",
                "",
                "Teaching",
                "",
                "119@gibbon.localhost",
            )
        ],
    },
    "openemis": {
        # the mother (relation order 1): preferred mobile, then home phone;
        # Spanish has the code es; openemis_no keeps its leading zero
        "students": [
            _row(
                "students",
                "0066131560",
                "David",
                "Lee",
                "8155550170",
                "1205",
                "es",
                "7085550131",
                "siobhan.lee@example.com",
                "G08",
                "M",
            )
        ],
        # absence id 24: Thursday 2025-09-04 to Monday 09-08, Illness: the
        # weekend in between is not a school day
        "attendance": [
            _row("attendance", "7401128283", "ILL", d, "")
            for d in ("09/04/2025", "09/05/2025", "09/08/2025")
        ],
        # work phone with an extension: the digits stay, the extension goes
        "staff": [
            _row(
                "staff",
                "0077737931",
                "Washington",
                "Thao",
                "3125550158",
                "1205",
                "en",
                "Teacher",
                "3125550144",
                "thao.washington@springfield-sd.example.org",
            )
        ],
    },
}
# (Student ID, Absence Date) pairs that must not be in the attendance export.
ABSENT_ROWS = {"openemis": [("7401128283", "09/06/2025"), ("7401128283", "09/07/2025")]}
