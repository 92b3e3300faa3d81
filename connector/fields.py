"""Turn raw database values into the ASCII text the receiver accepts.

Cleaning works a column at a time on a batch (``clean_column``), so a columnar engine
can take over a whole step later. Each fix or rejection is counted under a short rule
name in a ``Counter`` that ends up in the run report; values themselves are never
logged.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

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
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T].*)?$")
_EMAIL = re.compile(r"^[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}$")

Issues = Counter[str]
Cleaner = Callable[[Any, Column, Issues], str]


def clean_text(value: Any) -> str:
    """Any value as one line of trimmed ASCII text; NULL becomes ``""``."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else _plain(value)
    text = _BREAKS.sub(" ", text)
    text = _CONTROL.sub("", text)
    if not text.isascii():
        text = anyascii(text)
        text = _CONTROL.sub("", text)
    return _SPACES.sub(" ", text.strip())


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
    if isinstance(value, dt.datetime | dt.date):
        return format_date(value)
    return str(value)


def format_date(value: dt.date) -> str:
    """mm/dd/yyyy; a timestamp gives its own calendar date."""
    if isinstance(value, dt.datetime):
        value = value.date()
    return f"{value.month:02d}/{value.day:02d}/{value.year:04d}"


def clean_phone(value: Any) -> tuple[str, str | None]:
    """Exactly 10 digits, or ``""`` and the rule that rejected the value.

    A leading country code 1 and an extension are removed; letters, digits outside
    ASCII, other countries and impossible numbers are never guessed at.
    """
    if value is None:
        return "", None
    raw = str(value).strip()
    if raw == "":
        return "", None
    if not raw.isascii():
        return "", "phone_not_ascii"
    raw = _NOTE.sub("", raw)
    raw = _EXTENSION.sub("", raw)
    if re.search(r"[A-Za-z]", raw):
        return "", "phone_letters"
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return "", "phone_invalid"
    national = str(number.national_number)
    if number.country_code != 1:
        return "", "phone_not_nanp"
    if len(national) != 10 or not phonenumbers.is_valid_number(number):
        return "", "phone_invalid"
    return national, None


def _clean_id(value: Any, column: Column, issues: Issues) -> str:
    text = clean_text(value)
    if len(text) > column.max_length:
        issues[f"{column.name}:too_long"] += 1
    return text


def _clean_name(value: Any, column: Column, issues: Issues) -> str:
    text = clean_text(value)
    kept = _SPACES.sub(" ", _NOT_NAME.sub("", text)).strip()
    if kept != text:
        issues[f"{column.name}:characters_removed"] += 1
    if len(kept) > column.max_length:
        issues[f"{column.name}:truncated"] += 1
        kept = kept[: column.max_length].rstrip()
    return kept


def _clean_phone(value: Any, column: Column, issues: Issues) -> str:
    digits, problem = clean_phone(value)
    if problem:
        issues[f"{column.name}:{problem}"] += 1
    return digits


def _clean_date(value: Any, column: Column, issues: Issues) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, dt.date):
        return format_date(value)
    match = _ISO_DATE.match(str(value).strip())
    if match:
        try:
            return format_date(dt.date(*(int(g) for g in match.groups())))
        except ValueError:
            pass
    issues[f"{column.name}:date_invalid"] += 1
    return ""


def _clean_email(value: Any, column: Column, issues: Issues) -> str:
    text = clean_text(value)
    if not text:
        return ""
    if not _EMAIL.match(text) or len(text) > column.max_length:
        issues[f"{column.name}:email_invalid"] += 1
        return ""
    return text


def _clean_plain(value: Any, column: Column, issues: Issues) -> str:
    text = clean_text(value)
    if len(text) > column.max_length:
        issues[f"{column.name}:truncated"] += 1
        text = text[: column.max_length].rstrip()
    return text


_CLEANERS: dict[Kind, Cleaner] = {
    Kind.ID: _clean_id,
    Kind.NAME: _clean_name,
    Kind.PHONE: _clean_phone,
    Kind.DATE: _clean_date,
    Kind.EMAIL: _clean_email,
    Kind.CODE: _clean_plain,
    Kind.TEXT: _clean_plain,
    Kind.NUMBER: _clean_plain,
}


def clean_column(values: Sequence[Any], column: Column, issues: Issues) -> list[str]:
    """Clean one column of a batch by the rules of its kind."""
    cleaner = _CLEANERS[column.kind]
    return [cleaner(v, column, issues) for v in values]
