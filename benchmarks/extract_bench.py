"""Extraction speed and memory beside the databases' own export, on the local servers.

Creates invented tables in the database ``c7_bench`` on the local PostgreSQL and
MariaDB (bench_data.py: students, 300,000 rows with about 5 % non-ASCII names and
phones in mixed formats; attendance of each ``--sizes`` row count), then runs, in
interleaved rounds, each in its own process:

- the limit: ``psql \\copy (...) TO file (format csv, force_quote *)``, and on
  MariaDB ``SELECT ... INTO OUTFILE`` (written by the server);
- the plain peer: csvkit's ``sql2csv`` (SQLAlchemy with psycopg / PyMySQL);
- ``connector extract`` (field rules, validation, COUNT(*) check, rename);
- ``connector run`` to the reference receiver over HTTPS (gzip + OpenPGP), a
  first send (no baseline: the safety gate records every row);
- ``connector run --force`` again on the state the first left (``connector-rerun``):
  a night like most, where the gate compares every row with the baseline.

Each connector tool runs once per way in (``--sources``, column ``source``):
``odbc`` (psqlODBC, MariaDB Connector/ODBC) and ``url`` (PostgreSQL: a
``postgresql://`` URL, read through libpq by ADBC; MariaDB: a ``mariadb://`` URL,
read through MariaDB Connector/Python, ``pip install -e '.[mariadb]'``).

Prints rows/s, the ratio to the limit of the same round (median over rounds) and
the peak RSS of the process, and checks every output: the connector's exports
must hold exactly the rows of a formatted ``\\copy`` (byte for byte for
attendance, the same IDs in the same order for students) and pass the strict
export check; the others must have the same number of rows.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/extract_bench.py [--rounds 3] [--sizes 2000000]
    .venv/bin/python benchmarks/extract_bench.py --sizes 300000,2000000,10000000 \\
        --only connector-extract --datasets attendance   # memory flatness

``--drop`` drops the attendance tables above 2 million rows afterwards.

Peak RSS counts the libraries' pages mapped from the page cache too, and how many
depends on its state (README, performance): for figures comparable with the
README's, drop the cache first (as root: ``sync; echo 1 > /proc/sys/vm/drop_caches``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_data  # noqa: E402

VENV = Path(sys.executable).parent
PG_ODBC = (
    "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;"
    f"DATABASE={bench_data.DATABASE};UID=postgres"
)
MY_ODBC = (
    "DRIVER={MariaDB Unicode};SOCKET=/run/mysqld/mysqld.sock;"
    f"DATABASE={bench_data.DATABASE};UID=root"
)
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1/{bench_data.DATABASE}"
MY_URL = (
    f"mysql+pymysql://root@localhost/{bench_data.DATABASE}"
    "?unix_socket=/run/mysqld/mysqld.sock&charset=utf8mb4"
)
# The connector's own ways in, per database: [source] as a DBA would write it.
SOURCES = {
    ("pg", "odbc"): f"odbc = {json.dumps(PG_ODBC)}",
    (
        "pg",
        "url",
    ): f'url = "postgresql://postgres@127.0.0.1:5432/{bench_data.DATABASE}"',
    ("my", "odbc"): f"odbc = {json.dumps(MY_ODBC)}",
    ("my", "url"): f'url = "mariadb://root@localhost/{bench_data.DATABASE}'
    '?unix_socket=/run/mysqld/mysqld.sock"',
}
COLUMNS = {
    "students": "student_id, first_name, last_name, phone, school, language, "
    "alt_phone, email, grade, gender",
    "attendance": "student_id, reason_code, absence_date, periods",
}
TOOLS = ("limit", "sql2csv", "connector-extract", "connector-run", "connector-rerun")
RUNS = ("connector-run", "connector-rerun")
TOKEN = "bench-token"


def table(dataset: str, size: int) -> str:
    return "students" if dataset == "students" else bench_data.attendance_table(size)


def query(dataset: str, size: int) -> str:
    return f"SELECT {COLUMNS[dataset]} FROM {table(dataset, size)}"


def timed(cmd: list[str], **kw: object) -> tuple[float, float]:
    """Run ``cmd``; (seconds, peak RSS MiB of that process)."""
    # GNU time measures the command alone (a forked Python child would start
    # with this process's memory counted).
    with tempfile.NamedTemporaryFile("r") as rss, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], stderr=err, **kw
        )  # type: ignore[call-overload]
        seconds = time.monotonic() - started
        if done.returncode:
            err.seek(0)
            error = err.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(cmd[:3])}... failed:\n{error}")
        return seconds, int(rss.read().split()[-1]) / 1024


def work_folder(work: Path, db: str, dataset: str, size: int, source: str) -> Path:
    return work / f"{db}-{source}-{dataset}-{size}"


def write_config(
    work: Path, db: str, dataset: str, size: int, url: str, source: str
) -> Path:
    folder = work_folder(work, db, dataset, size, source)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{dataset}.sql.j2").write_text(query(dataset, size) + "\n")
    (folder / "students.sql.j2").write_text(query("students", 0) + "\n")
    if dataset == "students":  # never run: extract -d students
        (folder / "attendance.sql.j2").write_text("SELECT 1\n")
    config = folder / "connector.toml"
    config.write_text(
        f"""[source]
{SOURCES[db, source]}

