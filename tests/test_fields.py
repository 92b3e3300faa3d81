import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest

from connector.datasets import Column, Kind
from connector.fields import clean_column, clean_phone, clean_text


@pytest.mark.parametrize(
    ("raw", "digits", "problem"),
    [
        ("+1 (217) 555-0140", "2175550140", None),
        ("1-217-555-0140", "2175550140", None),
        ("(217) 555-0140 ext. 3", "2175550140", None),
        ("217.555.0123 x12", "2175550123", None),
        ("217-555-0140 x", "2175550140", None),
        ("217-555-0140 #4", "2175550140", None),
        ("217 555 0140;ext=7", "2175550140", None),
        (" 217-555-0123 ", "2175550123", None),
        ("217-555-0123 (cell)", "2175550123", None),
        ("2175550123", "2175550123", None),
        ("217-555-DOGS", "", "phone_letters"),
        ("555-0140", "", "phone_invalid"),
        (
            "\uff12\uff11\uff17\uff15\uff15\uff15\uff10\uff11\uff14\uff10",
            "",
            "phone_not_ascii",
        ),
        ("000-000-0000", "", "phone_invalid"),
        ("N/A", "", "phone_letters"),
        ("+44 20 7946 0958", "", "phone_not_nanp"),
        ("", "", None),
        (None, "", None),
    ],
)
def test_clean_phone(raw: object, digits: str, problem: str | None) -> None:
    assert clean_phone(raw) == (digits, problem)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (None, ""),
        ("", ""),
        (0, "0"),
        ('Al "Bud" Ray', 'Al "Bud" Ray'),
        ("4 Oak Rd\r\nUnit 2\tB", "4 Oak Rd Unit 2 B"),
        ("  Zoë\x00 ", "Zoe"),
        (Decimal("12.0"), "12"),
        (3.0, "3"),
        (dt.date(2024, 9, 3), "09/03/2024"),
    ],
)
def test_clean_text(raw: object, text: str) -> None:
    assert clean_text(raw) == text


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Nguyễn", "Nguyen"),
        ("Zoë", "Zoe"),
        ("Łucja", "Lucja"),
        ("O\u2019Brien", "O'Brien"),
        ("St. John", "St. John"),
        ("Mary-Kate", "Mary-Kate"),
        ("Đặng", "Dang"),
        ("李明", "LiMing"),
        ("Weißmüller", "Weissmuller"),
        ('Al "Bud"', "Al Bud"),
    ],
)
def test_clean_name_transliterates(raw: str, name: str) -> None:
    issues: Counter[str] = Counter()
    column = Column("last_name", "Last Name", Kind.NAME, 255)
    assert clean_column([raw], column, issues) == [name]
    assert "".join(clean_column([raw], column, issues)).isascii()


def test_clean_name_truncates_with_a_count() -> None:
    issues: Counter[str] = Counter()
    column = Column("last_name", "Last Name", Kind.NAME, 15)
    [value] = clean_column(["Weißmüller-Ærø-Lindqvist"], column, issues)
    assert len(value) <= 15 and value.isascii()
    assert issues["last_name:truncated"] == 1


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (dt.date(2025, 8, 4), "08/04/2025"),
        (dt.datetime(2025, 8, 4, 23, 59), "08/04/2025"),
        ("2025-08-04", "08/04/2025"),
        (None, ""),
    ],
)
def test_clean_date(raw: object, text: str) -> None:
    column = Column("absence_date", "Absence Date", Kind.DATE, 10)
    assert clean_column([raw], column, Counter()) == [text]


def test_clean_date_invalid_is_counted() -> None:
    issues: Counter[str] = Counter()
    column = Column("absence_date", "Absence Date", Kind.DATE, 10)
    assert clean_column(["not a date"], column, issues) == [""]
    assert issues == {"absence_date:date_invalid": 1}


def test_clean_email_rejects_invalid_and_long() -> None:
    issues: Counter[str] = Counter()
    column = Column("email", "Email", Kind.EMAIL, 100)
    values = ["a@b.org", "nope", "x" * 95 + "@b.org", None]
    assert clean_column(values, column, issues) == ["a@b.org", "", "", ""]
    assert issues["email:email_invalid"] == 2
