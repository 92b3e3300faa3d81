"""``connector demo``: the nightly job end to end on an invented district.

Everything lives in one folder: the sample SIS (SQLite), the demo templates, a
throwaway OpenPGP key pair and TLS certificate, the upload token, a config file,
the exports, and what the local receiver stored. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import load_job
from .errors import ConfigError
from .package import make_keypair
from .pipeline import run
from .receiver import Receiver
from .report import RunReport
from .sample import build_sample_sis

_QUERIES = Path(__file__).parent / "demo_queries"
MARKER = ".connector-demo"

_CONFIG = """\
# The demo's config: a sample SIS in SQLite and a receiver on 127.0.0.1.
# Relative paths start from this file's folder.

[source]
url = "sqlite:///{database}"

[params]
start_date = {start}
end_date = {end}

[datasets.students]
template = "queries/students.sql.j2"
file = "students.csv"

[datasets.attendance]
template = "queries/attendance.sql.j2"
file = "attendance.csv"

[datasets.staff]
template = "queries/staff.sql.j2"
file = "staff.csv"

[output]
folder = "exports"

[destination]
url = "{url}"
token_secret = "upload-token"
ca_file = "{ca_file}"
recipient_cert = "keys/receiver-public.asc"
attempts = 3
backoff = 0.5

[secrets]
folder = "secrets"

[state]
folder = "state"
"""


@dataclass
class DemoResult:
    report: RunReport
    config: Path
    output_folder: Path
    received_folder: Path


def run_demo(folder: Path, *, students: int = 3000) -> DemoResult:
    """Build the demo district in ``folder`` and run the nightly job against it.

    ``folder`` must be new, empty, or an earlier demo's (it holds ``MARKER``): the
    demo writes a connector.toml and templates that must not replace a real one's.
    """
    marker = folder / MARKER
    if folder.is_dir() and any(folder.iterdir()) and not marker.is_file():
        raise ConfigError(
            f"--folder {folder} is not empty and is not an earlier demo's (it has "
            f"no {MARKER}); the demo would overwrite its connector.toml and "
            "queries: give a new or empty folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        "This folder was made by `connector demo`; it may be run again here.\n",
        encoding="utf-8",
    )
    database = folder / "sample-sis.db"
    summary = build_sample_sis(database, students=students)

    queries = folder / "queries"
    queries.mkdir(exist_ok=True)
    for template in _QUERIES.glob("*.sql.j2"):
        shutil.copyfile(template, queries / template.name)

    keys = folder / "keys"
    public, _secret = make_keypair(keys)
    if public != keys / "receiver-public.asc":
        shutil.copyfile(public, keys / "receiver-public.asc")

    token_folder = folder / "secrets"
    token_folder.mkdir(exist_ok=True)
    os.chmod(token_folder, 0o700)
    token_file = token_folder / "upload-token"
    token = secrets.token_urlsafe(32)
    token_file.write_text(token, encoding="utf-8")
    os.chmod(token_file, 0o600)

    received = folder / "received"
    with Receiver(received, token, tls_dir=folder / "tls") as receiver:
        assert receiver.ca_file is not None
        config = folder / "connector.toml"
        config.write_text(
            _CONFIG.format(
                database=database.as_posix(),
                start=summary.start_date.isoformat(),
                end=summary.end_date.isoformat(),
                url=receiver.url,
                ca_file=receiver.ca_file.relative_to(folder).as_posix(),
            ),
            encoding="utf-8",
        )
        job = load_job(config)
        report = run(job)

    return DemoResult(
        report=report,
        config=config,
        output_folder=job.output_folder,
        received_folder=received,
    )
