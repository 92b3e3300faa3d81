"""Time a backfill and show that its memory follows the chunk, not the range.

Builds an SQLite database of invented absences (``--rows`` spread over the school
days of August 2025 to June 2026) and backfills it through the SQLite3 ODBC
driver, each run in a fresh process so that its peak RSS is its own: one month and
the whole year in weekly chunks, then the whole year in monthly chunks. If the
year in weeks peaks where the month in weeks does, memory does not grow with the
range; the monthly chunks show what a bigger chunk costs with a driver that holds
a whole result in memory.

    .venv/bin/python benchmarks/backfill_bench.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = """SELECT student_id, reason_code, absence_date, periods
FROM absence
WHERE absence_date BETWEEN {{ start_date }} AND {{ end_date }}
ORDER BY absence_date, student_id
"""
FIRST, LAST = dt.date(2025, 8, 4), dt.date(2026, 6, 5)


def build(path: Path, rows: int) -> None:
    days = [
        FIRST + dt.timedelta(days=n)
        for n in range((LAST - FIRST).days + 1)
        if (FIRST + dt.timedelta(days=n)).weekday() < 5
    ]
    rng = random.Random(2026)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE absence (student_id TEXT, reason_code TEXT, "
            "absence_date TEXT, periods INTEGER)"
        )
        conn.execute("CREATE INDEX absence_day ON absence (absence_date)")
        per_day = rows // len(days)
        for day in days:
            conn.executemany(
                "INSERT INTO absence VALUES (?, ?, ?, ?)",
                (
                    (f"S{n:07d}", rng.choice("AEI"), day.isoformat(), None)
                    for n in range(per_day)
                ),
            )


def write_config(folder: Path, database: Path) -> Path:
    (folder / "attendance.sql.j2").write_text(TEMPLATE)
    (folder / "students.sql.j2").write_text("SELECT 1")
    config = folder / "connector.toml"
    config.write_text(
        f"""
[source]
odbc = "DRIVER={{SQLite3}};Database={database}"
[datasets.students]
template = "students.sql.j2"
[datasets.attendance]
template = "attendance.sql.j2"
[state]
folder = "state"
"""
    )
    return config


def backfill(config: Path, last: dt.date, chunk: str, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one backfill in its own process.

    A fresh wrapper process per run, so the children's peak is this run's alone.
    """
    script = Path(sys.executable).parent / "connector"
    command = [str(script), "backfill", "attendance", "--from", FIRST.isoformat()]
    command += ["--to", last.isoformat(), "--chunk", chunk, "-c", str(config)]
    command += ["--folder", str(out)]
    wrapper = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, int(result.stdout) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        database = folder / "absences.sqlite"
        started = time.perf_counter()
        build(database, args.rows)
        print(f"built {args.rows} absences in {time.perf_counter() - started:.1f} s")
        config = write_config(folder, database)
        month = FIRST + dt.timedelta(days=30)
        for label, last, chunk in (
            ("one month, weekly chunks", month, "week"),
            ("school year, weekly chunks", LAST, "week"),
            ("school year, monthly chunks", LAST, "month"),
        ):
            seconds, peak = backfill(config, last, chunk, folder / "out")
            size = sum(p.stat().st_size for p in (folder / "out").iterdir())
            print(
                f"{label}: {seconds:.1f} s, peak RSS {peak:.0f} MiB "
                f"(files in the folder: {size / 2**20:.0f} MiB)"
            )


if __name__ == "__main__":
    main()
