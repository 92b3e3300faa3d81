"""Time the safety gate on district-sized exports and show that memory stays flat.

Writes a 300,000-row students export and a 2,000,000-row attendance export of
invented values into a temporary folder, records each as the baseline, then
compares a modified copy (about 1% of rows dropped, 1% changed, 0.5% added) and
writes its diff report. Prints seconds per step and the peak resident memory
after each step; students run first, so if the 2,000,000-row steps leave the
peak where the 300,000-row steps put it, memory does not grow with the rows.

    .venv/bin/python benchmarks/gate_bench.py [--attendance N] [--students N]
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from connector.datasets import ATTENDANCE, STUDENTS, DataSet
from connector.gate import StateStore

Row = tuple[str, ...]


def peak_mib() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 << 20 if sys.platform == "darwin" else 1 << 10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / (1 << 20)


def write_export(path: Path, dataset: DataSet, rows: Iterator[Row]) -> Path:
    with path.open("w", newline="", encoding="ascii") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(dataset.headers)
        writer.writerows(rows)
    return path


def students(count: int, modified: bool) -> Iterator[Row]:
    for n in range(count + (count // 200 if modified else 0)):
        if modified and n % 100 == 1:
            continue  # dropped
        phone = f"{2125550000 + n % 10_000 + (7 if modified and n % 100 == 2 else 0)}"
        yield (
            f"{100_000 + n}",
            f"First{n % 997}",
            f"Last{n % 4099}",
            phone,
            f"{100 + n % 40}",
            "en" if n % 5 else "es",
            "" if n % 3 else f"{6175550000 + n % 10_000}",
            f"family{n}@example.org",
            f"{n % 13}",
            "F" if n % 2 else "M",
        )


def attendance(count: int, modified: bool) -> Iterator[Row]:
    # About 4 absences per student over 40 school days; a few repeated days.
    for n in range(count + (count // 200 if modified else 0)):
        if modified and n % 100 == 1:
            continue
        code = "UNX" if modified and n % 100 == 2 else ("EXC" if n % 3 else "ILL")
        day = (n * 7919) % 40
        yield (
            f"{100_000 + n // 4}",
            code,
            f"{9 + day // 20:02d}/{1 + day % 20:02d}/2025",
            f"{1 + n % 7}" if n % 4 else "",
        )


def timed(label: str, step: float) -> None:
    print(f"{label:<34} {step:>8.1f} s   peak RSS {peak_mib():7.1f} MiB", flush=True)


def bench(folder: Path, dataset: DataSet, count: int) -> None:
    make = students if dataset is STUDENTS else attendance
    start = time.perf_counter()
    base = write_export(folder / f"{dataset.name}.csv", dataset, make(count, False))
    new = write_export(folder / f"{dataset.name}-new.csv", dataset, make(count, True))
    timed(f"{dataset.name}: write 2 exports", time.perf_counter() - start)

    with StateStore(folder / "state" / "gate.sqlite") as store:
        start = time.perf_counter()
        store.record(dataset, base, run_id="bench-1")
        timed(f"{dataset.name}: record {count:,}", time.perf_counter() - start)

        start = time.perf_counter()
        diff = store.compare(dataset, new)
        timed(f"{dataset.name}: compare modified copy", time.perf_counter() - start)

        start = time.perf_counter()
        report = store.write_diff(dataset, new, folder / f"{dataset.name}-diff.json")
        timed(f"{dataset.name}: write diff report", time.perf_counter() - start)

    print(
        f"  rows {diff.rows:,}, ids {diff.ids:,}, added {diff.added:,}, removed "
        f"{diff.removed:,}, changed {diff.changed:,}, held {diff.held}; "
        f"export {new.stat().st_size / 1e6:.0f} MB, report "
        f"{report.stat().st_size / 1e6:.1f} MB, store "
        f"{(folder / 'state' / 'gate.sqlite').stat().st_size / 1e6:.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=300_000)
    parser.add_argument("--attendance", type=int, default=2_000_000)
    args = parser.parse_args()

    print(f"{'start':<34} {'':>10}   peak RSS {peak_mib():7.1f} MiB")
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        bench(Path(tmp), STUDENTS, args.students)
        bench(Path(tmp), ATTENDANCE, args.attendance)


if __name__ == "__main__":
    main()