[datasets.students]
template = "students.sql.j2"

[datasets.attendance]
template = "attendance.sql.j2"

[output]
folder = "exports"

[destination]
url = "{url}"
token_secret = "upload-token"
ca_file = "{work / "tls" / "ca.pem"}"
recipient_cert = "{work / "keys" / "recipient.asc"}"

[state]
folder = "state"
"""
    )
    return config


def run_tool(
    tool: str, db: str, dataset: str, size: int, work: Path, source: str
) -> Path:
    """Run one tool once; returns its output file."""
    folder = work_folder(work, db, dataset, size, source)
    out = folder / f"{tool}.csv"
    out.unlink(missing_ok=True)
    sql = query(dataset, size)
    if tool == "limit" and db == "pg":
        copy = f"\\copy ({sql}) TO '{out}' (format csv, force_quote *)"
        cmd = [*bench_data.PSQL, "-d", bench_data.DATABASE, "-c", copy]
        return _run(cmd, out, folder)
    if tool == "limit":
        server_file = Path("/tmp/c7_outfile") / f"{dataset}-{size}.csv"
        server_file.parent.mkdir(exist_ok=True)
        server_file.parent.chmod(0o777)
        server_file.unlink(missing_ok=True)
        into = (
            f"{sql} INTO OUTFILE '{server_file}' FIELDS TERMINATED BY ',' "
            "ENCLOSED BY '\"' LINES TERMINATED BY '\\r\\n'"
        )
        cmd = [*bench_data.MARIADB, bench_data.DATABASE, "-e", into]
        _run(cmd, out, folder)
        shutil.move(server_file, out)
        return out
    if tool == "sql2csv":
        url = PG_URL if db == "pg" else MY_URL
        with out.open("wb") as f:
            return _run(
                [str(VENV / "sql2csv"), "--db", url, "--query", sql], out, folder, f
            )
    config = folder / "connector.toml"
    exports = folder / "exports"
    if tool != "connector-rerun":  # a rerun keeps the state of the run before it
        shutil.rmtree(exports, ignore_errors=True)
        shutil.rmtree(folder / "state", ignore_errors=True)
    if tool == "connector-extract":
        command = ["extract", "-d", dataset]
    elif tool == "connector-run":
        command = ["run"]  # every data set: students, then attendance
    else:
        command = ["run", "--force"]  # the same business date again
    _run([str(VENV / "connector"), *command, "--config", str(config)], out, folder)
    shutil.move(exports / f"{dataset}.csv", out)
    return out


LAST: dict[str, tuple[float, float]] = {}


def _run(cmd: list[str], out: Path, folder: Path, stdout: object = None) -> Path:
    env = {**os.environ, "CONNECTOR_SECRET_UPLOAD_TOKEN": TOKEN}
    LAST["t"] = timed(
        cmd,
        cwd=folder,
        env=env,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
    )
    return out


def reference(dataset: str, size: int, work: Path) -> Path:
    """The rows as the connector must write them, by PostgreSQL (both DBs hold
    the same rows): dates formatted, NULL as ""."""
    out = work / f"reference-{dataset}-{size}.csv"
    if out.exists():
        return out
    if dataset == "attendance":
        sql = (
            "SELECT student_id, reason_code, to_char(absence_date, 'MM/DD/YYYY'), "
            f"coalesce(periods, '') FROM {table(dataset, size)}"
        )
    else:
        sql = f"SELECT student_id FROM {table(dataset, size)}"
    copy = f"\\copy ({sql}) TO '{out}' (format csv, force_quote *)"
    subprocess.run(
        [*bench_data.PSQL, "-d", bench_data.DATABASE, "-c", copy], check=True
    )
    return out


def digest_lines(path: Path, *, skip: int, first_field: bool = False) -> int:
    """A digest of the rows in any order (chunked MariaDB fetches are in key
    order): the sum of each line's SHA-256. For students only the IDs."""
    total = 0
    with path.open("rb") as f:
        for n, line in enumerate(f):
            if n < skip:
                continue
            line = line.rstrip(b"\r\n")
            if first_field:
                line = line.split(b",", 1)[0]
            total += int.from_bytes(hashlib.sha256(line).digest(), "big")
    return total % (1 << 256)


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def check(tool: str, dataset: str, size: int, out: Path, work: Path) -> str:
    rows = size if dataset == "attendance" else students_rows()
    if tool in ("limit", "sql2csv"):
        header = 1 if tool == "sql2csv" else 0
        got = count_lines(out) - header
        return "ok" if got == rows else f"WRONG: {got} rows, not {rows}"
    from connector.csvout import check_export
    from connector.datasets import DATASETS

    check_export(DATASETS[dataset], out)
    ref = reference(dataset, size, work)
    same = digest_lines(out, skip=1, first_field=dataset == "students") == (
        digest_lines(ref, skip=0, first_field=dataset == "students")
    )
    return "ok" if same else "WRONG: rows differ from the reference"


