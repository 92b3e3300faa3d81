"""Apply the field rules to a whole column at once, with Arrow compute functions.

``fields`` holds the rules, one Python function per kind, and stays the contract:
``clean_array`` gives exactly what ``fields.clean_column`` gives for the same values.
It gets there faster by sorting values first: a value that a cheap vectorised test
proves the rules would leave as it is (printable ASCII, single spaces, within the
column's length, a name of letters only...) is kept without a Python call, and
only the others go through the column's cleaner. Dates, which repeat, are
formatted once per distinct day. tests/test_columns.py checks the equality on
random and on hostile values.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from .datasets import Column, Kind
from .fields import NO_RULES, SSN_BARE_KINDS, clean_column, cleaner, looks_like_ssn

Notes = list[tuple[int, str]]

# Printable ASCII words separated by single spaces, nothing at either end: the
# values ``fields._text`` returns unchanged.
_PLAIN = r"^(?:[!-~]+(?: [!-~]+)*)?$"
_PLAIN_NAME = r"^(?:[A-Za-z'\-.]+(?: [A-Za-z'\-.]+)*)?$"
# Both _PLAIN and fields' email pattern: printable ASCII but space, '"' and '@'
# on either side of the one '@'.
_PLAIN_EMAIL = r"^[!#-?A-~]+@[!#-?A-~]+\.[A-Za-z]{2,}$"
# Supersets of fields.looks_like_ssn: only these values get the exact test.
_SSN_DASHED = r"[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}"
_SSN_ANY = _SSN_DASHED + r"|[0-9]{9}"


class RawSsn(Exception):
    """A raw value shaped like a social security number, at ``row`` of the batch."""

    def __init__(self, row: int) -> None:
        super().__init__(row)
        self.row = row


def to_array(values: Sequence[Any] | pa.Array | pa.ChunkedArray) -> pa.Array | None:
    """An Arrow array of the values, or ``None`` when they are not one type."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    return None


def _is_text(array: pa.Array) -> bool:
    return bool(pa.types.is_string(array.type) or pa.types.is_large_string(array.type))


def _plain_mask(array: pa.Array, column: Column) -> pa.Array | None:
    """True where the column's cleaner would return the value unchanged, no rules."""
    kind = column.kind
    if kind in (Kind.ID, Kind.CODE, Kind.TEXT):
        mask = pc.match_substring_regex(array, _PLAIN)
    elif kind is Kind.NAME:
        mask = pc.match_substring_regex(array, _PLAIN_NAME)
    elif kind is Kind.EMAIL:
        email = pc.and_(
            pc.less_equal(pc.utf8_length(array), column.max_length),
            pc.match_substring_regex(array, _PLAIN_EMAIL),
        )
        return pc.fill_null(pc.or_(pc.equal(array, ""), email), True)
    else:
        return None
    if kind is not Kind.ID:
        mask = pc.and_(mask, pc.less_equal(pc.utf8_length(array), column.max_length))
    # NULL becomes "" with no rule, for every kind.
    return pc.fill_null(mask, True)


def clean_array(
    values: Sequence[Any] | pa.Array,
    column: Column,
    zone: ZoneInfo | None = None,
    counts: Counter[str] | None = None,
    *,
    ssn: bool = False,
) -> tuple[pa.Array, Notes]:
    """Clean one column: its texts as an Arrow string array, and ``(index, rule)``.

    With ``counts``, a fix the vectorised tests apply in bulk (a phone's
    punctuation) is counted there instead of noted row by row. With ``ssn``, a
    raw value shaped like a social security number raises ``RawSsn`` first.
    """
    array = to_array(values)
    if array is not None and column.kind is Kind.PHONE and _is_text(array):
        # A phone in a common shape cannot hold one: only the others are tested.
        return _phones(array, column, counts, ssn=ssn)
    if ssn:
        found = first_raw_ssn(values if array is None else array, column.kind)
        if found is not None:
            raise RawSsn(found)
    if array is None:
        texts, notes = clean_column(values, column, zone)
        return pa.array(texts, pa.string()), notes
    if column.kind is Kind.DATE and not _is_text(array):
        return _by_distinct(array, column, zone)
    if not _is_text(array):
        texts, notes = clean_column(array.to_pylist(), column, zone)
        return pa.array(texts, pa.string()), notes
    plain = _plain_mask(array, column)
    if plain is None:
        texts, notes = clean_column(array.to_pylist(), column, zone)
        return pa.array(texts, pa.string()), notes
    filled = pc.fill_null(array, "").cast(pa.string())
    odd = pc.invert(plain)
    if not pc.any(odd).as_py():
        return filled, []
    where = pc.indices_nonzero(odd)
    texts, changes = clean_column(array.take(where).to_pylist(), column, zone)
    indices = where.to_pylist()
    notes = [(indices[i], rule) for i, rule in changes]
    return pc.replace_with_mask(filled, odd, pa.array(texts, pa.string())), notes


