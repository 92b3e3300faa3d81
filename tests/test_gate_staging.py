"""The gate's fast staging path gives the keys and fingerprints of the plain one."""

import csv
import hashlib
import io
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import pytest

from connector import gate
from connector.datasets import ATTENDANCE, STUDENTS, DataSet
from connector.errors import ExportError
from connector.gate import StateStore, key_rule
from tests.test_gate import absence, student, write_export

Row2 = tuple[str, bytes]


def staged(store: StateStore) -> list[tuple[str, bytes]]:
    return list(store._db.execute("SELECT key, columns FROM temp.staged ORDER BY key"))


def plain_fingerprint(store: StateStore, row: tuple[str, ...]) -> bytes:
    """One keyed BLAKE2b per field, each primed with its column's name; eight
    zero bytes for the student ID (these rows' key columns hold no "|")."""
    parts = []
    for name, value in zip(ATTENDANCE.column_names, row, strict=True):
        if name == "student_id":
            assert "|" not in value
            parts.append(bytes(8))
            continue
        h = hashlib.blake2b(key=store._fingerprint_key, digest_size=8)
        h.update(name.encode() + b"\0" + value.encode())
        parts.append(h.digest())
    return b"".join(parts)


def test_runs_of_repeats_are_numbered_in_fingerprint_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Runs of one to five rows per key, shuffled; a memo of 3 values starts
    # over often, so remembered and freshly hashed fingerprints both appear.
    monkeypatch.setattr(gate, "MEMO_VALUES", 3)
    monkeypatch.setattr(gate, "MEMO_DISTINCT", 4)
    rng = random.Random(7)
    rows = [
        absence(f"S{n}", f"09/0{day}/2025", rng.choice(["EXC", "ILL"]), f"{k}")
        for n in range(40)
        for day in range(1, 4)
        for k in range(rng.randrange(1, 6))
    ]
    rng.shuffle(rows)
    export = write_export(tmp_path / "a.csv", ATTENDANCE, rows)

    with StateStore(tmp_path / "gate.sqlite") as store:
        diff = store.compare(ATTENDANCE, export)
        expected = []
        by_key: dict[str, list[bytes]] = {}
        for row in rows:
            key = f"{row[0]}|{row[2]}"
            by_key.setdefault(key, []).append(plain_fingerprint(store, row))
        for key, prints in by_key.items():
            for n, fingerprint in enumerate(sorted(prints), start=1):
                expected.append((key if n == 1 else f"{key}#{n}", fingerprint))
        assert staged(store) == sorted(expected)
    assert (diff.rows, diff.ids, diff.added) == (len(rows), 40, len(rows))


def test_a_row_of_the_wrong_width_is_named_by_its_line(tmp_path: Path) -> None:
    export = write_export(tmp_path / "s.csv", STUDENTS, [student(0), student(1)])
    lines = export.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(',"F"', "")
    export.write_text("".join(lines), newline="")
    with StateStore(tmp_path / "gate.sqlite") as store:
        with pytest.raises(ExportError, match=r"s\.csv, line 3: 9 fields where"):
            store.compare(STUDENTS, export)


