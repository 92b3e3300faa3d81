"""Clean, validate and write a data set as a strict CSV export.

Every field in double quotes, CR LF after each record and nowhere else, ASCII from
the first byte (no BOM), the columns in the data set's declared order under its
header. A file is written under a temporary name in its target folder and only
renamed into place by ``commit()``, so a failed run leaves yesterday's export as it
was.

The writer also validates each row: a required field empty after cleaning, an ID
that is too long or repeats an earlier row's, a staff ID equal to a student ID, an
attendance row for a student missing from the students export. Such a row is
rejected: the run fails at once, or drops the row and counts it, by the data set's
``RowPolicy``. Every rejection and warning is kept as a ``RowNote`` (data set, row
number, ID, column, rule) for the run report. A value that looks like a social
security number stops the run whatever the policy.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .columns import RawSsn, clean_array, ssn_candidates, to_array
from .datasets import Column, DataSet, Kind
from .errors import ConfigError, ExportError, writing
from .fields import (
    FIXES,
    NOTED_FIXES,
    QUIET_FIXES,
    ROW_RULES,
    TimeZoneNeeded,
    cleaner,
    looks_like_ssn,
)
from .ids import IdIndex, as_index

log = logging.getLogger(__name__)

MAX_NOTES = 1000
"""Row notes kept per data set for the run report; the counts are always whole."""

REJECTIONS = {
    "required_empty": "required but empty after cleaning",
    "id_not_ascii": "the ID holds characters outside ASCII; IDs are never "
    "transliterated, as that could make them equal another one",
    "id_not_printable": "the ID holds a tab, line break or other control "
    "character, two spaces in a row or a space before it; IDs are never changed, "
    "as that could make them equal another one",
    "id_too_long": "the ID is longer than the column allows; IDs are never cut",
    "duplicate_id": "repeats the ID of an earlier row",
    "student_id_clash": "this staff ID equals a student ID",
    "unknown_student": "no student with this ID in the students export",
}


@dataclass(frozen=True)
class RowPolicy:
    """What a row that breaks a rule does to the run (``[datasets.X]`` settings)."""

    on_row_error: Literal["drop", "fail"] = "drop"
    max_rejected: float = 0.05
    unknown_students: Literal["warn", "reject"] = "warn"


@dataclass(frozen=True)
class RowNote:
    """One rejected row or one value left empty, for the run report."""

    row: int
    id: str
    column: str
    rule: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "detail" or v}


@dataclass
class ExportResult:
    """What one data set's export holds; counts and hashes, never values."""

    dataset: str
    path: Path
    fetched: int = 0
    written: int = 0
    rejected: int = 0
    expected: int | None = None
    size: int = 0
    sha256: str = ""
    fixes: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    notes: list[RowNote] = field(default_factory=list)
    notes_left_out: int = 0
    in_place: bool = False
    """The export is at ``path``: false until every export of the run is moved
    into place (a failed or interrupted run leaves none), and after it is gone."""

    @property
    def rows(self) -> int:
        return self.written

    def note(self, note: RowNote) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(note)
        else:
            self.notes_left_out += 1


def column_order(dataset: DataSet, columns: Sequence[str]) -> dict[str, int]:
    """Where each of the data set's columns is in a query's result.

    The query must return exactly the data set's selected columns; anything else
    is an ``ExportError`` listing what is missing and what is not expected (a data
    set never carries a column it does not declare).
    """
    position = {name.lower(): i for i, name in enumerate(columns)}
    wanted = dataset.selected_names
    missing = [c for c in wanted if c not in position]
    extra = [c for c in columns if c.lower() not in wanted]
    if missing or extra or len(position) != len(columns):
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected {', '.join(extra)}")
        if len(position) != len(columns):
            problems.append("a column name appears twice")
        raise ExportError(
            f"data set {dataset.name}: the query's columns do not match "
            f"({'; '.join(problems)}); it must select exactly "
            f"{', '.join(wanted)}"
        )
    return {c: position[c] for c in wanted}


