"""Every field rule, table-driven: input, exact output, and the rule it counts."""

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.datasets import Column, Kind
from connector.fields import (
    FIXES,
    WARNINGS,
    clean_column,
    clean_phone,
    clean_text,
    looks_like_ssn,
    split_phone,
)

CHICAGO = ZoneInfo("America/Chicago")


def clean(kind: Kind, value: Any, limit: int = 255, **kw: Any) -> tuple[str, list[str]]:
    texts, notes = clean_column([value], Column("c", "C", kind, limit), **kw)
    return texts[0], [rule for _, rule in notes]


@pytest.mark.parametrize(
    ("raw", "digits", "rules"),
    [
        ("+1 (217) 555-0140", "2175550140", ["phone_stripped"]),
        ("1-217-555-0140", "2175550140", ["phone_stripped"]),
        ("(217) 555-0140 ext. 3", "2175550140", ["phone_stripped"]),
        ("217.555.0123 x12", "2175550123", ["phone_stripped"]),
        ("217-555-0140 x", "2175550140", ["phone_stripped"]),
        ("217-555-0140 #4", "2175550140", ["phone_stripped"]),
        ("217 555 0140;ext=7", "2175550140", ["phone_stripped"]),
        (" 217-555-0123 ", "2175550123", ["phone_stripped"]),
        ("217-555-0123 (cell)", "2175550123", ["phone_stripped"]),
        ("2175550123", "2175550123", []),
        (2175550123, "2175550123", []),
        (2175550123.0, "2175550123", []),
        ("217-555-DOGS", "", ["phone_letters"]),
        ("555-0140", "", ["phone_invalid"]),
        (
            "\uff12\uff11\uff17\uff15\uff15\uff15\uff10\uff11\uff14\uff10",
            "",
            ["phone_not_ascii"],
        ),
        ("000-000-0000", "", ["phone_invalid"]),
        ("N/A", "", ["phone_letters"]),
        ("+44 20 7946 0958", "", ["phone_not_us"]),
        ("217-555-0140/0141", "", ["phone_invalid"]),
        ("217_555_0140", "", ["phone_invalid"]),
        ("", "", []),
        (None, "", []),
    ],
)
def test_phone(raw: object, digits: str, rules: list[str]) -> None:
    assert clean(Kind.PHONE, raw, 10) == (digits, rules)
    assert clean_phone(raw)[0] == digits


@pytest.mark.parametrize(
    ("raw", "extension"),
    [
        ("(217) 555-0140 ext. 3", "3"),
        ("217.555.0123 x12", "12"),
        ("217-555-0140 #4", "4"),
        ("217 555 0140;ext=7", "7"),
        ("217-555-0140 x", ""),
        ("2175550140", ""),
        ("555-0140 x12", ""),  # no usable number: no extension either
    ],
)
def test_phone_extension_goes_to_its_column(raw: str, extension: str) -> None:
    value, rules = clean(Kind.EXTENSION, raw, 6)
    assert value == extension
    assert rules == (["extension_moved"] if extension else [])
    assert split_phone(raw)[1] == (extension if split_phone(raw)[0] else "")


def test_extension_longer_than_its_column_is_dropped_with_a_warning() -> None:
    assert clean(Kind.EXTENSION, "217-555-0140 x1234567", 6) == ("", ["too_long"])


@pytest.mark.parametrize(
    ("raw", "text", "rules"),
    [
        (None, "", []),
        ("", "", []),
        (0, "0", []),
        ('Al "Bud" Ray', 'Al "Bud" Ray', []),
        ("4 Oak Rd\r\nUnit 2\tB", "4 Oak Rd Unit 2 B", ["spaces"]),
        ("  padded  ", "padded", []),
        ("a\x00b\x7fc", "abc", ["spaces"]),
        ("two  spaces", "two spaces", ["spaces"]),
        ("Zoë", "Zoe", ["transliterated"]),
        (Decimal("12.0"), "12", []),
        (Decimal("1.50"), "1.50", []),
        (3.0, "3", []),
        (True, "1", []),
        (dt.date(2024, 9, 3), "09/03/2024", []),
        (b"bytes", "bytes", []),
    ],
)
def test_text(raw: object, text: str, rules: list[str]) -> None:
    assert clean(Kind.TEXT, raw) == (text, rules)
    assert clean_text(raw) == text


