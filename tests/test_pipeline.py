"""The pipeline on the sample SIS (SQLite) with the real local receiver."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.checks import check_job
from connector.config import Job, load_job
from connector.csvout import ExportResult, ExportWriter
from connector.errors import (
    ConfigError,
    ExportError,
    SecretError,
    TemplateError,
    UploadError,
)
from connector.package import make_keypair
from connector.pipeline import extract, run, send_pending
from connector.receiver import Receiver
from connector.sample import build_sample_sis
from connector.templates import parse_params

from .conftest import TOKEN

QUERIES = Path(__file__).parents[1] / "connector" / "demo_queries"


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("district")
    build_sample_sis(folder / "sis.db", students=200)
    make_keypair(folder / "keys")
    return folder


def make_job(
    folder: Path,
    district: Path,
    url: str,
    ca: Path,
    *,
    db: Path | None = None,
    students: str = "",
    attendance: str = "",
    staff: str = "",
    destination: str | None = None,
    **extra: str,
) -> Job:
    """A config for the sample SIS; ``students`` etc. add lines to their section."""
    queries = folder / "queries"
    shutil.copytree(QUERIES, queries, dirs_exist_ok=True)
    db = db or district / "sis.db"
    default_destination = f"""url = "{url}"
token_secret = "upload-token"
ca_file = "{ca}"
recipient_cert = "{district / "keys" / "recipient.asc"}"
attempts = 2
backoff = 0.01"""
    source = extra.get("source", f'url = "sqlite:///{db}"')
    config = folder / "connector.toml"
    config.write_text(
        f"""