def test_each_data_set_stays_staged_until_its_record(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A run compares every data set before sending, then records each: the
    # exports are staged once, and each record stores its own data set's rows.
    kids = write_export(tmp_path / "s.csv", STUDENTS, [student(n) for n in range(5)])
    days = [absence(f"S{1000 + n}", "09/02/2025") for n in range(3)]
    absences = write_export(tmp_path / "a.csv", ATTENDANCE, days)
    loads = []
    load = StateStore._load
    monkeypatch.setattr(
        StateStore, "_load", lambda self, *a: loads.append(a[0].name) or load(self, *a)
    )
    with StateStore(tmp_path / "gate.sqlite") as store:
        assert store.compare(STUDENTS, kids).added == 5
        assert store.compare(ATTENDANCE, absences).added == 3
        store.write_diff(STUDENTS, kids, tmp_path / "s.json")
        assert store.record(STUDENTS, kids, run_id="r").rows == 5
        assert store.record(ATTENDANCE, absences, run_id="r").rows == 3
        assert loads == ["students", "attendance"]

        # A changed file is staged again, the other data set stays as it was.
        days.append(absence("S1009", "09/03/2025"))
        write_export(absences, ATTENDANCE, days)
        assert store.compare(ATTENDANCE, absences).added == 1
        assert store.compare(STUDENTS, kids).unchanged == 5
        assert store.compare(ATTENDANCE, absences).added == 1
        assert loads == ["students", "attendance", "attendance"]

    with StateStore(tmp_path / "gate.sqlite") as store:
        assert store.compare(STUDENTS, kids).unchanged == 5
        assert store.compare(ATTENDANCE, absences).unchanged == 3


def test_a_refused_export_leaves_the_other_staged_data_set(tmp_path: Path) -> None:
    kids = write_export(tmp_path / "s.csv", STUDENTS, [student(n) for n in range(5)])
    twice = write_export(tmp_path / "t.csv", STUDENTS, [student(1), student(1)])
    days = [absence("S1000", "09/02/2025")]
    absences = write_export(tmp_path / "a.csv", ATTENDANCE, days)
    with StateStore(tmp_path / "gate.sqlite") as store:
        store.compare(ATTENDANCE, absences)
        store.compare(STUDENTS, kids)
        with pytest.raises(ExportError, match="more than one row"):
            store.compare(STUDENTS, twice)
        assert store.record(ATTENDANCE, absences, run_id="r").rows == 1
        assert store.record(STUDENTS, kids, run_id="r").rows == 5
        assert store.compare(STUDENTS, kids).unchanged == 5


def old_fingerprints(store: StateStore, dataset: DataSet, path: Path) -> list[Row2]:
    """The staged rows by their definition, read with ``csv.reader``: the key,
    and per column a keyed hash of its name and value, or eight zero bytes for a
    key column: every one where IDs are unique, all but the last where keys may
    repeat, none where the key has several columns and one of them holds "|"."""
    rule = key_rule(dataset)
    unprinted = rule.positions if dataset.unique_ids else rule.positions[:-1]
    rows = []
    with path.open(newline="", encoding="ascii") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            parts = []
            keyed = rule.positions
            hashed = len(keyed) > 1 and any("|" in row[i] for i in keyed)
            for i, (name, value) in enumerate(
                zip(dataset.column_names, row, strict=True)
            ):
                if i in unprinted and not hashed:
                    parts.append(bytes(8))
                    continue
                h = hashlib.blake2b(key=store._fingerprint_key, digest_size=8)
                h.update(name.encode() + b"\0")
                h.update(value.encode())
                parts.append(h.digest())
            rows.append((rule.key(row), b"".join(parts)))
    return sorted(rows)


def staged_rows(store: StateStore, dataset: DataSet, path: Path) -> list[Row2]:
    """What ``_load`` puts in ``staged_row`` for ``path``: keys and fingerprints."""
    db = store._db
    db.execute("BEGIN")
    try:
        for statement in gate._STAGE:
            db.execute(statement)
        with path.open("rb") as raw:
            store._load(dataset, path, raw)
        return sorted(db.execute("SELECT key, columns FROM temp.staged_row"))
    finally:
        db.execute("ROLLBACK")


HOSTILE = [
    "",
    '"',
    '""',
    ",",
    '","',
    "a,b",
    'say "hi"',
    '"quoted"',
    " lead and trail ",
    "x|y",
    "|",
    "#2",
    "back\\slash",
    "tab\there",
    "\x01ctl",
]


def hostile_rows(rng: random.Random, count: int, width: int) -> list[tuple[str, ...]]:
    rows = []
    for n in range(count):
        row = [rng.choice(HOSTILE + [f"v{n % 7}", f"S{n % 13}"]) for _ in range(width)]
        rows.append(tuple(row))
    return rows + rows[: count // 5]  # repeated rows, so repeated keys


@pytest.mark.parametrize("dataset", [ATTENDANCE, STUDENTS], ids=lambda d: d.name)
@pytest.mark.parametrize("block", [64, 1 << 18])
def test_columnar_loading_stages_what_row_by_row_did(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dataset: DataSet, block: int
) -> None:
    # Small blocks split the file in many places; every block goes the
    # columnar way (csv.reader is never asked), and gives the old rows.
    monkeypatch.setattr(gate, "BLOCK_BYTES", block)
    monkeypatch.setattr(gate, "MEMO_VALUES", 5)
    monkeypatch.setattr(gate, "MEMO_DISTINCT", 6)
    rows = hostile_rows(random.Random(block), 400, len(dataset.columns))
    export = write_export(tmp_path / "x.csv", dataset, rows)
    with StateStore(tmp_path / "gate.sqlite") as store:
        expected = old_fingerprints(store, dataset, export)
        monkeypatch.setattr(StateStore, "_load_rows", None)
        assert staged_rows(store, dataset, export) == expected
        assert len(expected) == len(rows)


@pytest.mark.parametrize("dataset", [ATTENDANCE, STUDENTS], ids=lambda d: d.name)
def test_csv_reader_loading_stages_the_same_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dataset: DataSet
) -> None:
    # The same hostile values, with the columnar way turned away at once.
    rows = hostile_rows(random.Random(3), 400, len(dataset.columns))
    export = write_export(tmp_path / "x.csv", dataset, rows)
    with StateStore(tmp_path / "gate.sqlite") as store:
        expected = old_fingerprints(store, dataset, export)
        monkeypatch.setattr(StateStore, "_load_columns", lambda *a: None)
        assert staged_rows(store, dataset, export) == expected


@pytest.mark.parametrize("block", [64, 1 << 18])
def test_an_id_holding_the_key_separator_keeps_its_whole_id(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, block: int
) -> None:
    # "S|1" and "S" share the key's first part: read from the keys, the IDs
    # would be one. Small blocks put the "S|1" row in a block of its own.
    monkeypatch.setattr(gate, "BLOCK_BYTES", block)
    rows = [
        absence("S", "09/02/2025"),
        absence("S2", "09/02/2025"),
        absence("S|1", "09/02/2025"),
        absence("S", "09/03/2025"),
    ]
    export = write_export(tmp_path / "a.csv", ATTENDANCE, rows)
    with StateStore(tmp_path / "gate.sqlite") as store:
        got = staged_rows(store, ATTENDANCE, export)
        assert [key for key, _ in got] == [
            "S2|09/02/2025",
            "S|09/02/2025",
            "S|09/03/2025",
            "S|1|09/02/2025",
        ]
        assert got == old_fingerprints(store, ATTENDANCE, export)
        diff = store.compare(ATTENDANCE, export)
    assert (diff.rows, diff.ids) == (4, 3)


@pytest.mark.parametrize(
    "shape",
    ["lf", "unquoted", "newline-in-value", "nul", "no-final-crlf", "empty-line-end"],
)
def test_a_file_in_another_shape_is_read_as_csv_reader_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shape: str
) -> None:
    monkeypatch.setattr(gate, "BLOCK_BYTES", 64)
    rows = [absence(f"S{n}", f"09/0{1 + n % 9}/2025", "EXC", f"{n}") for n in range(30)]
    export = write_export(tmp_path / "a.csv", ATTENDANCE, rows)
    data = export.read_bytes()
    if shape == "lf":
        data = data.replace(b"\r\n", b"\n")
    elif shape == "unquoted":
        data = data.replace(b'"S1"', b"S1").replace(b'"S2",', b'S"2",')
    elif shape == "newline-in-value":
        data = data.replace(b'"EXC","09/05', b'"E\r\nXC","09/05')
    elif shape == "nul":
        data = data.replace(b'"S3"', b'"S\x003"')
    elif shape == "no-final-crlf":
        data = data[:-2]
    export.write_bytes(data)
    if shape == "empty-line-end":
        with StateStore(tmp_path / "gate.sqlite") as store:
            export.write_bytes(data + b"\r\n")
            with pytest.raises(ExportError, match=r"a\.csv, line 32: 0 fields where"):
                store.compare(ATTENDANCE, export)
        return
    fallbacks = []
    load_rows = StateStore._load_rows
    monkeypatch.setattr(
        StateStore,
        "_load_rows",
        lambda self, *a: fallbacks.append(1) or load_rows(self, *a),
    )
    with StateStore(tmp_path / "gate.sqlite") as store:
        assert staged_rows(store, ATTENDANCE, export) == old_fingerprints(
            store, ATTENDANCE, export
        )
    assert fallbacks == [1]


def old_write_list(out: IO[str], name: str, items: Iterable[Any]) -> None:
    """``_write_list`` as it was, one write per item."""
    out.write(f"  {json.dumps(name)}: [")
    first = True
    for item in items:
        out.write("\n    " if first else ",\n    ")
        out.write(json.dumps(item))
        first = False
    out.write("]" if first else "\n  ]")


@pytest.mark.parametrize("count", [0, 1, 2, 9_999, 10_000, 10_001, 25_003])
def test_diff_lists_are_written_as_before(count: int) -> None:
    keys = [f'S{n}|09/02/2025#{n % 3}"\\' for n in range(count)]
    changes = [{"id": key, "columns": ["Phone", "Email"]} for key in keys]
    for items in (keys, changes):
        old, new = io.StringIO(), io.StringIO()
        old_write_list(old, "added", iter(items))
        gate._write_list(new, "added", iter(items))
        assert new.getvalue() == old.getvalue()