def shape_batch(
    dataset: DataSet,
    order: Mapping[str, int],
    batch: Sequence[Sequence[Any]],
    zone: ZoneInfo | None = None,
    first: int = 1,
) -> tuple[list[tuple[str, ...]], list[tuple[int, str, str]]]:
    """Clean a batch column by column.

    Returns the rows in declared order, and ``(index, column, rule)`` for every
    fix or warning. A phone equal to an earlier phone of the same row is left
    empty with a warning (the same contact twice).
    """
    if not len(batch):
        return [], []
    cleaned, notes, _ = shape_columns(dataset, order, batch_columns(batch), zone, first)
    texts = [c.to_pylist() for c in cleaned]
    return list(zip(*texts, strict=True)), notes


def batch_columns(batch: Sequence[Sequence[Any]]) -> Sequence[Any]:
    """The columns of a batch: Arrow arrays as they are, rows transposed."""
    if isinstance(batch, ColumnBatch):
        columns: Sequence[Any] = batch.columns
        return columns
    return list(zip(*batch, strict=True))


class ColumnBatch(Sequence[tuple[Any, ...]]):
    """A batch held as columns (an Arrow record batch); iterating gives rows.

    Sources that fetch in columns (arrow-odbc) yield these, others yield lists of
    row tuples; the writer takes either through the same cleaning code.
    """

    def __init__(
        self,
        record: pa.RecordBatch | None,
        columns: Sequence[Any] | None = None,
        rows: int | None = None,
    ) -> None:
        self.record = record
        # A source may hand some columns over as Python lists (decimals), or
        # give only ``columns`` and their number of ``rows``.
        if record is not None:
            columns = record.columns if columns is None else columns
            rows = record.num_rows if rows is None else rows
        if columns is None or rows is None:
            raise ValueError("a batch needs a record, or its columns and rows")
        self.columns = columns
        self._rows = rows

    def __len__(self) -> int:
        return int(self._rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            parts = (_values(c)[index] for c in self.columns)
            return list(zip(*parts, strict=True))
        return tuple(_values(c)[index] for c in self.columns)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*(_values(c) for c in self.columns), strict=True)


def _values(column: Any) -> list[Any]:
    return column if isinstance(column, list) else column.to_pylist()


def shape_columns(
    dataset: DataSet,
    order: Mapping[str, int],
    columns: Sequence[Any],
    zone: ZoneInfo | None = None,
    first: int = 1,
    counted: Counter[str] | None = None,
) -> tuple[list[pa.Array], list[tuple[int, str, str]], list[int]]:
    """Clean each of the data set's columns.

    Returns Arrow string arrays, the notes, and the columns whose cleaned values
    still need the social security number test (a text column the rules left
    unchanged passed it already, raw). With ``counted``, the fixes that need no
    closer look at their row (``fields.QUIET_FIXES``) are counted there, as
    ``column:rule``, instead of noted.
    """
    cleaned: list[pa.Array] = []
    notes: list[tuple[int, str, str]] = []
    recheck: list[int] = []
    for column in dataset.columns:
        values = columns[order[column.source or column.name]]
        bulk: Counter[str] = Counter()
        try:
            texts, changes = clean_array(
                values, column, zone, None if counted is None else bulk, ssn=True
            )
        except RawSsn as found:
            row_id = cleaned[0][found.row].as_py() if cleaned else None
            raise ssn_error(dataset, column, first + found.row, row_id) from None
        except TimeZoneNeeded:
            raise ConfigError(
                f"data set {dataset.name}, column {column.name}: the database "
                "returned a timestamp with a time zone; set source.time_zone to "
                "the school's zone (for example America/Chicago) so its date is "
                "the school's date"
            ) from None
        cleaned.append(texts)
        if counted is None:
            notes.extend((i, column.name, rule) for i, rule in changes)
        else:
            for i, rule in changes:
                if rule in QUIET_FIXES:
                    bulk[rule] += 1
                else:
                    notes.append((i, column.name, rule))
            for rule, n in bulk.items():
                counted[f"{column.name}:{rule}"] += n
        raw = to_array(values)
        # A cleaned phone is ten digits and a cleaned date mm/dd/yyyy: neither
        # can take the shape of a social security number.
        if column.kind not in (Kind.PHONE, Kind.DATE) and (
            changes or raw is None or not pa.types.is_string(raw.type)
        ):
            recheck.append(len(cleaned) - 1)
    phones = [i for i, c in enumerate(dataset.columns) if c.kind is Kind.PHONE]
    for later_n, later in enumerate(phones[1:], start=1):
        value = cleaned[later]
        same = pa.array([False] * len(value))
        for earlier in phones[:later_n]:
            same = pc.or_(same, pc.equal(cleaned[earlier], value))
        same = pc.and_(same, pc.not_equal(value, ""))
        if pc.any(same).as_py():
            name = dataset.columns[later].name
            notes.extend(
                (row, name, "phone_duplicate")
                for row in pc.indices_nonzero(same).to_pylist()
            )
            cleaned[later] = pc.if_else(same, "", value)
    return cleaned, notes, recheck