def students_rows() -> int:
    return 300_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="2000000", help="attendance row counts")
    parser.add_argument("--dbs", default="pg,my")
    parser.add_argument("--datasets", default="attendance,students")
    parser.add_argument("--only", default=",".join(TOOLS), help="tools to run")
    parser.add_argument(
        "--sources",
        default="odbc,url",
        help="the connector's ways in: odbc, and url (postgresql://, mariadb://)",
    )
    parser.add_argument("--drop", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    dbs = args.dbs.split(",")
    tools = [t for t in TOOLS if t in args.only.split(",") or t == "limit"]
    if "connector-rerun" in tools and "connector-run" not in tools:
        parser.error("connector-rerun runs on the state connector-run leaves: add it")
    datasets = args.datasets.split(",")
    for db in dbs:
        bench_data.load(db, students_rows(), sizes)

    from connector.package import make_keypair
    from connector.receiver import Receiver

    with tempfile.TemporaryDirectory(prefix="c7_bench.") as tmp:
        work = Path(tmp)
        make_keypair(work / "keys")
        with Receiver(work / "received", TOKEN, tls_dir=work / "tls") as receiver:
            cases = [
                (db, ds, size)
                for db in dbs
                for ds in sorted(datasets, reverse=True)  # students first
                for size in (sizes if ds == "attendance" else [0])
            ]
            ways = {
                db: [w for w in args.sources.split(",") if (db, w) in SOURCES]
                for db in dbs
            }
            for db, ds, size in cases:
                for way in ways[db]:
                    write_config(work, db, ds, size, receiver.url, way)
            Key = tuple[str, str, int, str, str]
            times: dict[Key, list[float]] = {}
            ratios: dict[Key, list[float]] = {}
            peaks: dict[Key, float] = {}
            verdicts: dict[Key, str] = {}
            for _ in range(args.rounds):
                limits: dict[tuple[str, str], float] = {}
                for db, ds, size in cases:
                    runs = [
                        (tool, way)
                        for tool in tools
                        for way in (ways[db] if tool.startswith("connector") else [""])
                    ]
                    for tool, way in runs:
                        if tool in RUNS and ds == "students":
                            continue
                        key = (db, ds, size, tool, way)
                        out = run_tool(tool, db, ds, size, work, way or ways[db][0])
                        seconds, peak = LAST["t"]
                        if tool == "limit":
                            limits[db, ds] = seconds
                        limit = limits[db, ds]
                        if tool in RUNS:
                            # run sends students too: compare with both limits.
                            limit += limits.get((db, "students"), 0.0)
                        times.setdefault(key, []).append(seconds)
                        ratios.setdefault(key, []).append(limit / seconds)
                        peaks[key] = max(peaks.get(key, 0.0), peak)
                        if key not in verdicts or verdicts[key] == "ok":
                            verdicts[key] = check(tool, ds, size, out, work)
                        out.unlink()
            print(
                f"{'database':<11}{'data set':<12}{'rows':>10}  {'tool':<19}"
                f"{'source':<7}{'rows/s':>10}{'of limit':>10}{'peak RSS MiB':>14}"
                "  check"
            )
            for db, ds, size in cases:
                rows = size or students_rows()
                for key in times:
                    if key[:3] != (db, ds, size):
                        continue
                    tool, way = key[3:]
                    moved = rows + (students_rows() if tool in RUNS else 0)
                    rate = moved / statistics.median(times[key])
                    print(
                        f"{'PostgreSQL' if db == 'pg' else 'MariaDB':<11}{ds:<12}"
                        f"{rows:>10}  {tool:<19}{way or '-':<7}{rate:>10,.0f}"
                        f"{statistics.median(ratios[key]):>10.0%}"
                        f"{peaks[key]:>14.0f}  {verdicts[key]}"
                    )
    if args.drop:
        for db in dbs:
            bench_data.drop_big(db)


if __name__ == "__main__":
    main()
