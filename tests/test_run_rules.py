"""The nightly run's guards on the sample SIS: the safety gate, row accounting,
the attendance shapes and the run report (SQLite via SQLAlchemy, the real
receiver, the installed ``connector`` script for exit codes)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.config import load_job
from connector.database import SqlAlchemySource
from connector.errors import ExitCode, ExportError
from connector.pipeline import extract, run
from connector.receiver import Receiver

from .conftest import TOKEN, connector_command, require
from .test_pipeline import (  # noqa: F401 - district is a fixture
    district,
    make_job,
    snapshot,
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", TOKEN, tls_dir=tmp_path / "tls") as r:
        yield r


@pytest.fixture
def sis(tmp_path: Path, district: Path) -> Path:  # noqa: F811
    """A private copy of the sample SIS, for tests that change it."""
    copy = tmp_path / "sis.db"
    shutil.copyfile(district / "sis.db", copy)
    return copy


def connector(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*connector_command(), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "CONNECTOR_SECRET_UPLOAD_TOKEN": TOKEN},
        timeout=300,
    )


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(), newline="")))


def test_gate_holds_a_drop_and_sends_after_accept_change(
    tmp_path: Path,
    district: Path,  # noqa: F811
    sis: Path,
    live: Receiver,
) -> None:
    assert live.ca_file is not None
    job = make_job(
        tmp_path, district, live.url, live.ca_file, db=sis, attendance="max_drop = 1"
    )
    config = str(job.path)
    first = connector("run", "-c", config)
    assert first.returncode == 0, first.stderr
    header = first.stdout.splitlines()[0]
    assert header.startswith("data set  ") and header.endswith("  gate")
    assert "first send" in first.stdout
    sent = (job.output_folder / "students.csv").read_bytes()
    stored = (live.folder / "students.csv.gz.pgp").read_bytes()

    with sqlite3.connect(sis) as db:
        gone = db.execute(
            "SELECT student_number FROM students WHERE enroll_status = 'A' "
            "AND id % 5 = 0 ORDER BY student_number"
        ).fetchall()
        db.execute("DELETE FROM students WHERE id % 5 = 0")
    db.close()

    held = connector("run", "-c", config, "--force")

    assert held.returncode == ExitCode.HELD, held.stderr
    [error] = [line for line in held.stderr.splitlines() if line.startswith("error:")]
    assert "send held by the safety gate (students: " in error
    assert f"{len(gone)} of the 200 IDs sent on" in error
    assert "--accept-change" in error
    assert (job.output_folder / "students.csv").read_bytes() == sent
    assert (live.folder / "students.csv.gz.pgp").read_bytes() == stored
    changes = json.loads((job.output_folder / "students-changes.json").read_text())
    assert changes["removed"] == [g[0] for g in gone]
    assert changes["counts"]["removed"] == len(gone)
    assert changes["added"] == [] and changes["changed"] == []
    report = json.loads((job.output_folder / "run-report.json").read_text())
    assert report["outcome"] == "held"
    assert report["datasets"]["students"]["gate"]["held"] is True

    accepted = connector("run", "-c", config, "--accept-change", "--force")

    assert accepted.returncode == 0, accepted.stderr
    now = csv_rows(job.output_folder / "students.csv")
    assert len(now) == len(csv_rows(io_path(sent, tmp_path))) - len(gone)
    assert (live.folder / "students.csv.gz.pgp").read_bytes() != stored
    # The accepted send is the new baseline: the same data passes the gate.
    again = connector("run", "-c", config, "--force")
    assert again.returncode == 0, again.stderr
    assert "ok +0 -0 ~0" in again.stdout


def io_path(data: bytes, folder: Path) -> Path:
    path = folder / "earlier.csv"
    path.write_bytes(data)
    return path


def test_gate_holds_an_empty_result(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    assert connector("run", "-c", str(job.path)).returncode == 0
    sent = (job.output_folder / "staff.csv").read_bytes()
    template = tmp_path / "queries" / "staff.sql.j2"
    template.write_text("SELECT * FROM (" + template.read_text() + ") WHERE 1 = 0")

    held = connector("run", "-c", str(job.path), "--force")

    assert held.returncode == ExitCode.HELD, held.stderr
    assert "staff: the export is empty" in held.stderr
    assert (job.output_folder / "staff.csv").read_bytes() == sent


def test_fewer_rows_than_count_fails_before_upload(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A driver that silently loses a row (simulated: a stream that drops the
    last row) fails the run, and nothing is sent."""
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    real_stream = SqlAlchemySource.stream

    def lossy(self: SqlAlchemySource, query: Any, size: int) -> Any:
        columns, batches = real_stream(self, query, size)

        def fewer() -> Iterator[Any]:
            with contextlib.closing(batches):
                pending = None
                for batch in batches:
                    if pending is not None:
                        yield pending
                    pending = batch
                if pending:
                    yield pending[:-1]

        return columns, fewer()

    monkeypatch.setattr(SqlAlchemySource, "stream", lossy)
    monkeypatch.setenv("CONNECTOR_SECRET_UPLOAD_TOKEN", TOKEN)
    with pytest.raises(ExportError) as info:
        run(job)
    assert str(info.value).startswith(
        "data set students: COUNT(*) over the template gives 200 rows but 199 "
        "were fetched; nothing was written or sent"
    )
    assert list(live.folder.glob("*")) == []
    assert list(job.output_folder.glob("*.csv")) == []
    report = json.loads((job.output_folder / "run-report.json").read_text())
    assert report["outcome"] == "failed"
    assert report["datasets"]["students"]["fetched"] == 199


