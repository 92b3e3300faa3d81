"""Turn raw database values into the ASCII text the receiver accepts.

Every rule lives here, one cleaner per column kind. Cleaning works a column at a
time on a batch (``clean_column``), and each cleaner returns the text together with
the names of the rules that changed it. A rule is either a *fix* (the value was
changed and kept: transliterated, phone punctuation stripped, cut to length) or a
*warning* (the value could not be used and was left empty). Rules that reject a
whole row (required field empty, duplicate ID) are the writer's, in ``csvout``.
Values themselves are never logged.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from anyascii import anyascii

from .datasets import Column, Kind

_BREAKS = re.compile(r"[\r\n\t]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACES = re.compile(r" {2,}")
_NOT_NAME = re.compile(r"[^A-Za-z '\-.]")
_EXTENSION = re.compile(
    r"\s*(?:;\s*ext\s*=|ext\.?|extension|x|#)\s*(\d*)\s*$", re.IGNORECASE
)
_NOTE = re.compile(r"\s*\([A-Za-z .]*\)\s*$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_US_DATE = re.compile(r"^(\d{2})/(\d{2})/(\d{4})$")
_EMAIL = re.compile(r"^[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}$")
_PHONE_CHARS = re.compile(r"^[0-9 ()+.\-/]*$")

FIXES = frozenset(
    {
        "transliterated",  # non-ASCII text turned into ASCII
        "spaces",  # line breaks, tabs, control characters or runs of spaces
        "characters_removed",  # a name held characters other than letters ' - .
        "truncated",  # cut to the column's length
        "phone_stripped",  # punctuation, a country code 1 or an extension removed
        "extension_moved",  # a phone's extension went to its extension column
        "time_zone",  # a timestamp was turned into the school's time zone first
    }
)
WARNINGS = frozenset(
    {
        "phone_letters",
        "phone_not_ascii",
        "phone_not_us",
        "phone_invalid",
        "phone_duplicate",  # equal to an earlier phone of the same row
        "email_invalid",
        "email_not_ascii",
        "too_long",
        "date_invalid",
    }
)
NOTED_FIXES = frozenset({"truncated"})
"""Fixes that also get a row note: the value was kept, but not whole."""
QUIET_FIXES = FIXES - NOTED_FIXES
"""Fixes that are only counted: nothing about their row needs a closer look."""
ROW_RULES = frozenset({"id_not_ascii", "id_not_printable"})
"""Rules a cleaner reports that reject the whole row (see csvout.REJECTIONS)."""
NO_RULES: tuple[str, ...] = ()

Cleaned = tuple[str, tuple[str, ...]]
Cleaner = Callable[[Any], Cleaned]


def clean_text(value: Any) -> str:
    """Any value as one line of trimmed ASCII text; NULL becomes ``""``."""
    return _text(value)[0]


def _text(value: Any) -> Cleaned:
    if value is None:
        return "", NO_RULES
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else _plain(value)
    rules: tuple[str, ...] = NO_RULES
    if not text.isascii():
        text = anyascii(text)
        rules = ("transliterated",)
    if not text.isprintable() or "  " in text or text != text.strip():
        tidy = _SPACES.sub(" ", _CONTROL.sub("", _BREAKS.sub(" ", text)).strip())
        if tidy != text.strip() or _CONTROL.search(text):
            rules = (*rules, "spaces")
        text = tidy
    return text, rules


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal):
        return (
            format(value.normalize(), "f")
            if value == value.to_integral()
            else str(value)
        )
    if isinstance(value, dt.date):
        return format_date(value)
    return str(value)


def format_date(value: dt.date) -> str:
    """mm/dd/yyyy. A naive timestamp gives its own calendar date."""
    if isinstance(value, dt.datetime):
        value = value.date()
    return f"{value.month:02d}/{value.day:02d}/{value.year:04d}"


def split_phone(value: Any) -> tuple[str, str, str | None]:
    """``(digits, extension, problem)``: exactly 10 digits or ``""``.

    A leading country code 1, punctuation, a trailing note such as ``(cell)`` and an
    extension (``ext. 12``, ``x12``, ``#4``, ``;ext=7``) are removed. Letters,
    digits outside ASCII, other countries and impossible numbers are never guessed
    at: the digits are ``""`` and ``problem`` names the rule.
    """
    if value is None:
        return "", "", None
    if isinstance(value, float | Decimal) and value == int(value):
        value = int(value)  # a phone stored as a number: 2175550140.0
    raw = str(value).strip()
    if raw == "":
        return "", "", None
    if not raw.isascii():
        return "", "", "phone_not_ascii"
    raw = _NOTE.sub("", raw)
    extension = ""
    match = _EXTENSION.search(raw)
    if match:
        extension = match.group(1)
        raw = raw[: match.start()]
    if re.search(r"[A-Za-z]", raw):
        return "", "", "phone_letters"
    if not _PHONE_CHARS.match(raw):
        return "", "", "phone_invalid"
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return "", "", "phone_invalid"
    if number.country_code != 1:
        return "", "", "phone_not_us"
    national = f"{number.national_number:010d}"
    if len(national) != 10 or not phonenumbers.is_valid_number(number):
        return "", "", "phone_invalid"
    return national, extension, None


def clean_phone(value: Any) -> tuple[str, str | None]:
    """Exactly 10 digits, or ``""`` and the rule that rejected the value."""
    digits, _, problem = split_phone(value)
    return digits, problem


def _id(column: Column) -> Cleaner:
    def clean(value: Any) -> Cleaned:
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if not isinstance(value, str):
            return _text(value)
        # An ID must never change: "Sé1" must not become another student's
        # "Se1", nor "S1<tab>", "S<control>1" or " S1" become "S1". Only the
        # spaces a CHAR column pads with, at the end, are trimmed (the drivers
        # do not say whether a column is CHAR). Any other change rejects the
        # row, which is named by its own ID, escaped ("S\xe91"), not by one it
        # might share.
        trimmed = value.rstrip(" ")
        if (
            trimmed.isascii()
            and trimmed.isprintable()
            and "  " not in trimmed
            and not trimmed.startswith(" ")
        ):
            return trimmed, NO_RULES
        rule = "id_not_printable" if trimmed.isascii() else "id_not_ascii"
        # Spaces too are written out (\x20): a one-line error message folds
        # " S1" and "S1  1" into IDs that look valid.
        shown = trimmed.encode("unicode_escape").decode("ascii")
        return shown.replace(" ", "\\x20"), (rule,)

    return clean


def _name(column: Column) -> Cleaner:
    limit = column.max_length

    def clean(value: Any) -> Cleaned:
        dropped = False
        if isinstance(value, str) and not value.isascii():
            # Symbols and emoji have no place in a name: drop them rather than
            # let transliteration spell them out (":grinning:").
            letters = "".join(
                ch for ch in value if unicodedata.category(ch)[0] in "LMNPZ"
            )
            dropped, value = letters != value, letters
        text, rules = _text(value)
        kept = _NOT_NAME.sub("", text)
        if kept != text or dropped:
            kept = _SPACES.sub(" ", kept).strip()
            rules = (*rules, "characters_removed")
        if len(kept) > limit:
            kept = kept[:limit].rstrip()
            rules = (*rules, "truncated")
        return kept, rules

    return clean


def _phone(column: Column) -> Cleaner:
    def clean(value: Any) -> Cleaned:
        digits, _, problem = split_phone(value)
        if problem:
            return "", (problem,)
        if digits and digits != str(value) and not isinstance(value, int | float):
            return digits, ("phone_stripped",)
        return digits, NO_RULES

    return clean


def _extension(column: Column) -> Cleaner:
    limit = column.max_length

    def clean(value: Any) -> Cleaned:
        digits, extension, _ = split_phone(value)
        if not digits or not extension:
            return "", NO_RULES
        if len(extension) > limit:
            return "", ("too_long",)
        return extension, ("extension_moved",)

    return clean


def _date(column: Column, zone: ZoneInfo | None) -> Cleaner:
    def clean(value: Any) -> Cleaned:
        if value is None or value == "":
            return "", NO_RULES
        if isinstance(value, str):
            text = value.strip()
            match = _ISO_DATE.match(text)
            us = _US_DATE.match(text)
            if match or us:
                if us:
                    month, day, year = (int(g) for g in us.groups())
                else:
                    assert match is not None
                    year, month, day = (int(g) for g in match.groups())
                try:
                    return format_date(dt.date(year, month, day)), NO_RULES
                except ValueError:
                    return "", ("date_invalid",)
            try:
                value = dt.datetime.fromisoformat(text)
            except ValueError:
                return "", ("date_invalid",)
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            if zone is None:
                raise TimeZoneNeeded(column.name)
            return format_date(value.astimezone(zone)), ("time_zone",)
        if isinstance(value, dt.date):
            return format_date(value), NO_RULES
        return "", ("date_invalid",)

    return clean


def _email(column: Column) -> Cleaner:
    limit = column.max_length

    def clean(value: Any) -> Cleaned:
        text, rules = _text(value)
        if not text:
            return "", NO_RULES
        if "transliterated" in rules:
            # josé@exämple.com is not jose@example.com: another mailbox.
            return "", ("email_not_ascii",)
        if len(text) > limit:
            return "", ("too_long",)
        if not _EMAIL.match(text):
            return "", ("email_invalid",)
        return text, rules

    return clean


def _code(column: Column) -> Cleaner:
    limit = column.max_length

    def clean(value: Any) -> Cleaned:
        text, rules = _text(value)
        if len(text) > limit:
            return "", ("too_long",)
        return text, rules

    return clean


def _plain_text(column: Column) -> Cleaner:
    limit = column.max_length

    def clean(value: Any) -> Cleaned:
        text, rules = _text(value)
        if len(text) > limit:
            return text[:limit].rstrip(), (*rules, "truncated")
        return text, rules

    return clean


class TimeZoneNeeded(Exception):
    """A timestamp with a time zone arrived and no school time zone is set."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


def cleaner(column: Column, zone: ZoneInfo | None = None) -> Cleaner:
    """The cleaning function for ``column``'s kind."""
    if column.kind is Kind.DATE:
        return _date(column, zone)
    makers: dict[Kind, Callable[[Column], Cleaner]] = {
        Kind.ID: _id,
        Kind.NAME: _name,
        Kind.PHONE: _phone,
        Kind.EXTENSION: _extension,
        Kind.EMAIL: _email,
        Kind.CODE: _code,
        Kind.TEXT: _plain_text,
    }
    return makers[column.kind](column)


def clean_column(
    values: Sequence[Any], column: Column, zone: ZoneInfo | None = None
) -> tuple[list[str], list[tuple[int, str]]]:
    """Clean one column of a batch: the texts, and ``(index, rule)`` for each change.

    Each distinct text is cleaned once (the same accented surname or odd phone
    often comes back many times in a batch). Only texts are remembered: numbers
    that compare equal can print apart (``0.0`` and ``-0.0``).
    """
    clean = cleaner(column, zone)
    done: dict[str, Cleaned] = {}
    texts: list[str] = []
    notes: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        text = type(value) is str
        result = done.get(value) if text else None
        if result is None:
            result = clean(value)
            if text:
                done[value] = result
        texts.append(result[0])
        for rule in result[1]:
            notes.append((i, rule))
    return texts, notes


_SSN = re.compile(
    r"(?<![0-9])(?!000|666|9)[0-9]{3}([- ])(?!00)[0-9]{2}\1(?!0000)[0-9]{4}(?![0-9])"
)
_SSN_BARE = re.compile(r"^(?!000|666|9)[0-9]{3}(?!00)[0-9]{2}(?!0000)[0-9]{4}$")
SSN_BARE_KINDS = frozenset({Kind.NAME, Kind.CODE, Kind.TEXT, Kind.EMAIL})


def looks_like_ssn(text: str, kind: Kind) -> bool:
    """A value shaped like a US social security number.

    ``ddd-dd-dddd`` or ``ddd dd dddd`` anywhere in any column; nine bare digits
    only as a whole value outside ID and phone columns (IDs are often 9 digits).
    """
    if _SSN.search(text):
        return True
    return kind in SSN_BARE_KINDS and len(text) == 9 and bool(_SSN_BARE.match(text))
