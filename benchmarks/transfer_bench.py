"""Package and upload a large export and report time and peak memory.

Writes an export of ``--size`` MB (default 500) of CSV-shaped rows whose values are
random enough that gzip cannot shrink it much, then, each in a fresh process so that
peak RSS belongs to that step alone: packages it (gzip + OpenPGP to a GnuPG-style
key made by pysequoia's fallback) and uploads it to the reference receiver over
HTTPS on 127.0.0.1 with each destination kind available. Prints MB/s and peak RSS;
the issue's limit is 150 MB RSS for 500 MB.

    .venv/bin/python benchmarks/transfer_bench.py [--size 500] [--kinds https,tus]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROW = (
    '"S{0:07d}","{1}","{2}","2175550{0:03d}","101","en","","x{0}@example.org",'
    '"05","F"\r\n'
)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_export(path: Path, megabytes: int) -> None:
    target = megabytes * 1024 * 1024
    written = 0
    n = 0
    with path.open("w", encoding="ascii", newline="") as f:
        f.write('"Student ID","First Name","Last Name"\r\n')
        while written < target:
            a, b = os.urandom(12).hex(), os.urandom(12).hex()
            line = ROW.format(n % 10_000_000, a, b)
            f.write(line)
            written += len(line)
            n += 1


def step(kind: str, folder: Path) -> dict[str, float]:
    """Run in a child process: package (kind "package") or package + upload."""
    from connector.package import Recipient, make_keypair, package_export
    from connector.receiver import Receiver
    from connector.transfer import AttemptLog

    export = folder / "students.csv"
    keys = folder / "keys"
    public = keys / "recipient.asc"
    if not public.exists():
        make_keypair(keys)
    started = time.monotonic()
    payload = package_export(
        export, folder / f"spool-{kind}", Recipient.openpgp(public)
    )
    packaged = time.monotonic() - started
    upload = 0.0
    if kind != "package":
        with Receiver(
            folder / f"received-{kind}", "bench-token", tls_dir=folder / "tls"
        ) as r:
            assert r.ca_file is not None
            log = AttemptLog(
                folder / "log.jsonl",
                run_id="bench",
                file=payload.path.name,
                destination=kind,
                size=payload.size,
                sha256=payload.sha256,
            )
            started = time.monotonic()
            if kind == "https":
                from connector.upload import UploadTarget, upload_payload

                upload_payload(
                    payload, UploadTarget(r.url, "bench-token", r.ca_file), log
                )
            else:
                from connector.tus import TusTarget, upload_tus

                upload_tus(
                    payload, TusTarget(r.url, "bench-token", r.ca_file), log, folder
                )
            upload = time.monotonic() - started
    return {
        "mb": payload.csv_size / 2**20,
        "package_s": packaged,
        "upload_s": upload,
        "peak_rss_mib": peak_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500, help="export size in MB")
    parser.add_argument("--kinds", default="package,https,tus")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, Path(args.folder))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_export(folder / "students.csv", args.size)
        print(f"export: {(folder / 'students.csv').stat().st_size / 2**20:.0f} MiB")
        print(
            f"{'step':<10}{'package MB/s':>14}{'upload MB/s':>13}{'peak RSS MiB':>14}"
        )
        for kind in args.kinds.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--step", kind, "--folder", tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            up = f"{r['mb'] / r['upload_s']:.0f}" if r["upload_s"] else "-"
            print(
                f"{kind:<10}{r['mb'] / r['package_s']:>14.0f}{up:>13}"
                f"{r['peak_rss_mib']:>14.0f}"
            )


if __name__ == "__main__":
    main()