ABSENCES = [
    ("S1", "A", "2026-03-02", 1),
    ("S1", "A", "2026-03-02", 3),
    ("S2", "M", "2026-03-02", 2),
]

SHAPES = {
    "day": (
        "SELECT student AS student_id, MIN(code) AS reason_code, day AS absence_date,"
        " GROUP_CONCAT(period) AS periods FROM absences GROUP BY student, day"
        " ORDER BY student",
        '"Student ID","Absence Code","Absence Date","Periods Missed"',
        ['"S1","A","03/02/2026","1,3"', '"S2","M","03/02/2026","2"'],
    ),
    "event": (
        "SELECT student AS student_id, code AS reason_code, day AS absence_date,"
        " period FROM absences ORDER BY student, period",
        '"Student ID","Absence Code","Absence Date","Period"',
        [
            '"S1","A","03/02/2026","1"',
            '"S1","A","03/02/2026","3"',
            '"S2","M","03/02/2026","2"',
        ],
    ),
    "columns": (
        "SELECT student AS student_id, MIN(code) AS reason_code, day AS absence_date,"
        " MAX(CASE WHEN period = 1 THEN code END) AS period_1,"
        " MAX(CASE WHEN period = 2 THEN code END) AS period_2,"
        " MAX(CASE WHEN period = 3 THEN code END) AS period_3"
        " FROM absences GROUP BY student, day ORDER BY student",
        '"Student ID","Absence Code","Absence Date","Period 1","Period 2","Period 3"',
        ['"S1","A","03/02/2026","A","","A"', '"S2","M","03/02/2026","","M",""'],
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_attendance_periods_in_each_shape(tmp_path: Path, shape: str) -> None:
    db = tmp_path / "sis.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE absences (student, code, day, period)")
        conn.executemany("INSERT INTO absences VALUES (?, ?, ?, ?)", ABSENCES)
    conn.close()
    sql, header, records = SHAPES[shape]
    (tmp_path / "attendance.sql").write_text(sql)
    (tmp_path / "students.sql").write_text("SELECT 1")
    (tmp_path / "connector.toml").write_text(
        f'[source]\nurl = "sqlite:///{db}"\n'
        '[datasets.students]\ntemplate = "students.sql"\n'
        '[datasets.attendance]\ntemplate = "attendance.sql"\n'
        f'periods = "{shape}"\nperiod_columns = 3\n'
    )
    job = load_job(tmp_path / "connector.toml")

    [result] = extract(job, names=["attendance"])

    lines = result.path.read_bytes().decode("ascii").split("\r\n")
    assert lines[0] == header
    assert lines[1:-1] == records
    assert result.expected == len(records)


def test_a_template_of_the_wrong_shape_names_the_columns(tmp_path: Path) -> None:
    db = tmp_path / "sis.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE absences (student, code, day, period)")
    conn.close()
    (tmp_path / "attendance.sql").write_text(SHAPES["day"][0])
    (tmp_path / "students.sql").write_text("SELECT 1")
    (tmp_path / "connector.toml").write_text(
        f'[source]\nurl = "sqlite:///{db}"\n'
        '[datasets.students]\ntemplate = "students.sql"\n'
        '[datasets.attendance]\ntemplate = "attendance.sql"\nperiods = "event"\n'
    )
    job = load_job(tmp_path / "connector.toml")
    with pytest.raises(ExportError) as info:
        extract(job, names=["attendance"])
    assert str(info.value).startswith(
        "data set attendance: the query's columns do not match (missing period; "
        "unexpected periods)"
    )