def _all_but(count: int, rows: Iterable[int]) -> pa.Array:
    """A mask of ``count`` rows, true but at ``rows``."""
    keep = [True] * count
    for i in rows:
        keep[i] = False
    return pa.array(keep)


def ssn_error(
    dataset: DataSet, column: Column, row: int, row_id: str | None = None
) -> ExportError:
    """The tripwire's error: the row and its ID, never the value.

    The ID is named only where it is another column's and does not itself look
    like a social security number (an ID column that holds them trips first).
    """
    named = ""
    id_column = dataset.columns[0]
    if row_id and column is not id_column and not looks_like_ssn(row_id, Kind.ID):
        named = f" (ID {row_id})"
    return ExportError(
        f"data set {dataset.name}, row {row}{named}, column {column.name}: a value "
        "looks like a US social security number; nothing was written or sent. "
        "Remove it from the source or the template"
    )


CSV_OPTIONS = pacsv.WriteOptions(
    include_header=False, quoting_style="all_valid", eol="\r\n"
)
"""How pyarrow writes an export's records (the writer's, and the gate's proof
that a block it read is in that form)."""


def csv_record(values: Iterable[str]) -> bytes:
    """One record: every field quoted, quotes doubled, CR LF at the end."""
    fields = ('"' + v.replace('"', '""') + '"' for v in values)
    return (",".join(fields) + "\r\n").encode("ascii")


