"""Time reading a data set from a file and show that memory stays flat.

Writes invented students in two sizes as a semicolon-separated Windows-1252 CSV
and as an Excel workbook, then extracts each in a fresh process (detection,
mapping, field rules, the strict export) and prints seconds, rows a second and
the child's peak resident memory, first for reading alone (count and stream,
mapped), then for the whole extract. If the large file's reading peak is near the
small one's, the reader's memory does not grow with the rows (the whole extract
keeps every ID for the duplicate check, so it grows a little).

    .venv/bin/python benchmarks/files_bench.py [--rows N]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from connector.datasets import STUDENTS

HEADER = ["STUDENT_NUMBER", "FIRST", "LAST", "HOME_PHONE", "SCHOOL"]
HEADER += ["LANG", "CELL", "EMAIL", "GRADE", "GENDER"]
MAP = "\n".join(
    f'{name} = "{column}"'
    for name, column in zip(
        STUDENTS.column_names,
        HEADER,
        strict=True,
    )
)


def rows(count: int) -> Iterator[list[str]]:
    for n in range(count):
        yield [
            f"{100_000 + n}",
            ("Zoë", "José", "Amélie", "Björn")[n % 4] + f"{n % 97}",
            f"Núñez{n % 4099}",
            f"(312) 555-{n % 10_000:04d}",
            f"{100 + n % 40}",
            "es" if n % 5 else "en",
            "" if n % 3 else f"217-555-{n % 10_000:04d}",
            f"family{n}@example.org",
            f"{n % 13:02d}",
            "F" if n % 2 else "M",
        ]


def write_csv(path: Path, count: int) -> Path:
    with path.open("w", encoding="cp1252", newline="") as f:
        writer = csv.writer(f, delimiter=";", lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(rows(count))
    return path


def write_xlsx(path: Path, count: int) -> Path:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Students")
    sheet.append(["Contacts export"])
    sheet.append(HEADER)
    for row in rows(count):
        sheet.append(row)
    book.save(path)
    return path


CHILD = """
import resource, sys, time
from connector.config import load_job
from connector.files import open_file_source
from connector.pipeline import extract
job = load_job(sys.argv[1])
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
source = open_file_source(job, "students", settle=False)
counted = source.count()
_, batches = source.stream(None, 5000)
read = sum(len(batch) for batch in batches)
assert read == counted
read_took, read_peak = time.perf_counter() - start, peak()
start = time.perf_counter()
[result] = extract(job)
print(result.written, read_took, read_peak, time.perf_counter() - start, peak())
"""


def measure(folder: Path, source: Path) -> list[float]:
    config = folder / f"{source.stem}-{source.suffix[1:]}.toml"
    config.write_text(
        f'[datasets.students.file_source]\npath = "{source}"\nsettle = 0\n'
        f"[datasets.students.map]\n{MAP}\n"
        f'[output]\nfolder = "{folder / source.suffix[1:]}"\n',
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(config)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [float(v) for v in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for count in (args.rows // 10, args.rows):
            for kind, write in (("csv", write_csv), ("xlsx", write_xlsx)):
                path = folder / f"students-{count}.{kind}"
                start = time.perf_counter()
                write(path, count)
                made = time.perf_counter() - start
                rows_, read, read_peak, took, peak = measure(folder, path)
                print(
                    f"{kind:4} {int(rows_):>9,} rows "
                    f"{path.stat().st_size / 2**20:6.1f} MiB"
                    f" | read only: {read:5.1f} s ({rows_ / read:7,.0f} rows/s), peak "
                    f"{read_peak:5.1f} MiB | whole extract: {took:5.1f} s "
                    f"({rows_ / took:6,.0f} rows/s), peak {peak:5.1f} MiB"
                    f" | file made in {made:.1f} s"
                )


if __name__ == "__main__":
    main()