def test_a_lost_state_store_holds_the_next_send(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    assert connector("run", "-c", str(job.path)).returncode == 0
    job.state_store.unlink()

    held = connector("run", "-c", str(job.path), "--force")

    assert held.returncode == ExitCode.HELD, held.stderr
    assert "no baseline in" in held.stderr and "earlier verified sends" in held.stderr
    accepted = connector("run", "-c", str(job.path), "--accept-change", "--force")
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('"Ada"', '"123-45-6789"', 1), "social security"),
        (lambda t: t.replace("\r\n", "\n"), "quoted and ending in CR LF"),
        (lambda t: t.replace('"F"\r\n', "F\r\n", 1), "not a record as connector"),
        (lambda t: t.replace(',"101",', ',"",', 1), "column school: required"),
        (lambda t: t.replace('"Ada"', '"Ada 2"', 1), "not as the field rules leave"),
    ],
    ids=["ssn", "lf", "unquoted", "required", "digit-in-name"],
)
def test_a_hand_edited_export_is_refused_by_send(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
    edit: Any,
    message: str,
) -> None:
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    assert connector("run", "-c", str(job.path)).returncode == 0
    export = job.output_folder / "students.csv"
    text = export.read_bytes().decode("ascii")
    first = text.split("\r\n")[1].split(",")[1]
    text = text.replace(first, '"Ada"', 1)
    export.write_bytes(edit(text).encode("ascii"))

    result = connector("send", "-c", str(job.path), str(export))

    assert result.returncode == ExitCode.FAILURE, result.stderr
    assert message in result.stderr
    assert "6789" not in result.stderr


