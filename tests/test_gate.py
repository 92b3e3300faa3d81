import csv
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import gate
from connector.datasets import ATTENDANCE, STAFF, STUDENTS, DataSet, attendance
from connector.errors import ConnectorError, ExportError
from connector.gate import StateStore, key_rule

from .conftest import require

Row = tuple[str, ...]


def write_export(path: Path, dataset: DataSet, rows: Sequence[Row]) -> Path:
    """An export as the connector writes it: all quoted, CR LF, header first."""
    with path.open("w", newline="", encoding="ascii") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(dataset.headers)
        writer.writerows(rows)
    return path


def student(n: int, phone: str | None = None) -> Row:
    """An invented student; phones are 617-555-01xx style, unique per student."""
    return (
        f"S{1000 + n}",
        "Amadeo",
        f"Quillfeather{n}",
        phone if phone is not None else f"617555{n:04d}",
        "101",
        "en",
        f"508555{n:04d}",
        f"family{n}@example.org",
        "5",
        "F",
    )


def students(count: int) -> list[Row]:
    return [student(n) for n in range(count)]


def absence(student_id: str, date: str, code: str = "EXC", periods: str = "") -> Row:
    return (student_id, code, date, periods)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state" / "gate.sqlite") as opened:
        yield opened


def test_compare_first_send_has_no_baseline(store: StateStore, tmp_path: Path) -> None:
    export = write_export(tmp_path / "students.csv", STUDENTS, students(20))

    diff = store.compare(STUDENTS, export)

    assert diff.baseline is None
    assert (diff.rows, diff.ids, diff.added, diff.removed) == (20, 20, 20, 0)
    assert (diff.changed, diff.unchanged, diff.held, diff.reason) == (0, 0, False, None)
    assert store.baseline("students") is None


def test_compare_identical_after_record_is_unchanged(
    store: StateStore, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "students.csv", STUDENTS, students(20))
    recorded = store.record(STUDENTS, export, run_id="run-1")
    copy = write_export(tmp_path / "copy.csv", STUDENTS, students(20))

    diff = store.compare(STUDENTS, copy)

    assert diff.baseline == recorded
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (0, 0, 0, 20)
    assert not diff.held
    assert recorded.rows == recorded.ids == 20
    assert recorded.sent_at.endswith("Z") and recorded.run_id == "run-1"
    assert len(recorded.sha256) == 64


def test_compare_holds_a_drop_over_the_limit(store: StateStore, tmp_path: Path) -> None:
    rows = students(50)
    baseline = store.record(
        STUDENTS, write_export(tmp_path / "a.csv", STUDENTS, rows), run_id="r1"
    )

    diff = store.compare(
        STUDENTS, write_export(tmp_path / "b.csv", STUDENTS, rows[10:])
    )

    assert diff.held
    assert diff.reason == (
        f"10 of the 50 IDs sent on {baseline.sent_at[:10]} are gone "
        "(20.0%; the limit is 10%)"
    )
    assert (diff.removed, diff.unchanged) == (10, 40)
    assert diff.as_dict()["held"] is True


def test_compare_holds_ids_replaced_even_when_the_count_stays(
    store: StateStore, tmp_path: Path
) -> None:
    rows = students(50)
    store.record(STUDENTS, write_export(tmp_path / "a.csv", STUDENTS, rows), run_id="r")
    renamed = [("T" + r[0][1:], *r[1:]) for r in rows]

    diff = store.compare(STUDENTS, write_export(tmp_path / "b.csv", STUDENTS, renamed))

    assert (diff.rows, diff.added, diff.removed) == (50, 50, 50)
    assert diff.held and diff.reason is not None
    assert diff.reason.startswith("50 of the 50 IDs sent on")