class ExportWriter:
    """Write one export to a temporary file; ``commit()`` renames it into place.

    ``student_ids`` (for attendance) are the IDs of the students export, checked
    per ``policy.unknown_students``; ``clashing_ids`` (for staff) are IDs no row
    may have. ``None`` skips the check.
    """

    def __init__(
        self,
        dataset: DataSet,
        path: Path,
        *,
        policy: RowPolicy | None = None,
        zone: ZoneInfo | None = None,
        student_ids: Mapping[str, int] | None = None,
        clashing_ids: Mapping[str, int] | None = None,
    ) -> None:
        self.dataset = dataset
        self.path = path
        self.policy = policy or RowPolicy()
        self.zone = zone
        self.result = ExportResult(dataset=dataset.name, path=path)
        self._student_ids = as_index(student_ids)
        self._clashing_ids = as_index(clashing_ids)
        self._ids = IdIndex()
        self._required = [i for i, c in enumerate(dataset.columns) if c.is_required]
        self._id_limit = dataset.id_column.max_length
        self._ssn_columns = list(enumerate(dataset.columns))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
        self._tmp = Path(tmp)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        with writing(path):
            self._file.write(csv_record(dataset.headers))

    @property
    def ids(self) -> Mapping[str, int]:
        """The IDs written so far, each with its row number."""
        return self._ids

    def write_batch(
        self, order: Mapping[str, int], batch: Sequence[Sequence[Any]]
    ) -> None:
        """Clean, validate and write one batch of raw rows from the query."""
        if not len(batch):
            return
        first = self.result.fetched + 1
        columns = batch_columns(batch)
        cleaned, changes, recheck = shape_columns(
            self.dataset, order, columns, self.zone, first, self.result.fixes
        )
        self.result.fetched += len(cleaned[0])
        with writing(self.path):
            self._write_columns(first, cleaned, changes, recheck)

    def write_rows(self, rows: Iterable[tuple[str, ...]]) -> None:
        """Validate and write rows that are already clean (for tests and tools)."""
        with writing(self.path):
            for row in rows:
                self.result.fetched += 1
                if self._judge(self.result.fetched, row, ()):
                    self._file.write(csv_record(row))

    def _write_columns(
        self,
        first: int,
        cleaned: list[pa.Array],
        changes: Iterable[tuple[int, str, str]],
        recheck: Iterable[int],
    ) -> None:
        """Validate the cleaned columns and write the rows that pass.

        Rows that need a closer look (a rule fired, a field is empty, an ID may
        repeat...) go through ``_judge`` one by one, in row order, exactly as
        each row did before; the others are only counted.
        """
        count = len(cleaned[0])
        # The counted fixes (a phone's punctuation stripped, a name
        # transliterated) were added up by ``shape_columns``: each change here
        # asks for a closer look at its row.
        by_row: dict[int, list[tuple[str, str]]] = {}
        for i, column, rule in changes:
            by_row.setdefault(i, []).append((column, rule))
        suspect = self._suspects(cleaned, recheck)
        look = sorted(set(by_row) | suspect)
        # The rows to look at, taken out of the columns in one call each.
        picked: dict[int, tuple[str, ...]] = {}
        if look:
            where = pa.array(look, pa.int64())
            values = [c.take(where).to_pylist() for c in cleaned]
            picked = dict(zip(look, zip(*values, strict=True), strict=True))

        def row_at(i: int) -> tuple[str, ...]:
            row = picked.get(i)
            return row if row is not None else tuple(c[i].as_py() for c in cleaned)

        rejected: list[int] = []
        result = self.result
        checks_each = self.dataset.unique_ids or self._clashing_ids is not None
        if checks_each and not self._may_repeat(cleaned[0]):
            # No key of this batch repeats another of it, an earlier row's or a
            # clashing ID: only the rows to look at can be rejected.
            for i in look:
                if not self._judge(first + i, row_at(i), by_row.get(i, ())):
                    rejected.append(i)
            if self.dataset.unique_ids:
                fresh = _all_but(count, look)
                numbers = pa.array(range(first, first + count), pa.int64())
                self._ids.extend(cleaned[0].filter(fresh), numbers.filter(fresh))
            result.written += count - len(look)
        elif checks_each:
            looked = set(look)
            ids, clash = self._ids, self._clashing_ids
            for i, key in enumerate(cleaned[0].to_pylist()):
                if i in looked or key in ids or (clash is not None and key in clash):
                    if not self._judge(first + i, row_at(i), by_row.get(i, ())):
                        rejected.append(i)
                    continue
                if self.dataset.unique_ids:
                    ids.add(key, first + i)
                result.written += 1
        else:
            for i in look:
                if not self._judge(first + i, row_at(i), by_row.get(i, ())):
                    rejected.append(i)
            result.written += count - len(look)
        table = pa.Table.from_arrays(
            cleaned, names=[f"c{n}" for n in range(len(cleaned))]
        )
        if rejected:
            table = table.filter(_all_but(count, rejected))
        if table.num_rows:
            pacsv.write_csv(table, self._file, CSV_OPTIONS)

    def _may_repeat(self, keys: pa.Array) -> bool:
        """Whether a key of the batch may repeat another one, an earlier row's,
        or a clashing ID (set operations, no Python loop over the rows)."""
        distinct = pc.unique(keys)
        # Focused, the indexes answer this batch's lookups without a scan.
        held = self._ids.focus(distinct)
        clash = self._clashing_ids
        clashes = clash.focus(distinct) if clash is not None else 0
        return len(distinct) != len(keys) or bool(held) or bool(clashes)

    def _suspects(self, cleaned: list[pa.Array], recheck: Iterable[int]) -> set[int]:
        """Rows a vectorised test cannot clear: empty required fields, long IDs,
        values that may look like a social security number, unknown students."""
        found: set[int] = set()
        columns = self.dataset.columns
        for i in self._required:
            empty = pc.equal(cleaned[i], "")
            if pc.any(empty).as_py():
                found.update(pc.indices_nonzero(empty).to_pylist())
        long = pc.greater(pc.utf8_length(cleaned[0]), self._id_limit)
        if pc.any(long).as_py():
            found.update(pc.indices_nonzero(long).to_pylist())
        for i in recheck:
            found.update(ssn_candidates(cleaned[i], columns[i].kind))
        if self._student_ids is not None:
            # Each student may have several absences in a batch: look up its
            # distinct IDs, in one call.
            self._student_ids.focus(pc.unique(cleaned[0]))
            unknown = self._student_ids.missing()
            if unknown:
                rows = pc.is_in(cleaned[0], value_set=pa.array(unknown, pa.string()))
                found.update(pc.indices_nonzero(rows).to_pylist())
        return found

    def _judge(
        self, number: int, row: tuple[str, ...], changes: Iterable[tuple[str, str]]
    ) -> bool:
        """Count one row's fixes and warnings and decide whether it is written."""
        result = self.result
        key = row[0]
        causes: dict[str, str] = {}
        row_rule: tuple[str, str] | None = None
        for column, rule in changes:
            if rule in FIXES:
                result.fixes[f"{column}:{rule}"] += 1
                if rule in NOTED_FIXES:
                    result.note(RowNote(number, key, column, rule))
            elif rule in ROW_RULES:
                row_rule = (column, rule)
            else:
                result.warnings[f"{column}:{rule}"] += 1
                causes[column] = rule
                result.note(RowNote(number, key, column, rule))
        self._check_ssn(number, row)
        problem = (*row_rule, "") if row_rule else self._problem(number, row, causes)
        if problem is None:
            if self.dataset.unique_ids:
                self._ids.add(key, number)
            result.written += 1
            return True
        column, rule, detail = problem
        if rule == "unknown_student" and self.policy.unknown_students == "warn":
            result.warnings[f"{column}:{rule}"] += 1
            result.note(RowNote(number, key, column, rule))
            result.written += 1
            return True
        result.rejected += 1
        result.rejections[f"{column}:{rule}"] += 1
        result.note(RowNote(number, key, column, rule, detail))
        if self.policy.on_row_error == "fail":
            raise ExportError(
                f"data set {self.dataset.name}, row {number} (ID {key or 'empty'}), "
                f"column {column}: {REJECTIONS[rule]}{detail and f' ({detail})'}; "
                "fix the source record or the template, or set "
                f'datasets.{self.dataset.name}.on_row_error = "drop"'
            )
        return False

    def _problem(
        self, number: int, row: tuple[str, ...], causes: Mapping[str, str]
    ) -> tuple[str, str, str] | None:
        columns = self.dataset.columns
        for i in self._required:
            if not row[i]:
                name = columns[i].name
                cause = causes.get(name)
                return name, "required_empty", f"value {cause}" if cause else ""
        key = row[0]
        id_name = columns[0].name
        if len(key) > self._id_limit:
            return id_name, "id_too_long", f"limit {self._id_limit}"
        if self.dataset.unique_ids and key in self._ids:
            return id_name, "duplicate_id", f"first in row {self._ids[key]}"
        if self._clashing_ids is not None and key in self._clashing_ids:
            row_no = self._clashing_ids[key]
            return id_name, "student_id_clash", f"students export row {row_no}"
        if self._student_ids is not None and key not in self._student_ids:
            return id_name, "unknown_student", ""
        return None

    def _check_ssn(self, number: int, row: tuple[str, ...]) -> None:
        for i, column in self._ssn_columns:
            if column.kind is Kind.PHONE or not row[i]:
                continue
            if looks_like_ssn(row[i], column.kind):
                raise ssn_error(self.dataset, column, number, row[0])

    def finish(self) -> ExportResult:
        """Check the rejection share, flush and hash the temporary file.

        The target is not touched yet.
        """
        result = self.result
        if result.rejected and result.rejected > self.policy.max_rejected * max(
            result.fetched, 1
        ):
            first = next((n for n in result.notes if n.rule in REJECTIONS), None)
            where = (
                f"; the first is row {first.row} (ID {first.id or 'empty'}), "
                f"column {first.column}: {REJECTIONS[first.rule]}"
                if first
                else ""
            )
            raise ExportError(
                f"data set {self.dataset.name}: {result.rejected} of "
                f"{result.fetched} rows broke a rule, more than "
                f"datasets.{self.dataset.name}.max_rejected "
                f"({self.policy.max_rejected:.0%}){where}. See the run report"
            )
        with writing(self.path):
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        digest = hashlib.sha256()
        with self._tmp.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        result.size = self._tmp.stat().st_size
        result.sha256 = digest.hexdigest()
        return result

    def commit(self, *, announce: bool = True) -> ExportResult:
        """Rename the finished export into place; ``announce`` logs it (else
        ``announce()`` does, once every export of the run is in place)."""
        os.replace(self._tmp, self.path)
        self.result.in_place = True
        if announce:
            self.announce()
        return self.result

    def announce(self) -> None:
        log.info(
            "export %s written: %d rows, %d bytes, sha256 %s",
            self.path.name,
            self.result.written,
            self.result.size,
            self.result.sha256[:16],
        )

    def discard(self) -> None:
        """Remove the temporary file; a close that fails again (a full disk
        cannot take the buffered rest either) does not hide the first error."""
        with contextlib.suppress(OSError):
            self._file.close()
        self._tmp.unlink(missing_ok=True)