def test_exports_are_owner_only_and_send_writes_its_report(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    assert connector("run", "-c", str(job.path)).returncode == 0
    for path in job.output_folder.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path.name
    assert job.upload_log.stat().st_mode & 0o077 == 0

    sent = connector("send", "-c", str(job.path))

    assert sent.returncode == 0, sent.stderr
    report = json.loads((job.output_folder / "run-report.json").read_text())
    assert (report["command"], report["outcome"]) == ("send", "sent")
    assert len(report["uploads"]) == 3


@pytest.mark.parametrize(
    "token",
    [TOKEN + " ", TOKEN + "\nsecond line", "tökén-" + TOKEN, ""],
    ids=["trailing-space", "two-lines", "non-ascii", "empty"],
)
@pytest.mark.parametrize("kind", ["https", "tus"])
def test_a_malformed_token_stops_before_any_upload_and_is_never_shown(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
    token: str,
    kind: str,
) -> None:
    """A token the HTTP library would refuse (its error shows the header value)
    is caught before anything is extracted or sent, naming only the secret."""
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "upload-token").write_text(token)
    (secrets / "upload-token").chmod(0o600)
    config = job.path.read_text().replace(
        "[destination]",
        f'[secrets]\nfolder = "{secrets}"\n[destination]\nkind = "{kind}"',
    )
    job.path.write_text(config)

    result = subprocess.run(
        [*connector_command(), "run", "-c", str(job.path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=120,
    )

    assert result.returncode == ExitCode.SECRETS_OR_AUTH, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: secret 'upload-token' (destination.token_secret)")
    everything = result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".log", ".csv"):
            everything += path.read_text(errors="replace")
    assert TOKEN not in everything
    assert list(live.folder.glob("*")) == []


@pytest.mark.parametrize("via", ["url", "odbc"])
def test_a_text_in_another_encoding_is_named_never_shown(
    tmp_path: Path,
    district: Path,  # noqa: F811
    via: str,
) -> None:
    """A Latin-1 name in a UTF-8 database: the error says what to set and never
    prints the name (SQLite's own message quotes it)."""
    db = tmp_path / "sis.db"
    shutil.copy(district / "sis.db", db)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE students SET first_name = CAST(X'4A6F73E9' AS TEXT) "
            "WHERE id = (SELECT MIN(id) FROM students)"
        )
    source = (
        f'url = "sqlite:///{db}"'
        if via == "url"
        else f'odbc = "DRIVER={{SQLite3}};Database={db}"'
    )
    folder = f'kind = "folder"\npath = "{tmp_path}"\n'
    keys = f'recipient_cert = "{district / "keys" / "recipient.asc"}"'
    job = make_job(
        tmp_path, district, "", Path(), db=db, source=source, destination=folder + keys
    )

    result = subprocess.run(
        [*connector_command(), "extract", "-c", str(job.path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=120,
    )

    assert result.returncode == ExitCode.FAILURE, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "students.sql.j2" in line
    assert "Jos" not in result.stdout + result.stderr
    if via == "odbc":
        assert "set source.encoding" in line
    report = (job.output_folder / "run-report.json").read_text()
    assert "Jos" not in report


def verified_uploads(job: Any) -> int:
    """The verified uploads in the attempt log (payloads and manifests)."""
    if not job.upload_log.exists():
        return 0
    lines = job.upload_log.read_text(encoding="utf-8").splitlines()
    return sum(json.loads(line).get("outcome") == "verified" for line in lines)


@contextlib.contextmanager
def unreplaceable(path: Path, how: str) -> Iterator[None]:
    """``path`` made a file this process cannot replace, even as root."""
    if how == "a folder in its place":
        path.unlink()
        (path / "inside").mkdir(parents=True)
        try:
            yield
        finally:
            shutil.rmtree(path)
        return
    chattr = shutil.which("chattr")
    require(chattr is not None, "chattr is not installed (e2fsprogs)")
    assert chattr is not None
    refused = subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode
    require(
        not refused, f"chattr +i is refused here (file system or privileges): {path}"
    )
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("staff.csv", "a folder in its place"),
        ("staff.csv", "immutable"),
        ("students.csv", "immutable"),
    ],
)
def test_a_sent_export_that_cannot_be_published_is_still_recorded_as_sent(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
    name: str,
    how: str,
) -> None:
    """Every upload verified, then an export cannot be put into the output
    folder: the send is recorded (date, nothing pending, report), the run says
    so in one line and exits 1, and the output folder keeps the last night whole."""
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    config = str(job.path)
    assert connector("run", "-c", config).returncode == 0
    first = json.loads((job.output_folder / "run-report.json").read_text())
    uploads = verified_uploads(job)
    target = job.output_folder / name

    with unreplaceable(target, how):
        yesterday = snapshot(job.output_folder)
        before = sorted(p.name for p in job.output_folder.iterdir())

        result = connector("run", "-c", config, "--force")

        assert result.returncode == ExitCode.FAILURE, result.stderr
        [error] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        assert "3 uploads were delivered and verified" in error, error
        assert f"cannot replace {target}" in error, error
        assert "keeps those of the previous send" in error, error
        assert "Nothing needs to be sent again" in error, error
        report = json.loads((job.output_folder / "run-report.json").read_text())
        assert report["run_id"] != first["run_id"]
        assert report["outcome"] == "failed" and report["error"] in error
        assert len(report["uploads"]) == 3
        summary = result.stdout.splitlines()[-1]
        assert summary.startswith(f"run {report['run_id']}: failed (exit 1); ")
        assert "3 uploads verified" in summary
        assert "data set  " in result.stdout
        assert sum(x.startswith("sent ") for x in result.stdout.splitlines()) == 3
        # Last night's exports, whole, and no file left behind.
        assert sorted(p.name for p in job.output_folder.iterdir()) == before
        assert snapshot(job.output_folder) == yesterday
        # The send is recorded: the date, nothing pending, the gate's baselines.
        dates = json.loads((job.state_folder / "sent-dates.json").read_text())
        assert [d["run_id"] for d in dates.values()] == [report["run_id"]]
        assert sorted(p.name for p in job.pending_folder.iterdir()) == []
        assert not (job.state_folder / "pending-date.json").exists()
        kept = job.state_folder / "unpublished.json"
        assert kept.stat().st_mode & 0o777 == 0o600  # owner-only, as every state file
        with contextlib.closing(sqlite3.connect(job.state_store)) as store:
            baselines = store.execute("SELECT run_id FROM baseline").fetchall()
        assert baselines == [(report["run_id"],)] * 3
        sent = verified_uploads(job)
        assert sent == 2 * uploads

        again = connector("run", "-c", config)
        assert again.returncode == ExitCode.ALREADY_DONE, again.stderr
        # Nothing pending: send turns to the output folder, whose exports are
        # older than those sent, and refuses them.
        resend = connector("send", "-c", config)
        assert resend.returncode == ExitCode.FAILURE, resend.stderr
        [error] = [x for x in resend.stderr.splitlines() if x.startswith("error:")]
        assert "older than the last verified send" in error, error
        assert f"run {report['run_id']} sent newer exports" in error, error
        assert verified_uploads(job) == sent

    fixed = connector("run", "-c", config, "--force")
    assert fixed.returncode == 0, fixed.stderr
    assert (job.output_folder / name).is_file()
    assert sorted(p.name for p in job.pending_folder.iterdir()) == []
    resend = connector("send", "-c", config)
    assert resend.returncode == 0, resend.stderr