def test_a_damaged_store_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConnectorError) as info:
        StateStore(path)
    assert str(info.value).startswith(f"gate state store {path} is damaged")
    assert "move it aside" in str(info.value)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system of 300 KiB (tmpfs): a store there fills it."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(folder)],
        capture_output=True,
    )
    require(mounted.returncode == 0, "mounting a tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_under_the_store_says_so_and_keeps_its_baseline(
    small_disk: Path, tmp_path: Path
) -> None:
    first = write_export(tmp_path / "a.csv", STUDENTS, students(50))
    bigger = write_export(tmp_path / "b.csv", STUDENTS, students(20_000))
    with StateStore(small_disk / "state.sqlite") as store:
        store.record(STUDENTS, first, run_id="r1")
        with pytest.raises(ConnectorError) as info:
            store.record(STUDENTS, bigger, run_id="r2")
        # SQLite undid the transaction itself: its full disk is the error, not
        # "cannot rollback - no transaction is active".
        assert "no space left on the device" in str(info.value)
        assert "state.folder" in str(info.value)
        baseline = store.baseline("students")
    assert baseline is not None and (baseline.run_id, baseline.rows) == ("r1", 50)


def test_a_store_readable_by_others_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateStore(path).close()
    path.chmod(0o644)
    StateStore(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_compare_passes_a_drop_within_the_limit(
    store: StateStore, tmp_path: Path
) -> None:
    rows = students(40)
    store.record(STUDENTS, write_export(tmp_path / "a.csv", STUDENTS, rows), run_id="r")

    diff = store.compare(STUDENTS, write_export(tmp_path / "b.csv", STUDENTS, rows[2:]))

    assert not diff.held and diff.reason is None
    assert diff.removed == 2


def test_compare_limit_is_configurable_and_growth_never_held(
    store: StateStore, tmp_path: Path
) -> None:
    rows = students(40)
    store.record(STUDENTS, write_export(tmp_path / "a.csv", STUDENTS, rows), run_id="r")
    fewer = write_export(tmp_path / "b.csv", STUDENTS, rows[2:])
    more = write_export(tmp_path / "c.csv", STUDENTS, students(400))

    assert store.compare(STUDENTS, fewer, max_drop=0.025).held
    assert "the limit is 2.5%" in str(
        store.compare(STUDENTS, fewer, max_drop=0.025).reason
    )
    assert not store.compare(STUDENTS, more, max_drop=0).held
    with pytest.raises(ValueError):
        store.compare(STUDENTS, fewer, max_drop=10)


def test_compare_holds_a_drop_in_distinct_ids(
    store: StateStore, tmp_path: Path
) -> None:
    # The same number of absences, but spread over half the students.
    before = [absence(f"S{n}", f"09/{d:02d}/2025") for n in range(10) for d in (1, 2)]
    after = [
        absence(f"S{n}", f"09/{d:02d}/2025") for n in range(5) for d in range(1, 5)
    ]
    store.record(
        ATTENDANCE, write_export(tmp_path / "a.csv", ATTENDANCE, before), run_id="r"
    )

    diff = store.compare(
        ATTENDANCE, write_export(tmp_path / "b.csv", ATTENDANCE, after)
    )

    assert (diff.rows, diff.ids) == (20, 5)
    assert diff.held
    assert diff.reason is not None
    assert diff.reason.startswith("50.0% fewer distinct IDs than the last send on ")
    assert diff.reason.endswith("(10 -> 5; the limit is 10%)")


@pytest.mark.parametrize("has_baseline", [False, True], ids=["first", "later"])
@pytest.mark.parametrize("allow_empty", [False, True], ids=["held", "allowed"])
def test_compare_empty_export(
    store: StateStore, tmp_path: Path, has_baseline: bool, allow_empty: bool
) -> None:
    if has_baseline:
        rows = [absence("S1", "09/02/2025"), absence("S2", "09/02/2025")]
        export = write_export(tmp_path / "a.csv", ATTENDANCE, rows)
        store.record(ATTENDANCE, export, run_id="r")
    empty = write_export(tmp_path / "empty.csv", ATTENDANCE, [])

    diff = store.compare(ATTENDANCE, empty, allow_empty=allow_empty)

    assert diff.rows == 0
    assert diff.held is not allow_empty
    if allow_empty:
        assert diff.reason is None
    else:
        assert diff.reason is not None and diff.reason.startswith("the export is empty")
    assert diff.removed == (2 if has_baseline else 0)


def test_write_diff_names_changed_columns_never_values(
    store: StateStore, tmp_path: Path
) -> None:
    rows = students(30)
    old_phone, new_phone = rows[7][3], "7815559876"
    store.record(
        STUDENTS, write_export(tmp_path / "a.csv", STUDENTS, rows), run_id="r1"
    )
    rows[7] = student(7, phone=new_phone)
    del rows[3]
    rows.append(student(99))
    export = write_export(tmp_path / "b.csv", STUDENTS, rows)

    diff = store.compare(STUDENTS, export)
    report = store.write_diff(STUDENTS, export, tmp_path / "reports" / "diff.json")
    store.record(STUDENTS, export, run_id="r2")
    store.close()

    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (1, 1, 1, 28)
    content = json.loads(report.read_text())
    assert content["counts"] == {
        "rows": 30,
        "ids": 30,
        "added": 1,
        "removed": 1,
        "changed": 1,
        "unchanged": 28,
    }
    assert content["added"] == ["S1099"]
    assert content["removed"] == ["S1003"]
    assert content["changed"] == [{"id": "S1007", "columns": ["phone"]}]
    assert content["baseline"]["run_id"] == "r1"
    assert [p.name for p in report.parent.iterdir()] == ["diff.json"]

    report_bytes = report.read_bytes()
    stored = (tmp_path / "state" / "gate.sqlite").read_bytes()
    assert not (tmp_path / "state" / "gate.sqlite-journal").exists()
    for value in (old_phone, new_phone, "Quillfeather7", "family7@example.org"):
        assert value.encode() not in report_bytes
        assert value.encode() not in stored
    for row in rows:
        assert row[3].encode() not in stored and row[6].encode() not in stored
    assert b"S1007" in stored


def test_attendance_repeats_are_numbered(store: StateStore, tmp_path: Path) -> None:
    rows = [
        absence("S1", "09/02/2025", "EXC", "1"),
        absence("S1", "09/02/2025", "UNX", "2"),
        absence("S1", "09/03/2025"),
        absence("S2", "09/02/2025"),
    ]
    first = write_export(tmp_path / "a.csv", ATTENDANCE, rows)

    report = store.write_diff(ATTENDANCE, first, tmp_path / "first.json")
    store.record(ATTENDANCE, first, run_id="r")
    # The same records in another order compare equal; a change to one of the
    # repeated rows is one change.
    shuffled = write_export(tmp_path / "b.csv", ATTENDANCE, rows[::-1])
    same = store.compare(ATTENDANCE, shuffled)
    rows[0] = absence("S1", "09/02/2025", "EXC", "1,3")
    changed = store.compare(
        ATTENDANCE, write_export(tmp_path / "c.csv", ATTENDANCE, rows)
    )

    assert json.loads(report.read_text())["added"] == [
        "S1|09/02/2025",
        "S1|09/02/2025#2",
        "S1|09/03/2025",
        "S2|09/02/2025",
    ]
    assert (same.rows, same.ids, same.unchanged, same.changed) == (4, 2, 4, 0)
    # Repeats are numbered in fingerprint order, so the changed row may swap
    # numbers with its twin: one or two changes, never an addition or removal.
    assert (changed.added, changed.removed) == (0, 0)
    assert changed.changed in (1, 2)
    assert changed.unchanged == 4 - changed.changed


def test_key_rule_of_each_data_set() -> None:
    assert key_rule(STUDENTS).key(("S1", "a")) == "S1"
    assert key_rule(STUDENTS).is_unique and key_rule(STAFF).is_unique
    assert key_rule(ATTENDANCE).key(("S1", "EXC", "09/02/2025", "")) == "S1|09/02/2025"
    assert not key_rule(ATTENDANCE).is_unique


@pytest.mark.parametrize(
    "content",
    [
        b'"Staff ID","Last Name"\r\n"T1","Ray"\r\n',
        b'"Student ID","First Name"\r\n',
        b"",
        b'"Student ID","First Name","Last Name","Phone","School","Language",'
        b'"Alternate Phone","Email","Grade","Gender"\r\n"S1","Only two"\r\n',
        b'"Student ID","First Name","Last Name","Phone","School","Language",'
        b'"Alternate Phone","Email","Grade","Gender"\r\n"S1","Zo\xc3\xab"\r\n',
    ],
    ids=["staff-header", "short-header", "no-header", "short-row", "not-ascii"],
)
def test_compare_refuses_a_file_that_is_not_the_data_set(
    store: StateStore, tmp_path: Path, content: bytes
) -> None:
    export = tmp_path / "students.csv"
    export.write_bytes(content)

    with pytest.raises(ExportError, match="students.csv"):
        store.compare(STUDENTS, export)


def test_compare_refuses_a_repeated_student_id(
    store: StateStore, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "s.csv", STUDENTS, [student(1), student(1)])

    with pytest.raises(ExportError, match="more than one row"):
        store.compare(STUDENTS, export)


def test_record_replaces_the_previous_baseline(
    store: StateStore, tmp_path: Path
) -> None:
    store.record(
        STUDENTS, write_export(tmp_path / "a.csv", STUDENTS, students(30)), run_id="r1"
    )
    second = write_export(tmp_path / "b.csv", STUDENTS, students(10))

    recorded = store.record(STUDENTS, second, run_id="r2")
    diff = store.compare(STUDENTS, second)

    assert store.baseline("students") == recorded
    assert (recorded.rows, recorded.run_id) == (10, "r2")
    assert (diff.added, diff.removed, diff.unchanged) == (0, 0, 10)
    # Other data sets keep their own baselines.
    assert store.baseline("staff") is None


def test_record_writes_what_changed_and_keeps_other_data_sets(
    store: StateStore, tmp_path: Path
) -> None:
    # The second record writes only the difference; the store must then hold
    # exactly the second export's fingerprints, repeats numbered as always.
    def fingerprints(dataset: str) -> list[tuple[str, bytes]]:
        return store._db.execute(
            "SELECT key, columns FROM fingerprint WHERE dataset = ? ORDER BY key",
            (dataset,),
        ).fetchall()

    kids = write_export(tmp_path / "s.csv", STUDENTS, students(3))
    store.record(STUDENTS, kids, run_id="r0")
    kept = fingerprints("students")
    day, other = "09/02/2025", "09/03/2025"
    first = [absence("S1", day), absence("S1", day, "ILL"), absence("S2", day)]
    first += [absence("S3", day), absence("S4", other)]
    store.record(
        ATTENDANCE, write_export(tmp_path / "a.csv", ATTENDANCE, first), run_id="r1"
    )
    # S2 changed, S3 removed, S5 added, S1 keeps both rows, S4 as it was.
    second = [absence("S1", day, "ILL"), absence("S1", day), absence("S4", other)]
    second += [absence("S2", day, "UNX"), absence("S5", day)]
    export = write_export(tmp_path / "b.csv", ATTENDANCE, second)
    diff = store.compare(ATTENDANCE, export)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (1, 1, 1, 3)
    staged = store._db.execute(
        "SELECT key, columns FROM temp.staged ORDER BY key"
    ).fetchall()

    store.record(ATTENDANCE, export, run_id="r2")

    assert fingerprints("attendance") == staged
    assert [key for key, _ in staged] == [
        f"S1|{day}",
        f"S1|{day}#2",
        f"S2|{day}",
        f"S4|{other}",
        f"S5|{day}",
    ]
    assert fingerprints("students") == kept
    assert store.compare(ATTENDANCE, export).unchanged == 5
    # A change alone (nothing added or removed) is written too.
    second[2] = absence("S4", other, "UNX")
    again = write_export(tmp_path / "c.csv", ATTENDANCE, second)
    assert store.compare(ATTENDANCE, again).changed == 1
    store.record(ATTENDANCE, again, run_id="r3")
    assert store.compare(ATTENDANCE, again).unchanged == 5


def test_record_after_a_refused_file_keeps_the_baseline(
    store: StateStore, tmp_path: Path
) -> None:
    good = write_export(tmp_path / "a.csv", STUDENTS, students(5))
    recorded = store.record(STUDENTS, good, run_id="r1")
    bad = write_export(tmp_path / "b.csv", STAFF, [])

    with pytest.raises(ExportError):
        store.record(STUDENTS, bad, run_id="r2")

    assert store.baseline("students") == recorded
    assert store.compare(STUDENTS, good).unchanged == 5


def test_reopening_keeps_the_baseline_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "gate.sqlite"
    export = write_export(tmp_path / "a.csv", STUDENTS, students(12))
    with StateStore(path) as store:
        recorded = store.record(STUDENTS, export, run_id="r1")
    with closing(sqlite3.connect(path)) as db:
        key = db.execute("SELECT value FROM meta").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]

    with StateStore(path) as store:
        baseline = store.baseline("students")
        diff = store.compare(STUDENTS, export)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT value FROM meta").fetchone()[0] == key

    assert baseline == recorded
    assert diff.unchanged == 12 and diff.changed == 0
    assert version == gate.SCHEMA_VERSION == 2 and len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


