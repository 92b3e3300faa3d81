"""The safety gate's local state: what each data set held at its last verified send.

After a verified send, ``StateStore.record`` keeps, per data set, the counts and
SHA-256 of the export and, per row key, one fingerprint per column (a key column's
is left zero where the key itself says what it holds: ``NO_FINGERPRINT``). Before the
next send, ``StateStore.compare`` matches the new export against that record and
holds the send when the export is empty or has lost more than ``max_drop`` of its
rows or of its distinct IDs; ``StateStore.write_diff`` lists the keys added,
removed and changed, and for a changed key the names of the columns that changed.

Field values never enter the store or the report: a fingerprint is a keyed
BLAKE2b hash (8 bytes) under a random key kept in the store, so a phone number or
a date cannot be found again by hashing candidates without that key. Only a row's
key (the ID the DBA looks up) is kept in clear.

The store is one SQLite file. Each export is streamed into a temporary table in
batches and compared there with SQL, so memory stays flat for millions of rows.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import functools
import hashlib
import io
import itertools
import json
import logging
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .csvout import CSV_OPTIONS, csv_record
from .datasets import DATASETS, PERIOD_SHAPES, DataSet, attendance
from .errors import ConnectorError, ExitCode, ExportError, writing

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
# How long to wait for a store another process holds locked.
BUSY_SECONDS = 30.0
BATCH_ROWS = 10_000
# Bytes of an export parsed at a time by the columnar path (about 8,000
# attendance rows): larger blocks are no faster, and pyarrow's parser holds
# several times a block's size while it works.
BLOCK_BYTES = 1 << 18
# Items of a diff report's list written at a time.
WRITE_ITEMS = 10_000
# Fingerprints remembered per column (about 100 bytes each), used for a block
# of at most MEMO_DISTINCT distinct values in a column.
MEMO_VALUES = 4096
MEMO_DISTINCT = 256
FINGERPRINT_SIZE = 8
# A key column's fingerprint: the key names the row, so its columns are the same
# whenever two rows are compared, and hashing them (the IDs) would buy nothing.
# Two exceptions keep a key column hashed. Where a key column's value holds the
# separator, two rows' columns could join to one key ("A|1", "2" and "A", "1|2"):
# there every key column is hashed. And where keys may repeat, a numbered repeat
# (key#2) reads like a key whose last column ends in "#2": that column is always
# hashed (a date or a period, which repeat, so it costs little).
NO_FINGERPRINT = bytes(FINGERPRINT_SIZE)
KEY_SEPARATOR = "|"
REPEAT_MARK = "#"

# Rollback journal rather than WAL: one connector run writes at a time, so WAL's
# concurrent readers buy nothing, while it needs shared memory (unsafe when the
# state folder is on a network share) and leaves -wal/-shm files beside the
# store. With a rollback journal every commit ends up in the one file, which is
# easy to back up, copy and inspect.
_PRAGMAS = (
    "PRAGMA journal_mode = DELETE",
    "PRAGMA synchronous = FULL",
    # Staged exports can hold millions of rows: let them spill to a temporary
    # file instead of growing the process.
    "PRAGMA temp_store = FILE",
)

_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    """CREATE TABLE baseline (
        dataset TEXT PRIMARY KEY,
        sent_at TEXT NOT NULL,
        row_count INTEGER NOT NULL,
        id_count INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        run_id TEXT NOT NULL,
        columns TEXT NOT NULL,
        key_columns TEXT
    )""",
    """CREATE TABLE fingerprint (
        dataset TEXT NOT NULL,
        key TEXT NOT NULL,
        columns BLOB NOT NULL,
        PRIMARY KEY (dataset, key)
    ) WITHOUT ROWID""",
)

_STAGE = (
    "DROP TABLE IF EXISTS temp.staged_row",
    "DROP TABLE IF EXISTS temp.sorted_row",
    "DROP TABLE IF EXISTS temp.staged",
    # id is NULL where the key says it (the key, or the key's first part).
    """CREATE TEMP TABLE staged_row (
        seq INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        id TEXT,
        columns BLOB NOT NULL
    )""",
    """CREATE TEMP TABLE sorted_row (
        seq INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        columns BLOB NOT NULL
    )""",
    """CREATE TEMP TABLE staged (
        key TEXT PRIMARY KEY,
        columns BLOB NOT NULL
    ) WITHOUT ROWID""",
)

# Repeats of a key are numbered key, key#2, key#3... in the order of their
# fingerprints, so that the same rows in another order still compare equal. The
# rows are copied in that order into sorted_row, where a row repeats the key of
# the row before it (seq - 1) exactly when it is a repeat: the first of each key
# goes to staged as it is, and the few repeats are numbered from their seq. (A
# row_number() window does the same but takes three times as long.)
_SORT_BY_KEY = """
    INSERT INTO temp.sorted_row (key, columns)
    SELECT key, columns FROM temp.staged_row ORDER BY key, columns
"""
_KEEP_FIRST = """
    INSERT INTO temp.staged (key, columns)
    SELECT a.key, a.columns FROM temp.sorted_row AS a
    WHERE NOT EXISTS (
        SELECT 1 FROM temp.sorted_row AS b WHERE b.seq = a.seq - 1 AND b.key = a.key
    )
    ORDER BY a.seq
"""
_REPEATS = """
    SELECT a.seq, a.key, a.columns
    FROM temp.sorted_row AS a JOIN temp.sorted_row AS b
        ON b.seq = a.seq - 1 AND b.key = a.key
    ORDER BY a.seq
"""
_KEEP_UNIQUE = """
    INSERT INTO temp.staged (key, columns)
    SELECT key, columns FROM temp.staged_row ORDER BY key
"""

_MATCHES = """
    SELECT count(*), coalesce(sum(s.columns = f.columns), 0)
    FROM temp.staged AS s JOIN fingerprint AS f ON f.dataset = ? AND f.key = s.key
