"""Backfill: a school year in chunks, killed and resumed, against the real SIS."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.backfill import chunk_ranges
from connector.cli import app
from connector.receiver import Receiver

from .conftest import TOKEN, Keys, connector_command, gpg_decrypt
from .sis_expectations import SIS
from .test_integration import count, run_connector, write_config
from .test_pipeline import district, make_job  # noqa: F401 - district is a fixture

runner = CliRunner()
# The RosarioSIS school year of the shared data, August to June.
YEAR = ("2024-08-01", "2025-06-30")


def test_chunks_are_iso_weeks_and_calendar_months() -> None:
    weeks = chunk_ranges(dt.date(2024, 8, 1), dt.date(2024, 8, 20), "week")
    assert [(c.first.isoformat(), c.last.isoformat()) for c in weeks] == [
        ("2024-08-01", "2024-08-04"),  # Thursday to Sunday
        ("2024-08-05", "2024-08-11"),
        ("2024-08-12", "2024-08-18"),
        ("2024-08-19", "2024-08-20"),
    ]
    months = chunk_ranges(dt.date(2024, 1, 31), dt.date(2024, 3, 1), "month")
    assert [(c.first.day, c.last.day) for c in months] == [(31, 31), (1, 29), (1, 1)]
    assert len(chunk_ranges(dt.date(2024, 2, 27), dt.date(2024, 3, 1), "day")) == 4


@pytest.mark.parametrize("size", ["day", "week", "month"])
def test_chunks_reach_the_last_date_there_is(size: str) -> None:
    """9999-12-31 is a common "no end" date: the last chunk ends on it."""
    chunks = chunk_ranges(dt.date(9999, 12, 20), dt.date(9999, 12, 31), size)  # type: ignore[arg-type]
    assert chunks[0].first == dt.date(9999, 12, 20)
    assert chunks[-1].last == dt.date.max
    assert sum((c.last - c.first).days + 1 for c in chunks) == 12


def backfill_args(config: Path, folder: Path, *more: str) -> list[str]:
    return [
        "backfill",
        "attendance",
        "--from",
        YEAR[0],
        "--to",
        YEAR[1],
        "--chunk",
        "week",
        "-c",
        str(config),
        "--folder",
        str(folder),
        *more,
    ]


def rosario_config(folder: Path, receiver: Receiver, keys: Keys) -> Path:
    folder.mkdir()
    assert receiver.ca_file is not None
    return write_config(
        folder, "rosariosis", receiver.url, receiver.ca_file, keys.public
    )


def progress(state: Path) -> int:
    try:
        files = list((state / "backfill").glob("*/progress.json"))
        return len(json.loads(files[0].read_text())["done"]) if files else 0
    except (OSError, ValueError):
        return 0  # caught while being replaced


@pytest.mark.integration
def test_backfill_killed_half_way_resumes_to_the_same_file(
    sis_loaded: None, tmp_path: Path, receiver: Receiver, gpg_keys: Keys
) -> None:
    whole_config = rosario_config(tmp_path / "whole", receiver, gpg_keys)
    whole = run_connector(*backfill_args(whole_config, tmp_path / "whole-out"))
    assert whole.returncode == 0, whole.stderr
    name = f"attendance-{YEAR[0]}-{YEAR[1]}.csv"
    expected = (tmp_path / "whole-out" / name).read_bytes()

    # The same backfill, killed with SIGKILL once half the weeks are done.
    config = rosario_config(tmp_path / "cut", receiver, gpg_keys)
    state = config.parent / "state"
    out = tmp_path / "cut-out"
    chunks = len(
        chunk_ranges(dt.date.fromisoformat(YEAR[0]), dt.date(2025, 6, 30), "week")
    )
    process = subprocess.Popen(
        [*connector_command(), *backfill_args(config, out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        env={**os.environ, "CONNECTOR_SECRET_UPLOAD_TOKEN": TOKEN},
    )
    deadline = time.monotonic() + 120
    while progress(state) < chunks // 2 and process.poll() is None:
        assert time.monotonic() < deadline, "the backfill made no progress"
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL, "finished before it was killed"
    done = progress(state)
    assert chunks // 2 <= done < chunks
    assert not (out / name).exists()

    resumed = run_connector(*backfill_args(config, out))
    assert resumed.returncode == 0, resumed.stderr
    assert (out / name).read_bytes() == expected
    assert f"resuming at chunk {done + 1} of {chunks}" in resumed.stderr
    # Only the unfinished chunks were queried again.
    assert resumed.stderr.count("backfill attendance: chunk ") == chunks - done
    assert list(out.iterdir()) == [out / name]
    assert not (state / "backfill").exists() or not any((state / "backfill").iterdir())

    # Every absence of the year, through the same rules as the nightly run.
    rows = expected.count(b"\r\n") - 1
    year_sql = SIS["rosariosis"]["counts"]["attendance"]
    assert rows == count("rosariosis", year_sql) == 453
    assert f"({rows} rows" in resumed.stdout
    # The nightly state is untouched: no gate store, no pending, no exports.
    for nightly in (state / "state.sqlite", state / "pending", state / "spool"):
        assert not nightly.exists(), nightly
    assert not (config.parent / "exports").exists()


@pytest.mark.integration
def test_backfill_send_delivers_without_a_gate_baseline(
    sis_loaded: None, tmp_path: Path, receiver: Receiver, gpg_keys: Keys
) -> None:
    config = rosario_config(tmp_path / "send", receiver, gpg_keys)
    out = tmp_path / "out"
    result = run_connector(
        "backfill",
        "attendance",
        "--from",
        "2024-09-01",
        "--to",
        "2024-09-30",
        "--chunk",
        "month",
        "-c",
        str(config),
        "--folder",
        str(out),
        "--send",
    )
    assert result.returncode == 0, result.stderr
    name = "attendance-2024-09-01-2024-09-30.csv"
    assert f"sent {name}.gz.pgp" in result.stdout
    stored = receiver.folder / f"{name}.gz.pgp"
    data = gzip.decompress(gpg_decrypt(gpg_keys, stored.read_bytes()))
    assert data == (out / name).read_bytes()
    manifest = json.loads((receiver.folder / f"{name}.manifest.json").read_text())
    assert manifest["rows"] == data.count(b"\r\n") - 1 > 0
    assert not (config.parent / "state" / "state.sqlite").exists()


@pytest.mark.parametrize(
    ("dataset", "start", "end", "message"),
    [
        (
            "students",
            "2024-08-01",
            "2024-09-01",
            "does not use start_date and end_date",
        ),
        (
            "attendance",
            "2024-09-01",
            "2024-08-01",
            "2024-09-01 is after --to 2024-08-01",
        ),
        ("attendance", "2024/02/01", "2024-08-01", "'2024/02/01': give a date as"),
        ("attendance", "2024-02-30", "2024-08-01", "'2024-02-30': that day does not"),
    ],
    ids=["no-date-range", "swapped", "not-a-date", "no-such-day"],
)
def test_backfill_refuses_what_it_cannot_cut(
    tmp_path: Path, dataset: str, start: str, end: str, message: str
) -> None:
    queries = Path(__file__).parents[1] / "queries" / "rosariosis"
    config = tmp_path / "connector.toml"
    config.write_text(
        f"""