@pytest.mark.parametrize(
    ("raw", "name", "rules"),
    [
        ("Nguyễn", "Nguyen", ["transliterated"]),
        ("Zoë", "Zoe", ["transliterated"]),
        ("Łucja", "Lucja", ["transliterated"]),
        ("O\u2019Brien", "O'Brien", ["transliterated"]),
        ("St. John", "St. John", []),
        ("Mary-Kate", "Mary-Kate", []),
        ("Đặng", "Dang", ["transliterated"]),
        ("李明", "LiMing", ["transliterated"]),
        ("Weißmüller", "Weissmuller", ["transliterated"]),
        ('Al "Bud"', "Al Bud", ["characters_removed"]),
        ("Ann 2nd", "Ann nd", ["characters_removed"]),
        ("Zoë 😀", "Zoe", ["transliterated", "characters_removed"]),
        ("😀", "", ["characters_removed"]),
    ],
)
def test_name(raw: str, name: str, rules: list[str]) -> None:
    assert clean(Kind.NAME, raw) == (name, rules)


def test_name_longer_than_its_limit_is_cut_with_a_warning() -> None:
    value, rules = clean(Kind.NAME, "Weißmüller-Ærø", 15)
    # Transliteration lengthens it (ß -> ss, Æ -> Ae): 16 characters, cut to 15.
    assert value == "Weissmuller-Aer"
    assert len(value) <= 15 and value.isascii()
    assert rules == ["transliterated", "truncated"]


@pytest.mark.parametrize(
    ("kind", "raw", "limit", "value", "rules"),
    [
        (Kind.TEXT, "abcdef", 4, "abcd", ["truncated"]),
        (Kind.CODE, "ABCDEF", 4, "", ["too_long"]),
        (Kind.EMAIL, "x" * 95 + "@b.org", 100, "", ["too_long"]),
        (Kind.ID, "S" * 300, 255, "S" * 300, []),  # the writer rejects the row
    ],
)
def test_too_long_policy_per_kind(
    kind: Kind, raw: str, limit: int, value: str, rules: list[str]
) -> None:
    assert clean(kind, raw, limit) == (value, rules)


@pytest.mark.parametrize(
    ("raw", "value", "rules"),
    [
        ("a@b.org", "a@b.org", []),
        (" a@b.org ", "a@b.org", []),
        ("nope", "", ["email_invalid"]),
        ("a@b", "", ["email_invalid"]),
        ("a b@c.org", "", ["email_invalid"]),
        ("josé@exämple.com", "", ["email_not_ascii"]),
        (None, "", []),
    ],
)
def test_email(raw: object, value: str, rules: list[str]) -> None:
    assert clean(Kind.EMAIL, raw, 100) == (value, rules)


@pytest.mark.parametrize(
    ("raw", "text", "rules"),
    [
        (dt.date(2025, 8, 4), "08/04/2025", []),
        ("2025-08-04", "08/04/2025", []),
        ("08/04/2025", "08/04/2025", []),
        ("13/04/2025", "", ["date_invalid"]),
        (dt.datetime(2025, 8, 4, 23, 59), "08/04/2025", []),
        ("2025-08-04 23:59:00", "08/04/2025", []),
        # 04:30 UTC on the 5th is still the 4th in Chicago.
        (dt.datetime(2025, 8, 5, 4, 30, tzinfo=dt.UTC), "08/04/2025", ["time_zone"]),
        ("2025-08-05T04:30:00+00:00", "08/04/2025", ["time_zone"]),
        ("2025-02-30", "", ["date_invalid"]),
        ("not a date", "", ["date_invalid"]),
        (20250804, "", ["date_invalid"]),
        (None, "", []),
    ],
)
def test_date(raw: object, text: str, rules: list[str]) -> None:
    assert clean(Kind.DATE, raw, 10, zone=CHICAGO) == (text, rules)


def test_every_rule_is_a_fix_or_a_warning() -> None:
    assert not FIXES & WARNINGS


@pytest.mark.parametrize(
    ("text", "kind", "hit"),
    [
        ("123-45-6789", Kind.TEXT, True),
        ("ssn 123 45 6789 on file", Kind.TEXT, True),
        ("123-45-6789", Kind.ID, True),
        ("123456789", Kind.TEXT, True),
        ("123456789", Kind.ID, False),  # 9-digit student IDs are common
        ("000-12-3456", Kind.TEXT, False),
        ("123-00-4567", Kind.TEXT, False),
        ("912-34-5678", Kind.TEXT, False),
        ("123-45-67890", Kind.TEXT, False),
        ("123-45 6789", Kind.TEXT, False),
        ("2175550140", Kind.TEXT, False),
    ],
)
def test_social_security_numbers_are_spotted(text: str, kind: Kind, hit: bool) -> None:
    assert looks_like_ssn(text, kind) is hit