def test_a_held_send_that_cannot_be_published_is_still_that_days_send(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    """`connector send` of what a held run left pending, verified, then the
    output folder cannot take it: the date is sent and nothing stays pending."""
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    config = str(job.path)
    assert connector("run", "-c", config).returncode == 0
    heartbeat = (job.state_folder / "heartbeat.json").read_bytes()
    template = tmp_path / "queries" / "staff.sql.j2"
    template.write_text("SELECT * FROM (" + template.read_text() + ") WHERE 1 = 0")
    held = connector("run", "-c", config, "--force")
    assert held.returncode == ExitCode.HELD, held.stderr
    assert (job.state_folder / "pending-date.json").exists()
    uploads = verified_uploads(job)

    with unreplaceable(job.output_folder / "students.csv", "a folder in its place"):
        before = sorted(p.name for p in job.output_folder.iterdir())
        sent = connector("send", "-c", config, "--accept-change")

        assert sent.returncode == ExitCode.FAILURE, sent.stderr
        [error] = [x for x in sent.stderr.splitlines() if x.startswith("error:")]
        assert error.startswith("error: the send is done: 3 uploads were"), error
        assert sum(x.startswith("sent ") for x in sent.stdout.splitlines()) == 3
        assert sorted(p.name for p in job.output_folder.iterdir()) == before
        assert sorted(p.name for p in job.pending_folder.iterdir()) == []
        assert not (job.state_folder / "pending-date.json").exists()
        report = json.loads((job.output_folder / "run-report.json").read_text())
        assert (report["command"], report["outcome"]) == ("send", "failed")
        dates = json.loads((job.state_folder / "sent-dates.json").read_text())
        assert [d["run_id"] for d in dates.values()] == [report["run_id"]]
        # Exit 1 is no good run: the heartbeat still names the first.
        assert (job.state_folder / "heartbeat.json").read_bytes() == heartbeat
        assert verified_uploads(job) > uploads
        uploads = verified_uploads(job)

        assert connector("run", "-c", config).returncode == ExitCode.ALREADY_DONE
        assert connector("send", "-c", config).returncode == ExitCode.FAILURE
        assert verified_uploads(job) == uploads


def test_an_upload_verified_before_a_later_step_failed_is_counted(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    """The students payload arrives and is verified; its manifest then cannot be
    stored (a folder holds its name on the receiver): the run fails, and its
    summary and report say that one upload was verified, not none."""
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    (live.folder / "students.csv.manifest.json" / "in-the-way").mkdir(parents=True)

    result = connector("run", "-c", str(job.path))

    assert result.returncode != 0, result.stdout
    [summary] = [x for x in result.stdout.splitlines() if x.startswith("run ")]
    assert "; 1 uploads verified" in summary or "; 1 upload verified" in summary, (
        summary
    )
    assert verified_uploads(job) == 1