_RECORD = re.compile(rb'"(?:[^"\r\n]|"")*"(?:,"(?:[^"\r\n]|"")*")*\r\n')


def check_export(dataset: DataSet, path: Path) -> int:
    """Check a file to be sent as strictly as the writer would have made it.

    For an export written elsewhere or edited by hand (``connector send FILE``):
    the exact header, every field quoted, CR LF record ends, ASCII, and every value
    already as the field rules leave it; required fields filled, IDs unique, no
    value shaped like a social security number. Returns the number of rows;
    raises ``ExportError`` naming the file, row and column.
    """
    expected = ",".join(f'"{h}"' for h in dataset.headers).encode("ascii") + b"\r\n"
    cleaners = [
        None if c.kind is Kind.EXTENSION else cleaner(c, ZoneInfo("UTC"))
        for c in dataset.columns
    ]
    ids: dict[str, int] = {}
    row = 0
    with path.open("rb") as f:
        if f.readline() != expected:
            raise ExportError(
                f"{path}: the first line is not the {dataset.name} header "
                f"({', '.join(dataset.headers)}), quoted and ending in CR LF"
            )
        for raw in f:
            row += 1
            where = f"{path}: row {row}"
            if not raw.isascii() or not _RECORD.fullmatch(raw):
                raise ExportError(
                    f"{where} is not a record as connector writes them (ASCII, every "
                    "field in double quotes, CR LF at the end); export it again with "
                    "`connector extract`"
                )
            values = next(csv.reader([raw.decode("ascii")[:-2]]))
            if len(values) != len(dataset.columns):
                raise ExportError(
                    f"{where} has {len(values)} fields, not {len(dataset.columns)}"
                )
            _check_values(dataset, cleaners, values, where)
            if dataset.unique_ids:
                if values[0] in ids:
                    raise ExportError(
                        f"{where}: the ID repeats row {ids[values[0]]}; IDs must be "
                        "unique"
                    )
                ids[values[0]] = row
    return row


def _check_values(
    dataset: DataSet,
    cleaners: Sequence[Any],
    values: Sequence[str],
    where: str,
) -> None:
    for column, clean, value in zip(dataset.columns, cleaners, values, strict=True):
        if column.is_required and not value:
            raise ExportError(f"{where}, column {column.name}: required but empty")
        if column.kind is not Kind.PHONE and looks_like_ssn(value, column.kind):
            raise ExportError(
                f"{where}, column {column.name}: a value looks like a US social "
                "security number; it is not sent"
            )
        if clean is None:
            ok = value == "" or (value.isdigit() and len(value) <= column.max_length)
        else:
            ok = clean(value)[0] == value
        if not ok:
            raise ExportError(
                f"{where}, column {column.name}: the value is not as the field rules "
                f"leave a {column.kind} value (see README: Field rules); fix the "
                "source and export it again with `connector extract`"
            )