VERSION_1 = Path(__file__).parent / "data" / "gate-v1"


def version_1_store(tmp_path: Path, folder: Path = VERSION_1) -> Path:
    """A copy of a store that schema version 1 wrote, with the exports it
    recorded beside it; returns the store's path."""
    for name in ("state.sqlite", "students.csv", "attendance.csv"):
        if (folder / name).exists():
            shutil.copy(folder / name, tmp_path / name)
    path = tmp_path / "state.sqlite"
    path.chmod(0o600)
    return path


def key_slots(path: Path) -> dict[str, list[bytes]]:
    """Per stored key, its key columns' fingerprints."""
    with closing(sqlite3.connect(path)) as db:
        keys = dict(db.execute("SELECT dataset, key_columns FROM baseline"))
        recorded = dict(db.execute("SELECT dataset, columns FROM baseline"))
        found = {}
        for dataset, key, prints in db.execute(
            "SELECT dataset, key, columns FROM fingerprint"
        ):
            names = json.loads(recorded[dataset])
            slots = [names.index(c) for c in json.loads(keys[dataset])]
            found[key] = [prints[8 * i : 8 * i + 8] for i in slots]
    return found


ZERO = bytes(8)


def test_a_version_1_store_keeps_its_baselines(tmp_path: Path) -> None:
    # tests/data/gate-v1 holds a store written by schema version 1, which
    # fingerprinted the key columns too, after a send of the two exports
    # beside it (attendance with a repeated key, numbered #2, and an ID
    # holding the key separator).
    path = version_1_store(tmp_path)
    kids, days = tmp_path / "students.csv", tmp_path / "attendance.csv"
    with StateStore(path) as store:
        assert store.baseline("students").run_id == "20251001T020000Z-v1"  # type: ignore[union-attr]
        same = store.compare(STUDENTS, kids)
        absences = store.compare(ATTENDANCE, days)
    assert (same.unchanged, same.changed, same.added, same.removed) == (6, 0, 0, 0)
    assert (absences.unchanged, absences.changed, absences.ids) == (6, 0, 5)

    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        keys = dict(db.execute("SELECT dataset, key_columns FROM baseline"))
    assert keys == {
        "students": '["student_id"]',
        "attendance": '["student_id", "absence_date"]',
    }
    # The student ID zero; the date, the key's last column where keys may
    # repeat, hashed; both hashed where the key's columns cannot be told apart.
    for key, slots in key_slots(path).items():
        if "|" not in key:  # students
            assert slots == [ZERO], key
        elif key == "S|1004|09/03/2025":
            assert ZERO not in slots
        else:
            assert slots[0] == ZERO and slots[1] != ZERO, key

    # A change after the conversion is one, named by its column.
    with kids.open(newline="") as f:
        rows = [tuple(r) for r in csv.reader(f)][1:]
    rows[2] = (*rows[2][:3], "6175559999", *rows[2][4:])
    write_export(kids, STUDENTS, rows)
    with StateStore(path) as store:
        diff = store.compare(STUDENTS, kids)
        report = store.write_diff(STUDENTS, kids, tmp_path / "changes.json")
    assert (diff.changed, diff.unchanged) == (1, 5)
    changed = json.loads(report.read_text())["changed"]
    assert changed == [{"id": "S1002", "columns": ["phone"]}]


