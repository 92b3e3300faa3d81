"""The gate's fast staging path gives the keys and fingerprints of the plain one."""

import hashlib
import random
from pathlib import Path

import pytest

from connector import gate
from connector.datasets import ATTENDANCE, STUDENTS
from connector.errors import ExportError
from connector.gate import StateStore
from tests.test_gate import absence, student, write_export


def staged(store: StateStore) -> list[tuple[str, bytes]]:
    return list(store._db.execute("SELECT key, columns FROM temp.staged ORDER BY key"))


def plain_fingerprint(store: StateStore, row: tuple[str, ...]) -> bytes:
    """One keyed BLAKE2b per field, each primed with its column's name."""
    parts = []
    for name, value in zip(ATTENDANCE.column_names, row, strict=True):
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