# The common ways of writing a US number, whose digits phonenumbers reads as they
# are: nothing for its note, extension or letter rules to act on. None of them
# can hold ddd-dd-dddd, the shape of a social security number.
_SHAPES = (
    r"[2-9][0-9]{9}"
    r"|\([2-9][0-9]{2}\) [0-9]{3}-[0-9]{4}"
    r"|[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}"
    r"|[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}"
    r"|\+1 [2-9][0-9]{2} [0-9]{3} [0-9]{4}"
)
_PHONE_SHAPES = f"^(?:{_SHAPES})$"
# An extension after such a number, as fields.split_phone reads one (its own
# pattern, with digits required): "217-555-0140 ext. 12", "(217) 555-0140 x12".
_EXTENSION = r"(?i:\s*(?:;\s*ext\s*=|ext\.?|extension|x|#)\s*)[0-9]+$"
_PHONE_EXTENDED = f"^(?:{_SHAPES}){_EXTENSION}"
# phonenumbers' general pattern for the US, which every shape above satisfies
# (ten digits, the first 2-9): when the metadata still says this, it is not
# tested again.
_SHAPES_GENERAL = r"^(?:[2-9]\d{9}|3\d{6})$"


@functools.cache
def _us_patterns() -> tuple[str, str] | None:
    """phonenumbers' own patterns for a valid US number: (general, any type).

    ``is_valid_number`` takes the first region of country code 1 whose type
    patterns match; that is the US, so a number matching these is valid, and
    one that does not is left to phonenumbers itself.
    """
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE
    from phonenumbers.phonemetadata import PhoneMetadata

    region = COUNTRY_CODE_TO_REGION_CODE[1][0]
    meta = PhoneMetadata.metadata_for_region(region)
    if region != "US" or meta is None or meta.leading_digits is not None:
        return None
    kinds = (
        *("premium_rate", "toll_free", "shared_cost", "voip", "personal_number"),
        *("pager", "uan", "voicemail", "fixed_line", "mobile"),
    )
    patterns = []
    for name in kinds:
        desc = getattr(meta, name)
        if desc is None or not desc.national_number_pattern:
            continue
        if desc.possible_length and 10 not in desc.possible_length:
            continue
        patterns.append(desc.national_number_pattern)
    general = meta.general_desc
    if general is None or not general.national_number_pattern or not patterns:
        return None
    if general.possible_length and 10 not in general.possible_length:
        return None
    return f"^(?:{general.national_number_pattern})$", f"^(?:{'|'.join(patterns)})$"


def _us_digits(texts: pa.Array, patterns: tuple[str, str]) -> tuple[pa.Array, pa.Array]:
    """Which texts (no NULLs) are in a common shape of a number phonenumbers'
    patterns accept, and their last ten digits."""
    fast = pc.match_substring_regex(texts, _PHONE_SHAPES)
    # The shapes hold digits and these marks only; where a shape matches,
    # removing them leaves the digits (literal replaces beat one regex).
    bare = texts
    for mark in "()-. +":
        bare = pc.replace_substring(bare, mark, "")
    digits = pc.utf8_slice_codeunits(bare, -10)
    general, typed = patterns
    if general != _SHAPES_GENERAL:
        fast = pc.and_(fast, pc.match_substring_regex(digits, general))
    return pc.and_(fast, pc.match_substring_regex(digits, typed)), digits


def _phones(
    array: pa.Array,
    column: Column,
    counts: Counter[str] | None = None,
    *,
    ssn: bool = False,
) -> tuple[pa.Array, Notes]:
    """Phones: the common US shapes checked in bulk, the others by phonenumbers.

    With ``ssn``, the values in no common shape are tested for the shape of a
    social security number first (``RawSsn``).
    """
    filled = pc.fill_null(array, "").cast(pa.string())
    present = pc.not_equal(filled, "")
    if not pc.any(present).as_py():
        return filled, []
    patterns = _us_patterns()
    notes: Notes = []
    stripped = 0
    if patterns is not None:
        fast, digits = _us_digits(filled, patterns)
        if pc.any(fast).as_py():
            changed = pc.and_(fast, pc.not_equal(digits, filled))
            if counts is not None:
                stripped += pc.sum(changed).as_py() or 0
            else:
                where = pc.indices_nonzero(changed).to_pylist()
                notes = [(i, "phone_stripped") for i in where]
            filled = pc.if_else(fast, digits, filled)
            present = pc.and_(present, pc.invert(fast))
    if not pc.any(present).as_py():
        _count(counts, stripped)
        return filled, notes
    where = pc.indices_nonzero(present)
    if ssn:
        found = first_raw_ssn(array.take(where), Kind.PHONE)
        if found is not None:
            raise RawSsn(where[found].as_py())
    if patterns is not None:
        filled, present, extended = _extended(filled, where, present, patterns)
        if extended:
            if counts is not None:
                stripped += len(extended)
            else:
                notes.extend((i, "phone_stripped") for i in extended)
            where = pc.indices_nonzero(present)
    _count(counts, stripped)
    if len(where):
        texts, changes = clean_column(array.take(where).to_pylist(), column)
        indices = where.to_pylist()
        notes.extend((indices[i], rule) for i, rule in changes)
        filled = pc.replace_with_mask(filled, present, pa.array(texts, pa.string()))
    notes.sort(key=lambda note: note[0])
    return filled, notes