def test_a_version_1_baseline_is_converted_for_the_shape_it_was_sent_in(
    tmp_path: Path,
) -> None:
    # An event-shaped baseline (the key holds the period) first asked about
    # with the day shape, as after a config changed back and forth: the
    # conversion follows the recorded columns, not the shape of the call.
    path = version_1_store(tmp_path, VERSION_1 / "event")
    days = tmp_path / "attendance.csv"
    event = attendance("event")
    with StateStore(path) as store:
        with pytest.raises(ExportError, match="header row is not"):
            store.compare(ATTENDANCE, days)
        diff = store.compare(event, days)
    assert (diff.unchanged, diff.changed, diff.ids) == (4, 0, 3)
    for key, slots in key_slots(path).items():
        if key == "S|1002|09/03/2025|3":
            assert ZERO not in slots
        else:  # the period, the key's last column, stays hashed
            assert slots[:2] == [ZERO, ZERO] and slots[2] != ZERO, key


def test_a_damaged_version_1_store_is_said_to_be_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    path = version_1_store(tmp_path)
    damaged = bytearray(path.read_bytes())
    damaged[20480] = 0xFF  # the fingerprint table's page is of no known type
    path.write_bytes(damaged)
    with pytest.raises(
        ConnectorError, match=r"is damaged \(\*\*\* in database main \*\*\* Page 6"
    ) as error:
        StateStore(path)
    assert "\n" not in str(error.value)
    # Not marked upgraded: the older connector would then only say "newer".
    assert path.read_bytes() == damaged
    assert int.from_bytes(damaged[60:64], "big") == 1  # the header's user_version