"""
_ADDED = """
    SELECT s.key FROM temp.staged AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM fingerprint AS f WHERE f.dataset = ? AND f.key = s.key
    )
    ORDER BY s.key
"""
# Every staged key, for a data set none of whose keys matched.
_ALL_KEYS = "SELECT key FROM temp.staged ORDER BY key"
_REMOVED = """
    SELECT f.key FROM fingerprint AS f
    WHERE f.dataset = ?
        AND NOT EXISTS (SELECT 1 FROM temp.staged AS s WHERE s.key = f.key)
    ORDER BY f.key
"""
_DROP_REMOVED = """
    DELETE FROM fingerprint
    WHERE dataset = ?1
        AND NOT EXISTS (SELECT 1 FROM temp.staged AS s WHERE s.key = fingerprint.key)
"""
_WRITE_ALL = """
    INSERT INTO fingerprint (dataset, key, columns)
    SELECT ?1, key, columns FROM temp.staged
"""
_WRITE_DIFFERING = """
    INSERT OR REPLACE INTO fingerprint (dataset, key, columns)
    SELECT ?1, s.key, s.columns FROM temp.staged AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM fingerprint AS f
        WHERE f.dataset = ?1 AND f.key = s.key AND f.columns = s.columns
    )
"""
_CHANGED = """
    SELECT s.key, f.columns, s.columns
    FROM temp.staged AS s JOIN fingerprint AS f ON f.dataset = ? AND f.key = s.key
    WHERE s.columns != f.columns
    ORDER BY s.key