[source]
odbc = "DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT=1;DATABASE=x"
[params]
school_year = 2024
[datasets.students]
template = "{queries / "students.sql.j2"}"
[datasets.attendance]
template = "{queries / "attendance.sql.j2"}"
"""
    )
    result = runner.invoke(
        app, ["backfill", dataset, "--from", start, "--to", end, "-c", str(config)]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr


def test_backfill_progress_is_owner_only(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    """Like every state file: it lists the chunks of student records kept."""
    job = make_job(tmp_path, district, "https://127.0.0.1:9/", Path(__file__))
    out = tmp_path / "out"
    name = "attendance-2026-03-02-2026-03-15.csv"
    (out / name).mkdir(parents=True)  # the join cannot rename onto it: work stays

    result = run_connector(
        "backfill",
        "attendance",
        "--from",
        "2026-03-02",
        "--to",
        "2026-03-15",
        "--chunk",
        "week",
        "-c",
        str(job.path),
        "--folder",
        str(out),
    )

    assert result.returncode == 1, result.stderr
    assert f"cannot write the backfill {out / name}" in result.stderr
    [progress] = (job.state_folder / "backfill").glob("*/progress.json")
    assert len(json.loads(progress.read_text())["done"]) == 2
    assert progress.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in progress.parent.iterdir() if p.name.startswith(".")] == []


def test_backfill_help_has_an_example() -> None:
    result = runner.invoke(app, ["backfill", "--help"])
    assert result.exit_code == 0
    assert "Example: connector backfill" in result.stdout


def test_backfill_makes_no_folder_under_a_missing_parent(tmp_path: Path) -> None:
    folder = tmp_path / "nonexistent" / "dir"
    result = subprocess.run(
        [*connector_command(), *backfill_args(tmp_path / "connector.toml", folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: --folder {folder}: its parent folder")
    assert not folder.parent.exists()