def test_a_value_that_reads_like_a_numbered_repeat_is_still_compared(
    store: StateStore, tmp_path: Path
) -> None:
    # Two rows of period 1 are keyed S1|...|1 and S1|...|1#2; a real period
    # "1#2" the next night has that second key, and must show as a change.
    event = attendance("event")
    day = "12/01/2026"
    nights = [
        [("S1", "EXC", day, "1"), ("S1", "EXC", day, "1")],
        [("S1", "EXC", day, "1"), ("S1", "EXC", day, "1#2")],
        [("S1", "EXC", day, "1"), ("S1", "EXC", day, "1")],
    ]
    changed = []
    for n, rows in enumerate(nights):
        export = write_export(tmp_path / f"night{n}.csv", event, rows)
        diff = store.compare(event, export)
        report = store.write_diff(event, export, tmp_path / f"changes{n}.json")
        store.record(event, export, run_id=f"r{n}")
        changed.append((diff.changed, json.loads(report.read_text())["changed"]))
    change = [{"id": f"S1|{day}|1#2", "columns": ["period"]}]
    assert changed == [(0, []), (1, change), (1, change)]


def test_key_columns_that_join_to_one_key_still_compare_by_their_values(
    store: StateStore, tmp_path: Path
) -> None:
    # ("A|10/01/2025", ..., "3") and ("A", ..., "10/02/2025|3") join to one key.
    event = attendance("event")
    before = [
        ("A|10/01/2025", "EXC", "10/02/2025", "3"),
        ("B", "EXC", "10/02/2025", "1"),
    ]
    after = [
        ("A", "EXC", "10/01/2025", "10/02/2025|3"),
        ("B", "EXC", "10/02/2025", "1"),
    ]
    store.record(event, write_export(tmp_path / "a.csv", event, before), run_id="r1")
    export = write_export(tmp_path / "b.csv", event, after)
    diff = store.compare(event, export)
    report = store.write_diff(event, export, tmp_path / "changes.json")
    assert (diff.changed, diff.unchanged) == (1, 1)
    changed = json.loads(report.read_text())["changed"]
    assert changed == [
        {
            "id": "A|10/01/2025|10/02/2025|3",
            "columns": ["student_id", "absence_date", "period"],
        }
    ]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gate.sqlite"
    StateStore(path).close()
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 9")

    with pytest.raises(ConnectorError, match="schema version 9"):
        StateStore(path)


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gate.sqlite"
    path.write_bytes(b"not a database, just some text" * 100)

    with pytest.raises(ConnectorError, match="gate.sqlite"):
        StateStore(path)