"""


@dataclass
class Baseline:
    """What the last verified send of one data set held."""

    dataset: str
    sent_at: str
    rows: int
    ids: int
    sha256: str
    run_id: str


@dataclass
class Diff:
    """A new export compared with its data set's baseline, and the gate's verdict.

    ``ids`` counts the distinct values of the ID column (the first one): students
    or staff members, and for attendance the students with an absence.
    """

    dataset: str
    baseline: Baseline | None
    rows: int
    ids: int
    added: int
    removed: int
    changed: int
    unchanged: int
    held: bool
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        """Counts and the verdict, for the run report; no keys, no values."""
        baseline = None
        if self.baseline is not None:
            baseline = {
                "sent_at": self.baseline.sent_at,
                "rows": self.baseline.rows,
                "ids": self.baseline.ids,
                "run_id": self.baseline.run_id,
            }
        return {
            "dataset": self.dataset,
            "rows": self.rows,
            "ids": self.ids,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "held": self.held,
            "reason": self.reason,
            "baseline": baseline,
        }


@dataclass(frozen=True)
class KeyRule:
    """Which columns identify a row, and whether a key may repeat in one file."""

    positions: tuple[int, ...]
    is_unique: bool

    def key(self, row: Sequence[str]) -> str:
        return KEY_SEPARATOR.join(row[i] for i in self.positions)

    @property
    def unprinted(self) -> tuple[int, ...]:
        """The key columns whose fingerprints are left zero (``NO_FINGERPRINT``)."""
        return _unprinted(self.positions, self.is_unique)


def _unprinted(keys: tuple[Any, ...], is_unique: bool) -> tuple[Any, ...]:
    return keys if is_unique else keys[:-1]


def key_rule(dataset: DataSet) -> KeyRule:
    """How the gate keys the rows of ``dataset``'s exports.

    The data set's declared key columns (``DataSet.key_columns``): for students
    and staff the ID column, unique; for attendance Student ID and Absence Date
    (and Period in the event shape) joined by ``|``, where a repeated key is
    numbered (``key``, ``key#2``, ...).
    """
    return KeyRule(
        tuple(dataset.column_names.index(name) for name in dataset.key_columns),
        is_unique=dataset.unique_ids,
    )


@dataclass
class _Staged:
    """The export now in the temporary tables."""

    dataset: str
    columns: tuple[str, ...]
    sha256: str
    rows: int
    ids: int
    # The counts against a baseline (added, removed, changed, unchanged), kept
    # for write_diff after compare, with the baseline they were taken against.
    counts: tuple[Baseline | None, tuple[int, int, int, int]] | None = None


class StateStore:
    """The SQLite file holding each data set's baseline and row fingerprints.

    Use as a context manager, or call ``close()``::

        with StateStore(state / "gate.sqlite") as store:
            diff = store.compare(STUDENTS, export)
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # Each data set staged through this store, by name; the one named by
        # _active is temp.staged, the others wait under temp."staged:<name>" so
        # that record() after a send of several data sets need not stage again.
        self._staged: dict[str, _Staged] = {}
        self._active: str | None = None
        # Whether the export being staged bound any row's ID in staged_row
        # (rather than leaving it to be read from the key).
        self._bound_ids = False
        self._db = _open(self.path)
        try:
            with self._guard():
                self._fingerprint_key = self._prepare()
        except BaseException:
            self._db.close()
            raise

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """A damaged store is one clear error, not a SQLite traceback."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; the staged export (a temporary table) goes with it."""
        self._staged = {}
        self._active = None
        self._db.close()

    def baseline(self, dataset: str) -> Baseline | None:
        with self._guard():
            return self._baseline(dataset)

    def _baseline(self, dataset: str) -> Baseline | None:
        """The baseline of the data set named ``dataset``, or None before its
        first recorded send."""
        row = self._db.execute(
            "SELECT dataset, sent_at, row_count, id_count, sha256, run_id "
            "FROM baseline WHERE dataset = ?",
            (dataset,),
        ).fetchone()
        return None if row is None else Baseline(*row)

    def compare(
        self,
        dataset: DataSet,
        export: Path,
        *,
        max_drop: float = 0.10,
        allow_empty: bool = False,
    ) -> Diff:
        """Compare ``export`` with the data set's baseline and decide whether to hold.

        Held when the export has no rows (unless ``allow_empty``), or when it has
        more than ``max_drop`` (a share, 0.10 for 10%) fewer rows or distinct IDs
        than the last send. Raises ``ExportError`` when the file cannot be read
        or its header is not the data set's.
        """
        if not 0 <= max_drop <= 1:
            raise ValueError(f"max_drop must be a share from 0 to 1, not {max_drop}")

        with self._guard():
            staged = self._stage(dataset, export)
            baseline = self._baseline(dataset.name)
            added, removed, changed, unchanged = self._count(staged, baseline)
            before = self._baseline_columns(dataset.name)
        reason = _hold_reason(
            baseline,
            staged.rows,
            staged.ids,
            removed if dataset.unique_ids else None,
            max_drop=max_drop,
            allow_empty=allow_empty,
        )
        diff = Diff(
            dataset=dataset.name,
            baseline=baseline,
            rows=staged.rows,
            ids=staged.ids,
            added=added,
            removed=removed,
            changed=changed,
            unchanged=unchanged,
            held=reason is not None,
            reason=reason,
        )

        log.info(
            "gate %s: %d rows, %d IDs; %d added, %d removed, %d changed; %s",
            dataset.name,
            diff.rows,
            diff.ids,
            added,
            removed,
            changed,
            f"held: {reason}" if reason else "passed",
        )
        if before is not None and before != dataset.column_names:
            log.warning(
                "gate %s: the columns are not those of the last send (then %s, now "
                "%s): a row whose values only moved compares as changed, with no "
                "column named",
                dataset.name,
                ", ".join(before),
                ", ".join(dataset.column_names),
            )
        return diff

    def write_diff(self, dataset: DataSet, export: Path, report: Path) -> Path:
        """Write the detailed comparison of ``export`` with the baseline as JSON."""
        with self._guard():
            return self._write_diff(dataset, export, report)

    def _write_diff(self, dataset: DataSet, export: Path, report: Path) -> Path:
        """Write the detailed comparison of ``export`` with the baseline as JSON.

        The report holds the counts, then the keys ``added`` and ``removed``, and
        under ``changed`` each changed key with the names of its changed columns;
        never a field value other than the key. It is written to a temporary file
        beside ``report`` and renamed into place.
        """
        staged = self._stage(dataset, export)
        baseline = self._baseline(dataset.name)
        added, removed, changed, unchanged = self._count(staged, baseline)
        old_columns = self._baseline_columns(dataset.name) or staged.columns
        head: dict[str, Any] = {
            "dataset": dataset.name,
            "export": export.name,
            "sha256": staged.sha256,
            "baseline": None if baseline is None else asdict(baseline),
            "columns": list(staged.columns),
            "baseline_columns": list(old_columns) if baseline else None,
            "counts": {
                "rows": staged.rows,
                "ids": staged.ids,
                "added": added,
                "removed": removed,
                "changed": changed,
                "unchanged": unchanged,
            },
        }

        report.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{report.name}.", dir=report.parent)
        tmp = Path(name)
        try:
            with writing(report), open(fd, "w", encoding="utf-8", newline="\n") as out:
                out.write("{\n")
                for field, value in head.items():
                    out.write(f"  {json.dumps(field)}: {json.dumps(value)},\n")
                # The counts say which lists are empty; where no key matched
                # (a first send) every key is added and none needs looking up.
                db = self._db
                added_keys: Iterable[tuple[str]] = ()
                if added and changed + unchanged:
                    added_keys = db.execute(_ADDED, (dataset.name,))
                elif added:
                    added_keys = db.execute(_ALL_KEYS)
                _write_list(out, "added", (key for (key,) in added_keys))
                out.write(",\n")
                removed_keys = db.execute(_REMOVED, (dataset.name,)) if removed else ()
                _write_list(out, "removed", (key for (key,) in removed_keys))
                out.write(",\n")
                differing = db.execute(_CHANGED, (dataset.name,)) if changed else ()
                changes = (
                    {
                        "id": key,
                        "columns": _changed_columns(
                            old_columns, old, staged.columns, new
                        ),
                    }
                    for key, old, new in differing
                )
                _write_list(out, "changed", changes)
                out.write("\n}\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, report)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

        log.info(
            "gate %s: diff report %s written (%d added, %d removed, %d changed)",
            dataset.name,
            report.name,
            added,
            removed,
            changed,
        )
        return report

    def record(self, dataset: DataSet, export: Path, *, run_id: str) -> Baseline:
        """Make ``export`` the data set's baseline (after a verified send)."""
        with self._guard():
            return self._record(dataset, export, run_id=run_id)

    def _record(self, dataset: DataSet, export: Path, *, run_id: str) -> Baseline:
        """Make ``export`` the data set's baseline, after its send was verified.

        The previous baseline and its fingerprints are replaced in one
        transaction: a failure leaves the old baseline whole.
        """
        if not run_id:
            raise ValueError("record() needs the run's ID")

        staged = self._stage(dataset, export)
        baseline = Baseline(
            dataset=dataset.name,
            sent_at=_utc_now(),
            rows=staged.rows,
            ids=staged.ids,
            sha256=staged.sha256,
            run_id=run_id,
        )
        counts = self._count(staged, self._baseline(dataset.name))
        added, removed, changed, unchanged = counts
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # Only what differs from the last baseline is written: a night's
            # few changes, not millions of rows deleted and written again.
            if not removed + changed + unchanged:  # none kept yet: nothing to compare
                db.execute(_WRITE_ALL, (dataset.name,))
            elif added or changed:
                db.execute(_WRITE_DIFFERING, (dataset.name,))
            if removed:
                db.execute(_DROP_REMOVED, (dataset.name,))
            db.execute(
                "INSERT OR REPLACE INTO baseline (dataset, sent_at, row_count, "
                "id_count, sha256, run_id, columns, key_columns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    baseline.dataset,
                    baseline.sent_at,
                    baseline.rows,
                    baseline.ids,
                    baseline.sha256,
                    baseline.run_id,
                    json.dumps(staged.columns),
                    json.dumps(dataset.key_columns),
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            _roll_back(db)
            raise
        staged.counts = None

        log.info(
            "gate %s: baseline recorded for run %s: %d rows, %d IDs, sha256 %s",
            dataset.name,
            run_id,
            baseline.rows,
            baseline.ids,
            baseline.sha256[:16],
        )
        return baseline

    def _prepare(self) -> bytes:
        """Set the connection up, create or check the schema; return the key."""
        db = self._db
        try:
            for pragma in _PRAGMAS:
                db.execute(pragma).fetchall()
            db.execute("BEGIN IMMEDIATE")
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.execute(
                        "INSERT INTO meta (name, value) VALUES ('fingerprint_key', ?)",
                        (secrets.token_bytes(32),),
                    )
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    log.info("gate state store %s created", self.path)
                elif version == 1:
                    # Version 1 fingerprinted key columns too; each data set's
                    # baseline is converted when it is next used (_unkey). A
                    # damaged store is said to be so before it is marked
                    # upgraded, which would lock the older connector out.
                    checked = db.execute("PRAGMA quick_check(1)").fetchone()[0]
                    if checked != "ok":
                        raise _damaged(self.path, " ".join(checked.split()))
                    db.execute("ALTER TABLE baseline ADD COLUMN key_columns TEXT")
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    log.info(
                        "gate state store %s upgraded to schema version %d",
                        self.path,
                        SCHEMA_VERSION,
                    )
                db.execute("COMMIT")
            except BaseException:
                _roll_back(db)
                raise
            row = db.execute(
                "SELECT value FROM meta WHERE name = 'fingerprint_key'"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from exc

        if version > SCHEMA_VERSION:
            raise ConnectorError(
                f"gate state store {self.path} has schema version {version}, newer "
                f"than this connector's ({SCHEMA_VERSION}); upgrade the connector"
            )
        if row is None or len(row[0]) != 32:
            raise ConnectorError(
                f"gate state store {self.path} has lost its fingerprint key; move "
                "it aside: the next send then has no baseline"
            )
        key: bytes = row[0]
        return key

    def _stage(self, dataset: DataSet, export: Path) -> _Staged:
        """Load ``export`` into the temporary tables, unless it is there already."""
        self._unkey(dataset)
        try:
            raw = export.open("rb")
        except OSError as exc:
            raise ExportError(
                f"export {export} cannot be read for the safety gate "
                f"({exc.strerror or exc})"
            ) from exc
        with raw:
            sha256 = _sha256(raw)
            staged = self._staged.pop(dataset.name, None)
            if (
                staged is not None
                and staged.columns == dataset.column_names
                and staged.sha256 == sha256
            ):
                self._activate(dataset.name)
                self._staged[dataset.name] = staged
                return staged

            raw.seek(0)
            db = self._db
            db.execute("BEGIN")
            try:
                self._park()
                db.execute(f"DROP TABLE IF EXISTS temp.{_parked(dataset.name)}")
                for statement in _STAGE:
                    db.execute(statement)
                self._bound_ids = False
                rows = self._load(dataset, export, raw)
                self._number(dataset, export)
                ids = self._count_ids(key_rule(dataset), rows)
                staged = _Staged(dataset.name, dataset.column_names, sha256, rows, ids)
                db.execute("DELETE FROM temp.staged_row")
                db.execute("COMMIT")
            except BaseException:
                _roll_back(db)
                raise

        log.debug("gate %s: %s staged, %d rows", dataset.name, export.name, rows)
        self._active = dataset.name
        self._staged[dataset.name] = staged
        return staged

    def _park(self) -> None:
        """Rename the active data set's staged table aside (in a transaction)."""
        if self._active is not None:
            self._db.execute(
                f"ALTER TABLE temp.staged RENAME TO {_parked(self._active)}"
            )

    def _unkey(self, dataset: DataSet) -> None:
        """Convert a baseline that a schema version 1 store recorded with its key
        columns' fingerprints to the form every later one is recorded in.

        The key columns are those of the shape the baseline was recorded in,
        whatever the data set's shape now; those of ``KeyRule.unprinted`` are
        left zero in each row whose key says what they hold (``_unambiguous``).
        """
        db = self._db
        select = "SELECT columns, key_columns FROM baseline WHERE dataset = ?"
        row = db.execute(select, (dataset.name,)).fetchone()
        if row is None or row[1] is not None:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(select, (dataset.name,)).fetchone()
            if row is not None and row[1] is None:
                self._convert(dataset, json.loads(row[0]))
            db.execute("COMMIT")
        except BaseException:
            _roll_back(db)
            raise

    def _convert(self, dataset: DataSet, recorded: list[str]) -> None:
        """Zero the key slots of the baseline whose columns are ``recorded``."""
        shape = _recorded_shape(dataset.name, recorded) or dataset
        keys = shape.key_columns
        unprinted = _unprinted(keys, shape.unique_ids)
        slots = [recorded.index(c) for c in unprinted if c in recorded]

        def unkeyed(prints: bytes) -> bytes:
            parts = list(_split(prints))
            for slot in slots:
                parts[slot] = NO_FINGERPRINT
            return b"".join(parts)

        db = self._db
        db.create_function("connector_unkeyed", 1, unkeyed, deterministic=True)
        sql = (
            "UPDATE fingerprint SET columns = connector_unkeyed(columns) "
            "WHERE dataset = ?"
        )
        if len(keys) > 1:
            # Only keys holding no separator but the ones between their parts.
            sql += f" AND length(key) - length(replace(key, ?, '')) = {len(keys) - 1}"
            db.execute(sql, (dataset.name, KEY_SEPARATOR))
        else:
            db.execute(sql, (dataset.name,))
        db.execute(
            "UPDATE baseline SET key_columns = ? WHERE dataset = ?",
            (json.dumps(list(keys)), dataset.name),
        )
        log.info("gate %s: baseline converted to schema version 2", dataset.name)

    def _count_ids(self, rule: KeyRule, rows: int) -> int:
        """The distinct IDs of the export just staged (``rows`` rows)."""
        if rule.is_unique:
            return rows  # staging proved each row's ID differs
        db = self._db
        if not self._bound_ids and len(rule.positions) > 1:
            # Every ID is its key's first part, also in a numbered key (key#2):
            # counted over the keys in order, three times as fast as unsorted.
            sql = f"SELECT count(DISTINCT {_first_part('key')}) FROM temp.staged"
        else:
            derived = "key" if len(rule.positions) == 1 else _first_part("key")
            sql = f"SELECT count(DISTINCT coalesce(id, {derived})) FROM temp.staged_row"
        count: int = db.execute(sql).fetchone()[0]
        return count

    def _activate(self, name: str) -> None:
        """Make the parked staged table of data set ``name`` temp.staged again."""
        if self._active == name:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            self._park()
            db.execute(f"ALTER TABLE temp.{_parked(name)} RENAME TO staged")
            db.execute("COMMIT")
        except BaseException:
            _roll_back(db)
            raise
        self._active = name

    def _load(self, dataset: DataSet, export: Path, raw: IO[bytes]) -> int:
        """Stream the export's rows into ``staged_row``; return how many.

        An export as the connector writes it (the exact header, every field
        quoted, CR LF) goes through pyarrow, many times faster than row by row;
        anything else, and any block that pyarrow reads differently from
        ``csv.reader`` or that is not ASCII, starts over with ``csv.reader``, whose
        keys and fingerprints are the same and whose errors name the line.
        """
        memos = [_Fingerprints(self._column_hash(n)) for n in dataset.column_names]
        rows = self._load_columns(dataset, raw, memos)
        if rows is not None:
            return rows
        self._db.execute("DELETE FROM temp.staged_row")
        raw.seek(0)
        text = io.TextIOWrapper(raw, encoding="ascii", newline="")
        try:
            return self._load_rows(dataset, export, text, memos)
        finally:
            text.detach()

    def _load_columns(
        self, dataset: DataSet, raw: IO[bytes], memos: Sequence[_Fingerprints]
    ) -> int | None:
        """Load an export in the writer's strict form a block at a time, with
        pyarrow; None (with some rows loaded) where the file is not in that form.

        Each block is proved to be exactly the strict form of the values pyarrow
        read from it: written again from those values it gives the same bytes. So
        ``csv.reader`` reads the same values, whatever pyarrow's own rules for
        stray quotes, empty lines or line ends.
        """
        if raw.read(len(header := csv_record(dataset.headers))) != header:
            return None
        rule = key_rule(dataset)
        names = [f"c{i}" for i in range(len(dataset.columns))]
        options = {
            "read_options": pacsv.ReadOptions(
                column_names=names, use_threads=False, block_size=8 * BLOCK_BYTES
            ),
            "parse_options": pacsv.ParseOptions(ignore_empty_lines=False),
            "convert_options": pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        }
        rows = 0
        for block in _blocks(raw):
            # NUL is left to csv.reader: SQLite's JSON would not keep it in a key.
            if not block.isascii() or b"\0" in block:
                return None
            data = pa.py_buffer(block)
            try:
                table = pacsv.read_csv(data, **options)
            except pa.ArrowException:
                return None
            columns = [column.combine_chunks() for column in table.columns]
            if not _written(columns).equals(data):
                return None
            self._insert(rule, columns, _fingerprints(columns, memos, rule))
            rows += table.num_rows
        return rows

    def _insert(
        self, rule: KeyRule, columns: Sequence[pa.Array], prints: pa.Array
    ) -> None:
        """Insert one block's keys, IDs and fingerprints into ``staged_row``.

        The keys go in as one JSON array and the fingerprints as one blob that
        SQLite cuts per row, twice as fast as binding each row. The ID is left
        NULL where the key says it: the key itself, or the key's first part
        where the key starts with the ID and no ID holds the separator.
        Otherwise each row is bound, with its ID.
        """
        if len(rule.positions) == 1:
            keys = columns[rule.positions[0]]
        else:
            keys = pc.binary_join_element_wise(
                *(columns[i] for i in rule.positions), KEY_SEPARATOR
            )
        width = FINGERPRINT_SIZE * len(columns)
        if rule.positions[0] != 0 or (
            len(rule.positions) > 1
            and pc.any(pc.match_substring(columns[0], KEY_SEPARATOR)).as_py()
        ):
            self._bound_ids = True
            self._db.executemany(
                "INSERT INTO temp.staged_row (key, id, columns) VALUES (?, ?, ?)",
                zip(
                    keys.to_pylist(),
                    columns[0].to_pylist(),
                    prints.to_pylist(),
                    strict=True,
                ),
            )
            return
        self._db.execute(
            "INSERT INTO temp.staged_row (key, columns) "
            "SELECT k.value, substr(?2, k.key * ?3 + 1, ?3) FROM json_each(?1) AS k",
            (_json_array(keys), _concatenated(prints, b"").as_py(), width),
        )

    def _load_rows(
        self,
        dataset: DataSet,
        export: Path,
        text: IO[str],
        memos: Sequence[_Fingerprints],
    ) -> int:
        """Stream the export's rows into ``staged_row`` with ``csv.reader``."""
        self._bound_ids = True
        reader = csv.reader(text)
        try:
            header = next(reader, None)
            if header is None:
                raise ExportError(
                    f"export {export} is empty, without even a header row; "
                    "extract it again"
                )
            if tuple(header) != dataset.headers:
                raise ExportError(
                    f"export {export}: the header row is not the {dataset.name} "
                    f"data set's ({', '.join(dataset.headers)}); check that the "
                    "file belongs to this data set"
                )

            rule = key_rule(dataset)
            width = len(dataset.columns)
            positions = rule.positions
            unprinted = rule.unprinted
            join_key = KEY_SEPARATOR.join
            join = b"".join
            insert = "INSERT INTO temp.staged_row (key, id, columns) VALUES (?, ?, ?)"
            batch: list[tuple[str, str, bytes]] = []
            append = batch.append
            rows = 0
            for row in reader:
                if len(row) != width:
                    raise ExportError(
                        f"export {export}, line {reader.line_num}: {len(row)} fields "
                        f"where the {dataset.name} data set has {width}"
                    )
                prints = [memo[value] for memo, value in zip(memos, row, strict=True)]
                if not _ambiguous_key(row, positions):
                    for i in unprinted:
                        prints[i] = NO_FINGERPRINT
                append((join_key([row[i] for i in positions]), row[0], join(prints)))
                if len(batch) >= BATCH_ROWS:
                    self._db.executemany(insert, batch)
                    rows += len(batch)
                    batch.clear()
            self._db.executemany(insert, batch)
            rows += len(batch)
        except UnicodeDecodeError as exc:
            raise ExportError(
                f"export {export}, near line {reader.line_num + 1}: not ASCII "
                f"({exc.reason}); exports are ASCII only, extract it again"
            ) from None
        except csv.Error as exc:
            raise ExportError(
                f"export {export}, line {reader.line_num}: not valid CSV ({exc}); "
                "extract it again"
            ) from None
        return rows

    def _number(self, dataset: DataSet, export: Path) -> None:
        """Fill ``staged`` with one row per key, numbering repeats where allowed."""
        db = self._db
        if not key_rule(dataset).is_unique:
            # Most such exports repeat no key (one absence per student and day):
            # then one sorted copy is the whole work. The first repeat stops it
            # (the statement is undone), and the repeats are numbered instead.
            try:
                db.execute(_KEEP_UNIQUE)
                return
            except sqlite3.IntegrityError:
                log.debug("gate %s: a key repeats; numbering repeats", dataset.name)
            db.execute(_SORT_BY_KEY)
            db.execute(_KEEP_FIRST)
            db.execute("SAVEPOINT numbering")
            try:
                db.executemany(
                    "INSERT INTO temp.staged (key, columns) VALUES (?, ?)",
                    _numbered(db.execute(_REPEATS)),
                )
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK TO numbering")
                raise self._numbering_clash(dataset, export) from None
            db.execute("RELEASE numbering")
            db.execute("DELETE FROM temp.sorted_row")
            return
        try:
            db.execute(_KEEP_UNIQUE)
        except sqlite3.IntegrityError:
            raise ExportError(
                f"export {export}: an ID appears in more than one row; the "
                f"{dataset.name} data set's {dataset.id_column.header} must be "
                "unique, extract it again"
            ) from None

    def _numbering_clash(self, dataset: DataSet, export: Path) -> ExportError:
        """The error for a repeat numbered ``key#n`` where another row's key is
        already ``key#n`` (a key column's value ending in ``#`` and a number)."""
        db = self._db
        for key, _ in _numbered(db.execute(_REPEATS)):
            taken = db.execute("SELECT 1 FROM temp.staged WHERE key = ?", (key,))
            if taken.fetchone() is not None:
                break
        else:
            key = "?"
        base, _, _ = key.rpartition(REPEAT_MARK)
        headers = ", ".join(
            dataset.columns[i].header for i in key_rule(dataset).positions
        )
        return ExportError(
            f"export {export}: the key {base} repeats, and the safety gate numbers "
            f"its repeats {base}{REPEAT_MARK}2 and on, but {key} is another row's "
            f"own key ({headers}); change the value ending in '{REPEAT_MARK}' and a "
            "number in the SIS or in the template"
        )

    def _count(
        self, staged: _Staged, baseline: Baseline | None
    ) -> tuple[int, int, int, int]:
        """Added, removed, changed and unchanged keys against ``baseline``."""
        if staged.counts is not None and staged.counts[0] == baseline:
            return staged.counts[1]
        dataset = staged.dataset
        db = self._db
        matched, unchanged = db.execute(_MATCHES, (dataset,)).fetchone()
        (old,) = db.execute(
            "SELECT count(*) FROM fingerprint WHERE dataset = ?", (dataset,)
        ).fetchone()
        (new,) = db.execute("SELECT count(*) FROM temp.staged").fetchone()
        counts = (new - matched, old - matched, matched - unchanged, unchanged)
        staged.counts = (baseline, counts)
        return counts

    def _baseline_columns(self, dataset: str) -> tuple[str, ...] | None:
        row = self._db.execute(
            "SELECT columns FROM baseline WHERE dataset = ?", (dataset,)
        ).fetchone()
        return None if row is None else tuple(json.loads(row[0]))

    def _column_hash(self, column: str) -> hashlib.blake2b:
        """A keyed hash primed with the column's name, to copy for each value.

        The name keeps one value from having the same fingerprint in two
        columns (a phone and an alternate phone). Keyed BLAKE2b is a MAC on its
        own and several times faster than HMAC-SHA256 for short values.
        """
        base = hashlib.blake2b(key=self._fingerprint_key, digest_size=FINGERPRINT_SIZE)
        base.update(column.encode() + b"\0")
        return base


def _parked(dataset: str) -> str:
    """The quoted name of a data set's staged table while another is active."""
    name = "staged:" + dataset
    return '"' + name.replace('"', '""') + '"'


def _recorded_shape(name: str, recorded: Sequence[str]) -> DataSet | None:
    """Data set ``name`` in the shape whose declared columns begin ``recorded``
    (attendance's period shapes differ from the fourth on); None when no
    shape's do."""
    if name == "attendance":
        shapes = [attendance(shape, period_columns=1) for shape in PERIOD_SHAPES]
    else:
        shapes = [DATASETS[name]] if name in DATASETS else []
    for shape in shapes:
        names = shape.column_names
        if tuple(recorded[: len(names)]) == names:
            return shape
    return None


def _first_part(key: str) -> str:
    """SQL for the part of the key ``key`` (a column name) before its first
    separator: the row's ID, where the key starts with it and no ID holds one."""
    return f"substr({key}, 1, instr({key}, '{KEY_SEPARATOR}') - 1)"


def _numbered(repeats: Iterable[tuple[int, str, bytes]]) -> Iterator[tuple[str, bytes]]:
    """Key each repeat ``key#n``, n its place among its key's rows (the first is 1).

    ``repeats`` are the rows of ``sorted_row`` whose key is the one before
    theirs, in ``seq`` order: a run of repeats of one key has consecutive seqs.
    """
    last = n = 0
    for seq, key, columns in repeats:
        n = n + 1 if seq == last + 1 else 2
        last = seq
        yield f"{key}{REPEAT_MARK}{n}", columns


def _blocks(raw: IO[bytes]) -> Iterator[bytes]:
    """The rest of ``raw`` in blocks of about ``BLOCK_BYTES`` that end after CR LF.

    A CR LF inside a quoted value ends a block too, and four blocks' worth
    without one (a file with other line ends) are given as they are: pyarrow
    then fails to read the block, or it is not written again the same, and
    csv.reader takes over. No block is longer than five times ``BLOCK_BYTES``.
    """
    rest = b""
    while block := raw.read(BLOCK_BYTES):
        block = rest + block
        end = block.rfind(b"\r\n") + 2
        if end < 2:
            if len(block) < 4 * BLOCK_BYTES:
                rest = block
                continue
            end = len(block)
        rest = block[end:]
        yield block[:end]
    if rest:
        yield rest


def _written(columns: Sequence[pa.Array]) -> pa.Buffer:
    """The records holding ``columns``' values as the writer writes them."""
    sink = pa.BufferOutputStream()
    table = pa.Table.from_arrays(
        list(columns), names=[f"c{n}" for n in range(len(columns))]
    )
    pacsv.write_csv(table, sink, CSV_OPTIONS)
    written: pa.Buffer = sink.getvalue()
    return written


def _json_array(values: pa.Array) -> str:
    """``values`` (ASCII) as a JSON array of strings.

    Built with pyarrow where only quotes and backslashes need escaping, faster
    than making a str of each; values holding a control character go through
    ``json.dumps``.
    """
    if pc.any(pc.match_substring_regex(values, "[\\x00-\\x1f]")).as_py():
        return json.dumps(values.to_pylist())
    escaped = pc.replace_substring(values, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    text: str = _concatenated(escaped, '","').as_py()
    return f'["{text}"]' if len(values) else "[]"


def _concatenated(values: pa.Array, separator: str | bytes) -> pa.Scalar:
    """All of ``values`` (texts or bytes) in one, ``separator`` between them."""
    whole = pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)
    joined: pa.Scalar = pc.binary_join(whole, separator)[0]
    return joined


def _fingerprints(
    columns: Sequence[pa.Array],
    memos: Sequence[_Fingerprints],
    rule: KeyRule | None = None,
) -> pa.Array:
    """Each row's column fingerprints side by side, one binary value per row.

    Each distinct value of a column in the block is hashed (or looked up) once,
    and its fingerprint spread to the rows holding it. The key columns of
    ``rule.unprinted`` get ``NO_FINGERPRINT``, but in a row where a key column
    holds the separator (``_unambiguous``).
    """
    none = pa.scalar(NO_FINGERPRINT)
    keyed = rule.unprinted if rule is not None else ()
    plain = _unambiguous(columns, rule.positions) if rule is not None else None
    parts = []
    for i, (column, memo) in enumerate(zip(columns, memos, strict=True)):
        if i in keyed and plain is None:
            parts.append(none)
            continue
        encoded = pc.dictionary_encode(column)
        digests = pa.array(memo.of(encoded.dictionary), pa.binary())
        part = pc.take(digests, encoded.indices)
        parts.append(pc.if_else(plain, none, part) if i in keyed else part)
    prints = pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.binary()))
    if isinstance(prints, pa.Scalar):  # every column is a key column
        return pa.array([prints.as_py()] * len(columns[0]), pa.binary())
    joined: pa.Array = prints
    return joined


def _unambiguous(columns: Sequence[pa.Array], keyed: Sequence[int]) -> pa.Array | None:
    """The rows whose key columns at ``keyed`` join to a key that says what each
    holds (none holds the separator), as a mask; None when all rows' do, as
    always with a single column."""
    if len(keyed) < 2:
        return None
    marked = [pc.match_substring(columns[i], KEY_SEPARATOR) for i in keyed]
    found = functools.reduce(pc.or_, marked)
    if not pc.any(found).as_py():
        return None
    mask: pa.Array = pc.invert(found)
    return mask


def _ambiguous_key(row: Sequence[str], keyed: Sequence[int]) -> bool:
    """``_unambiguous`` for one row: whether its key columns need fingerprints."""
    return len(keyed) > 1 and any(KEY_SEPARATOR in row[i] for i in keyed)


class _Fingerprints(dict[str, bytes]):
    """One column's fingerprints, remembered for the values seen lately.

    Most columns repeat a few values (a reason code, a date, a grade), so most
    of their fingerprints are looked up rather than hashed again. At
    ``MEMO_VALUES`` values it starts over, so memory stays bounded whatever the
    column holds.
    """

    __slots__ = ("_base",)

    def __init__(self, base: hashlib.blake2b) -> None:
        super().__init__()
        self._base = base

    def __missing__(self, value: str) -> bytes:
        h = self._base.copy()
        h.update(value.encode())
        digest = h.digest()
        if len(self) >= MEMO_VALUES:
            self.clear()
        self[value] = digest
        return digest

    def of(self, distinct: pa.Array) -> list[bytes]:
        """The fingerprints of a block's distinct values (texts), in order.

        A block with more than ``MEMO_DISTINCT`` distinct values (IDs, names,
        phones) is hashed straight through, without the memo: there it would
        find next to nothing, and a miss costs twice a plain hash.
        """
        if len(distinct) <= MEMO_DISTINCT:
            return [self[value] for value in distinct.to_pylist()]
        copy = self._base.copy
        digests = []
        for value in distinct.cast(pa.binary()).to_pylist():
            h = copy()
            h.update(value)
            digests.append(h.digest())
        return digests


def _open(path: Path) -> sqlite3.Connection:
    """Connect to the store, creating its folder and an owner-only file."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The store names every student ID: keep it from other users.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        if path.stat().st_mode & 0o077:
            log.warning("gate state store %s was readable by others: now 0600", path)
            path.chmod(0o600)
        # isolation_level=None: transactions are begun and ended explicitly here.
        return sqlite3.connect(path, isolation_level=None, timeout=BUSY_SECONDS)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise _not_writable(path, exc) from exc
        raise ConnectorError(
            f"gate state store {path} cannot be opened ({exc}); check that the "
            "state folder exists and is writable"
        ) from exc
    except sqlite3.Error as exc:
        raise _store_error(path, exc) from exc


# SQLite's names for "the file or its folder may not be written", and for damage.
_NOT_WRITABLE = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def _roll_back(db: sqlite3.Connection) -> None:
    """Undo the open transaction, if SQLite has not undone it already (as it
    does on a full disk): the error that stopped it is the one to report."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _store_error(path: Path, exc: sqlite3.Error) -> ConnectorError:
    """Only real damage says so: moving a store aside throws its baselines away."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith(_NOT_WRITABLE):
        return _not_writable(path, exc)
    if name.startswith(_DAMAGED):
        return _damaged(path, str(exc))
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return ConnectorError(
            f"gate state store {path} is locked by another process (another "
            f"connector, or a tool holding it open) and stayed locked for "
            f"{BUSY_SECONDS:g} s; let it finish or close it, then run again",
            exit_code=ExitCode.LOCKED,
        )
    if name.startswith("SQLITE_FULL"):
        return ConnectorError(
            f"gate state store {path} cannot be written: no space left on the "
            f"device holding {path.parent}; free some space there (or point "
            "state.folder elsewhere) and run again"
        )
    return ConnectorError(
        f"gate state store {path} cannot be used ({exc}); run again, and if it "
        "repeats check the state folder's disk and permissions"
    )


def _damaged(path: Path, detail: str) -> ConnectorError:
    return ConnectorError(
        f"gate state store {path} is damaged ({detail}); move it aside "
        "to start over: the next send then has no baseline and is held "
        "because earlier sends are logged, until sent with --accept-change"
    )


def _not_writable(path: Path, exc: Exception) -> ConnectorError:
    return ConnectorError(
        f"state folder {path.parent} is not writable by this account ({exc}); let "
        f"it write {path.parent} and {path.name} there (the store keeps its "
        "journal beside it). Do not move the store aside: it holds the baselines"
    )


def _hold_reason(
    baseline: Baseline | None,
    rows: int,
    ids: int,
    removed: int | None = None,
    *,
    max_drop: float,
    allow_empty: bool,
) -> str | None:
    """Why the send must be held, as one sentence, or None to let it go."""
    if rows == 0:
        if allow_empty:
            return None
        if baseline is None:
            return "the export is empty"
        return (
            f"the export is empty (the last send on {baseline.sent_at[:10]} had "
            f"{baseline.rows} rows)"
        )
    if baseline is None:
        return None

    if removed and baseline.ids and removed / baseline.ids > max_drop:
        # Counts alone miss an export whose IDs were all replaced.
        return (
            f"{removed} of the {baseline.ids} IDs sent on {baseline.sent_at[:10]} "
            f"are gone ({removed / baseline.ids:.1%}; the limit is "
            f"{max_drop * 100:g}%)"
        )
    for what, before, after in (
        ("rows", baseline.rows, rows),
        ("distinct IDs", baseline.ids, ids),
    ):
        if before == 0 or after >= before:
            continue
        drop = (before - after) / before
        if drop > max_drop:
            return (
                f"{drop:.1%} fewer {what} than the last send on "
                f"{baseline.sent_at[:10]} ({before} -> {after}; the limit is "
                f"{max_drop * 100:g}%)"
            )
    return None


def _changed_columns(
    old_columns: Sequence[str],
    old: bytes,
    new_columns: Sequence[str],
    new: bytes,
) -> list[str]:
    """Names of the columns whose fingerprints differ, in the new export's order.

    A column that only one side has (a column added to or dropped from the data
    set since the baseline) counts as changed.
    """
    before = dict(zip(old_columns, _split(old), strict=False))
    after = dict(zip(new_columns, _split(new), strict=False))
    changed = [name for name in new_columns if before.get(name) != after.get(name)]
    return changed + [name for name in old_columns if name not in after]


def _split(fingerprints: bytes) -> Iterator[bytes]:
    for start in range(0, len(fingerprints), FINGERPRINT_SIZE):
        yield fingerprints[start : start + FINGERPRINT_SIZE]


def _write_list(out: IO[str], name: str, items: Iterable[Any]) -> None:
    """Write ``"name": [...]`` one item a line, streaming from ``items``.

    ``WRITE_ITEMS`` items at a time go out in one write: a list of millions of
    added keys is several times faster so than with a write per item.
    """
    out.write(f"  {json.dumps(name)}: [")
    lead = "\n    "
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, WRITE_ITEMS)):
        if all(type(item) is str for item in chunk):
            # A list of keys in one call: json.dumps puts the separator between
            # items and only brackets around them.
            text = json.dumps(chunk, separators=(",\n    ", ": "))[1:-1]
        else:
            text = ",\n    ".join(map(json.dumps, chunk))
        out.write(lead + text)
        lead = ",\n    "
    out.write("]" if lead == "\n    " else "\n  ]")


def _sha256(file: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: file.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _utc_now() -> str:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")