def _extended(
    filled: pa.Array, where: pa.Array, present: pa.Array, patterns: tuple[str, str]
) -> tuple[pa.Array, pa.Array, list[int]]:
    """The phones at ``where`` that are a common shape with an extension after
    it, as their ten digits: (texts, rows still to clean, rows done)."""
    rest = filled.take(where)
    extended = pc.match_substring_regex(rest, _PHONE_EXTENDED)
    if not pc.any(extended).as_py():
        return filled, present, []
    numbers = pc.replace_substring_regex(
        rest.filter(extended), _EXTENSION, "", max_replacements=1
    )
    fast, digits = _us_digits(numbers, patterns)
    if not pc.any(fast).as_py():
        return filled, present, []
    rows = where.filter(extended).filter(fast).to_pylist()
    done = _mask_at(len(filled), rows)
    filled = pc.replace_with_mask(filled, done, digits.filter(fast))
    return filled, pc.and_(present, pc.invert(done)), rows


def _mask_at(count: int, rows: Sequence[int]) -> pa.Array:
    """A mask of ``count`` rows, true at ``rows`` only."""
    mask = [False] * count
    for i in rows:
        mask[i] = True
    return pa.array(mask, pa.bool_())


def _count(counts: Counter[str] | None, stripped: int) -> None:
    if counts is not None and stripped:
        counts["phone_stripped"] += stripped


def _by_distinct(
    array: pa.Array, column: Column, zone: ZoneInfo | None
) -> tuple[pa.Array, Notes]:
    """Clean each distinct value once and spread the results (days repeat)."""
    encoded = pc.dictionary_encode(array)
    clean: Callable[[Any], tuple[str, tuple[str, ...]]] = cleaner(column, zone)
    results = [clean(v) for v in encoded.dictionary.to_pylist()]
    texts = pa.array([t for t, _ in results], pa.string())
    out = pc.fill_null(pc.take(texts, encoded.indices), "")
    noted = [i for i, (_, rules) in enumerate(results) if rules]
    notes: Notes = []
    if noted:
        codes = encoded.indices.to_pylist()
        for row, code in enumerate(codes):
            if code is not None and results[code][1]:
                notes.extend((row, rule) for rule in results[code][1])
    return out, notes


def ssn_candidates(array: pa.Array, kind: Kind) -> list[int]:
    """Rows whose value may look like a social security number (a superset)."""
    if not _is_text(array):
        return []
    # Nine digits at least: the length alone clears most values, cheaply.
    long = pc.fill_null(pc.greater_equal(pc.utf8_length(array), 9), False)
    if not pc.any(long).as_py():
        return []
    where = pc.indices_nonzero(long)
    values = array.take(where)
    superset = _SSN_ANY if kind in SSN_BARE_KINDS else _SSN_DASHED
    mask = pc.fill_null(pc.match_substring_regex(values, superset), False)
    if not pc.any(mask).as_py():
        return []
    return list(where.filter(mask).to_pylist())


def first_raw_ssn(values: Sequence[Any] | pa.Array, kind: Kind) -> int | None:
    """The first row whose raw text value looks like a social security number."""
    array = to_array(values)
    if array is None:
        for i, value in enumerate(values):
            if isinstance(value, str) and any(c.isdigit() for c in value):
                if looks_like_ssn(value.strip(), kind):
                    return i
        return None
    for i in ssn_candidates(array, kind):
        value = array[i].as_py()
        if looks_like_ssn(value.strip(), kind):
            return i
    return None


__all__ = [
    "NO_RULES",
    "RawSsn",
    "clean_array",
    "first_raw_ssn",
    "ssn_candidates",
    "to_array",
]