def test_diff_as_dict_holds_counts_only(store: StateStore, tmp_path: Path) -> None:
    export = write_export(tmp_path / "a.csv", STUDENTS, students(3))
    store.record(STUDENTS, export, run_id="r1")

    as_dict = store.compare(STUDENTS, export).as_dict()

    assert as_dict["unchanged"] == 3 and as_dict["baseline"]["run_id"] == "r1"
    assert "S1000" not in json.dumps(as_dict)


# A night's students: IDs from a small pool, a phone and a grade from small
# sets, so that nights share IDs and change a value now and then.
_nights = st.lists(
    st.dictionaries(
        st.integers(0, 12),
        st.tuples(
            st.sampled_from(["6175550100", "6175550111", ""]), st.sampled_from("56")
        ),
        max_size=10,
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(nights=_nights)
def test_nights_of_sends_compare_and_record_as_a_model_says(
    nights: list[dict[int, tuple[str, str]]],
) -> None:
    # Night after night the counts, the diff report's lists and what is recorded
    # agree with a plain dict model of the last send, however the IDs come and go.
    def row(n: int, phone: str, grade: str) -> Row:
        return (f"S{n}", "Amadeo", "Quill", phone, "101", "", "", "", grade, "F")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sent: dict[str, Row] = {}
        with StateStore(folder / "gate.sqlite") as store:
            for night, values in enumerate(nights):
                rows = [row(n, *value) for n, value in sorted(values.items())]
                export = write_export(folder / f"{night}.csv", STUDENTS, rows)
                now = {r[0]: r for r in rows}
                diff = store.compare(STUDENTS, export, allow_empty=True)
                report = store.write_diff(STUDENTS, export, folder / f"{night}.json")
                store.record(STUDENTS, export, run_id=f"r{night}")

                common = now.keys() & sent.keys()
                changed = sorted(k for k in common if now[k] != sent[k])
                expected = (
                    len(now.keys() - sent.keys()),
                    len(sent.keys() - now.keys()),
                    len(changed),
                    len(common) - len(changed),
                )
                assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (
                    expected
                )
                content = json.loads(report.read_text())
                assert content["added"] == sorted(now.keys() - sent.keys())
                assert content["removed"] == sorted(sent.keys() - now.keys())
                assert [c["id"] for c in content["changed"]] == changed
                again = store.compare(STUDENTS, export, allow_empty=True)
                assert (again.added, again.removed, again.changed) == (0, 0, 0)
                assert again.unchanged == len(now)
                sent = now


def test_a_repeat_numbered_as_another_rows_key_is_one_clear_error(
    store: StateStore, tmp_path: Path
) -> None:
    from connector.datasets import attendance

    events = attendance("event")
    day = "12/01/2026"
    rows = [("S1", "EXC", day, "1"), ("S1", "EXC", day, "1")]
    rows.append(("S1", "EXC", day, "1#2"))  # what the repeat would be numbered
    export = write_export(tmp_path / "a.csv", events, rows)

    with pytest.raises(ExportError) as info:
        store.compare(events, export)

    message = str(info.value)
    assert f"the key S1|{day}|1 repeats" in message
    assert f"but S1|{day}|1#2 is another row's own key" in message
    assert "(Student ID, Absence Date, Period)" in message
    # The store is still usable, and a clean export goes through.
    clean = write_export(tmp_path / "b.csv", events, rows[:2])
    assert store.compare(events, clean).rows == 2


def test_a_store_locked_by_another_process_is_exit_8(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from connector import gate
    from connector.errors import ExitCode

    monkeypatch.setattr(gate, "BUSY_SECONDS", 0.2)
    path = tmp_path / "state" / "gate.sqlite"
    export = write_export(tmp_path / "s.csv", STUDENTS, students(3))
    with StateStore(path) as store:
        store.record(STUDENTS, export, run_id="r1")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(ConnectorError) as info:
            with StateStore(path) as store:
                store.compare(STUDENTS, export)
    assert info.value.exit_code == ExitCode.LOCKED
    assert str(info.value).startswith(f"gate state store {path} is locked by another")


def test_columns_moved_since_the_last_send_are_said(
    store: StateStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    rows = students(4)
    store.record(STUDENTS, write_export(tmp_path / "a.csv", STUDENTS, rows), run_id="r")
    cols = list(STUDENTS.columns)
    cols[3], cols[6] = cols[6], cols[3]  # phone and alternate phone swap places
    moved = replace(STUDENTS, columns=tuple(cols))
    swapped = [(*r[:3], r[6], *r[4:6], r[3], *r[7:]) for r in rows]
    export = write_export(tmp_path / "b.csv", moved, swapped)

    with caplog.at_level("WARNING", logger="connector.gate"):
        diff = store.compare(moved, export)
    report = json.loads(
        store.write_diff(moved, export, tmp_path / "d.json").read_text()
    )

    assert diff.changed == 4
    assert "the columns are not those of the last send" in caplog.text
    assert report["columns"] == list(moved.column_names)
    assert report["baseline_columns"] == list(STUDENTS.column_names)
    assert {c["id"]: c["columns"] for c in report["changed"]} == {
        r[0]: [] for r in rows
    }