[source]
{source}
[params]
start_date = 2026-03-02
end_date = 2026-03-27
[datasets.students]
template = "queries/students.sql.j2"
{students}
[datasets.attendance]
template = "queries/attendance.sql.j2"
{attendance}
[datasets.staff]
template = "queries/staff.sql.j2"
{staff}
[destination]
{destination or default_destination}
[state]
folder = "state"
[log]
folder = "logs"
""",
        encoding="utf-8",
    )
    return load_job(config)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", TOKEN, tls_dir=tmp_path / "tls") as r:
        yield r


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_SECRET_UPLOAD_TOKEN", TOKEN)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv")) if p.is_file()}


def test_send_after_a_failed_run_sends_todays_exports(
    tmp_path: Path, district: Path, live: Receiver
) -> None:
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    run(
        job,
        params={"start_date": parse_params(["start_date=2026-03-20"])["start_date"]},
    )
    yesterday = snapshot(job.output_folder)

    dead = make_job(tmp_path, district, "https://127.0.0.1:9/files/", live.ca_file)
    with pytest.raises(UploadError, match="connector send"):
        run(dead)
    assert snapshot(job.output_folder) == yesterday
    today = snapshot(job.pending_folder)
    assert today["attendance.csv"] != yesterday["attendance.csv"]

    send_pending(job)

    assert snapshot(job.output_folder) == today
    assert list(job.pending_folder.iterdir()) == []


@pytest.mark.parametrize("policy", ["fail", "drop"])
def test_a_required_field_left_empty(
    tmp_path: Path, district: Path, policy: str
) -> None:
    job = make_job(
        tmp_path,
        district,
        "https://127.0.0.1:9/",
        district / "keys" / "recipient.asc",
        students=f'on_row_error = "{policy}"\nmax_rejected = 0.01',
    )
    job.output_folder.mkdir()
    (job.output_folder / "students.csv").write_bytes(b"yesterday")
    template = tmp_path / "queries" / "students.sql.j2"
    text = template.read_text()
    template.write_text(
        text.replace("SELECT", "SELECT * FROM (SELECT", 1)
        + (
            ") WHERE 1 = 1 UNION ALL SELECT NULL, 'A', 'B', NULL, '101', "
            "NULL, NULL, NULL, '1', 'F'"
        )
    )
    if policy == "fail":
        with pytest.raises(
            ExportError,
            match=r"data set students, row 201 \(ID empty\), column student_id: "
            "required but empty",
        ):
            extract(job, names=["students"])
        assert snapshot(job.output_folder) == {"students.csv": b"yesterday"}
        return
    [result] = extract(job, names=["students"])
    assert (result.fetched, result.written, result.rejected) == (201, 200, 1)
    assert result.expected == 201
    assert [n.as_dict() for n in result.notes if n.rule == "required_empty"] == [
        {"row": 201, "id": "", "column": "student_id", "rule": "required_empty"}
    ]


@pytest.mark.parametrize(
    ("items", "error", "text"),
    [
        (["shcools=101"], ConfigError, "no template uses it"),
        (["start_date=03/02/2026"], TemplateError, "not a date"),
        (["start_date=2026-02-30"], TemplateError, "not a date"),
        (["schools=101", "schools=102"], TemplateError, "given twice"),
    ],
    ids=["unused", "us-date", "impossible-date", "repeated"],
)
def test_param_mistakes_stop_before_any_query(
    tmp_path: Path, district: Path, items: list[str], error: type[Exception], text: str
) -> None:
    job = make_job(
        tmp_path, district, "https://127.0.0.1:9/", district / "keys" / "recipient.asc"
    )
    with pytest.raises(error, match=text):
        extract(job, params=parse_params(items))
    assert not job.output_folder.exists()


def test_missing_token_stops_before_connecting(
    tmp_path: Path, district: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONNECTOR_SECRET_UPLOAD_TOKEN")
    job = make_job(
        tmp_path,
        district,
        "https://127.0.0.1:9/",
        district / "keys" / "recipient.asc",
        source='odbc = "DRIVER={No Such Driver};DATABASE=x"',
    )
    with pytest.raises(SecretError, match="upload-token"):
        run(job)


def test_check_fails_a_students_query_with_no_rows(
    tmp_path: Path, district: Path
) -> None:
    job = make_job(
        tmp_path, district, "https://127.0.0.1:9/", district / "keys" / "recipient.asc"
    )
    template = tmp_path / "queries" / "students.sql.j2"
    template.write_text("SELECT * FROM (" + template.read_text() + ") WHERE 1 = 0")
    outcome = check_job(job)
    [students] = [d for d in outcome.datasets if d.name == "students"]
    assert not outcome.is_ok and "no rows" in students.verdict


def test_send_of_a_folder_says_it_is_a_folder(
    tmp_path: Path, district: Path, live: Receiver
) -> None:
    from connector.pipeline import send

    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    folder = tmp_path / "students.csv"
    folder.mkdir()
    with pytest.raises(ExportError, match="is a folder, not a file"):
        send(job, [folder])


@pytest.mark.parametrize("how", ["a folder in its place", "held open"])
def test_an_export_that_cannot_be_replaced_changes_no_export(
    tmp_path: Path,
    district: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    # Students and attendance are moved into place first; then staff cannot
    # be, and the two are put back: yesterday's three exports stay together.
    ca = district / "keys" / "recipient.asc"  # any file: nothing is sent
    job = make_job(tmp_path, district, "https://127.0.0.1:9/files/", ca)
    extract(
        job,
        params={"start_date": parse_params(["start_date=2026-03-20"])["start_date"]},
    )
    staff = job.output_folder / "staff.csv"
    if how == "a folder in its place":
        staff.unlink()
        (staff / "inside").mkdir(parents=True)
    else:  # as Windows refuses to replace a file another program holds open
        commit = ExportWriter.commit

        def refuse(writer: ExportWriter, **kw: bool) -> ExportResult:
            if writer.path == staff:
                raise PermissionError(13, "The process cannot access the file")
            return commit(writer, **kw)

        monkeypatch.setattr(ExportWriter, "commit", refuse)
    yesterday = snapshot(job.output_folder)
    before = sorted(p.name for p in job.output_folder.iterdir())

    caplog.clear()
    caplog.set_level(logging.INFO, logger="connector")
    with pytest.raises(ExportError, match=r"cannot replace .*staff\.csv .*no export"):
        extract(job)

    # The exports put back were never said to be written.
    assert not [r for r in caplog.messages if " written: " in r], caplog.messages

    assert snapshot(job.output_folder) == yesterday
    after = sorted(p.name for p in job.output_folder.iterdir())
    assert after == before, (after, before)
