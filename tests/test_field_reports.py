"""Problems a tester found on the sample SIS, each with the behaviour that fixes it
(SQLite via SQLAlchemy, the real receiver, the installed ``connector`` script)."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.checks import check_job
from connector.cli import os_error_line
from connector.config import Job, load_job
from connector.errors import (
    ConfigError,
    ConnectorError,
    ExitCode,
    ExportError,
    TemplateError,
)
from connector.gate import StateStore
from connector.pipeline import check_not_empty, extract
from connector.receiver import Receiver
from connector.templates import render_query

from .conftest import TOKEN, require
from .test_destinations import folder_job
from .test_pipeline import district, make_job  # noqa: F401 - district is a fixture
from .test_run_rules import connector, live, sis  # noqa: F401 - fixtures


def test_extract_after_a_held_run_supersedes_the_pending_exports(
    tmp_path: Path,
    district: Path,  # noqa: F811
    sis: Path,  # noqa: F811
    live: Receiver,  # noqa: F811
) -> None:
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file, db=sis)
    config = str(job.path)
    assert connector("run", "-c", config).returncode == 0
    saved = tmp_path / "saved.db"
    shutil.copyfile(sis, saved)
    with sqlite3.connect(sis) as db:
        db.execute("DELETE FROM students WHERE id % 4 = 0")
    db.close()
    assert connector("run", "-c", config, "--force").returncode == ExitCode.HELD
    assert (job.pending_folder / "students.csv").is_file()
    # The DBA fixes the data and extracts again: these are the exports to send.
    shutil.copyfile(saved, sis)

    extracted = connector("extract", "-c", config)

    assert extracted.returncode == 0, extracted.stderr
    assert "pending exports superseded by this extract" in extracted.stderr
    assert not (job.pending_folder / "students.csv").exists()
    newer = (job.output_folder / "students.csv").read_bytes()
    sent = connector("send", "-c", config, "--accept-change")
    assert sent.returncode == 0, sent.stderr
    assert (job.output_folder / "students.csv").read_bytes() == newer
    assert "sent students.csv" in sent.stdout


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_SECRET_UPLOAD_TOKEN", TOKEN)


CA = Path(__file__)  # any file: these configs fail before the CA is read


@pytest.fixture
def offline(tmp_path: Path, district: Path) -> Job:  # noqa: F811
    """A job on the sample SIS whose destination is never reached."""
    return make_job(tmp_path, district, "https://127.0.0.1:9/", CA)


def with_lines(job: Job, after: str, lines: str) -> Path:
    """The job's config file with ``lines`` added after the line ``after``."""
    text = job.path.read_text(encoding="utf-8")
    assert after + "\n" in text
    job.path.write_text(text.replace(after + "\n", f"{after}\n{lines}\n", 1))
    return job.path


def test_a_misspelt_params_name_is_a_config_error(offline: Job) -> None:
    job = offline
    config = with_lines(job, "[params]", 'school = ["0427"]')

    with pytest.raises(ConfigError) as caught:
        load_job(config)

    message = str(caught.value)
    assert message.startswith(f"{config}: params.school: no template uses it")
    assert "start_date" in message and "schools" in message


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` (or a file) made immutable: tests run as root, where chmod
    stops no write."""
    if not folder.exists():
        folder.mkdir(parents=True)
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    require(made.returncode == 0, f"chattr +i does not work here: {made.stderr!r}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def assert_one_line(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == ExitCode.FAILURE, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "unexpected" not in line and "please report it" not in line, line
    for part in parts:
        assert part in line, line


def test_a_read_only_output_folder_is_named_with_its_setting(offline: Job) -> None:
    job = offline
    with read_only(job.output_folder) as folder:
        result = connector("extract", "-c", str(job.path))
    assert_one_line(
        result,
        f"cannot write {folder}/.students.csv.",
        f"check that output.folder {folder} exists and this account may write there",
    )


def test_an_output_folder_that_is_a_file_is_named_with_its_setting(
    offline: Job,
) -> None:
    job = offline
    job.output_folder.write_text("not a folder")
    result = connector("extract", "-c", str(job.path))
    assert_one_line(result, f"output.folder {job.output_folder} must be a folder")


def test_extract_to_a_read_only_folder_names_the_option(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    job = make_job(tmp_path, district, "https://127.0.0.1:9/", CA)
    with read_only(tmp_path / "elsewhere") as folder:
        result = connector("extract", "-c", str(job.path), "--to", str(folder))
    assert_one_line(result, f"check that --to {folder} exists")
    assert not (folder / "run-report.json").exists()


def test_demo_in_a_read_only_folder_names_the_option(tmp_path: Path) -> None:
    with read_only(tmp_path / "demo") as folder:
        result = connector("demo", "--folder", str(folder), "--students", "10")
    assert_one_line(result, f"check that --folder {folder} exists")


def test_a_full_disk_names_the_device_and_the_setting(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "a.csv"))
    line = os_error_line(full, [("output.folder", folder)])
    assert line == (
        f"cannot write {folder / 'a.csv'}: no space left on the device holding "
        f"{folder}; free some space there (or point output.folder elsewhere) and "
        "run again"
    )


def test_a_state_folder_that_is_not_writable_is_not_called_damaged(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,  # noqa: F811
) -> None:
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    assert connector("run", "-c", str(job.path)).returncode == 0
    store = job.state_store.read_bytes()

    with read_only(job.state_folder):
        result = connector("run", "-c", str(job.path))

    # The run lock is the first thing written there: its error names the setting.
    assert result.returncode == 1, result.stderr
    assert (
        f"check that state.folder {job.state_folder} exists and this account may "
        "write there"
    ) in result.stderr
    assert "damaged" not in result.stderr
    assert job.state_store.read_bytes() == store


def test_a_locked_store_file_is_not_writable_rather_than_damaged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "state.sqlite"
    StateStore(path).close()
    with read_only(path):
        with pytest.raises(ConnectorError, match="is not writable by this account"):
            StateStore(path)


def test_a_relative_sqlite_url_starts_from_the_config_folder(
    tmp_path: Path,
    district: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copyfile(district / "sis.db", tmp_path / "sample.db")
    job = make_job(
        tmp_path,
        district,
        "https://127.0.0.1:9/",
        CA,
        source='url = "sqlite:///sample.db"',
    )
    monkeypatch.chdir("/")
    results = extract(load_job(job.path), names=["students"])
    assert results[0].written == 200


def test_a_missing_sqlite_file_is_a_config_error_and_is_not_created(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_job(
            tmp_path,
            district,
            "https://127.0.0.1:9/",
            CA,
            source='url = "sqlite:///smaple.db"',
        )
    assert str(caught.value) == (
        f"{tmp_path / 'connector.toml'}: source.url: no SQLite database at "
        f"{tmp_path / 'smaple.db'} (a missing file is never created); check the "
        "path: a relative one starts from the config's folder"
    )
    assert not (tmp_path / "smaple.db").exists()


def test_a_config_saved_with_a_byte_order_mark_loads(offline: Job) -> None:
    job = offline
    text = job.path.read_text(encoding="utf-8")
    job.path.write_text(text, encoding="utf-8-sig")
    assert job.path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert load_job(job.path).datasets.keys() == job.datasets.keys()

    job.path.write_text(text, encoding="utf-16")
    with pytest.raises(ConfigError, match="is saved as UTF-16; save it as UTF-8"):
        load_job(job.path)


def test_an_unknown_source_encoding_is_a_config_error(offline: Job) -> None:
    job = offline
    with_lines(job, "[source]", 'encoding = "utf-9"')
    with pytest.raises(ConfigError, match="source.encoding: unknown encoding 'utf-9'"):
        load_job(job.path)


def test_connector_test_checks_the_destination_without_sending(
    tmp_path: Path,
    district: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    live: Receiver,  # noqa: F811
) -> None:
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    good = check_job(job, rows=1)
    assert good.is_ok
    assert good.destination.verdict.startswith(f"ok ({live.url}; secrets found; ")
    assert good.destination.verdict.endswith("; nothing sent)")

    monkeypatch.delenv("CONNECTOR_SECRET_UPLOAD_TOKEN")
    missing = check_job(job, rows=1)
    assert not missing.is_ok and all(d.is_ok for d in missing.datasets)
    assert missing.destination.verdict.startswith("FAILED: ")
    assert "upload-token" in missing.destination.verdict

    pinned = with_lines(job, "[destination]", f'recipient_fingerprint = "{"AB" * 20}"')
    result = connector("test", "-c", str(pinned))
    assert result.returncode == ExitCode.FAILURE, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("destination:")]
    assert line.startswith("destination: FAILED: recipient certificate ")
    assert "destination.recipient_fingerprint" in line
    assert "students: ok" in result.stdout
    assert not live.folder.exists() or not any(live.folder.iterdir())


def test_one_bad_template_does_not_fail_the_later_checks_on_postgresql(
    tmp_path: Path,
    sis_loaded: None,
) -> None:
    require(importlib.util.find_spec("psycopg") is not None, "psycopg is missing")
    queries = tmp_path / "queries"
    shutil.copytree(Path(__file__).parents[1] / "queries" / "rosariosis", queries)
    (queries / "students.sql.j2").write_text("SELECT no_such_column FROM students")
    config = tmp_path / "connector.toml"
    config.write_text(
        """
[source]
url = "postgresql+psycopg://postgres@127.0.0.1:5432/sis_rosariosis"
[params]
school_year = 2024
start_date = 2024-08-19
end_date = 2024-10-04
[datasets.students]
template = "queries/students.sql.j2"
[datasets.attendance]
template = "queries/attendance.sql.j2"
[datasets.staff]
template = "queries/staff.sql.j2"
""",
        encoding="utf-8",
    )
    outcome = check_job(load_job(config), rows=2)
    verdicts = {d.name: d.verdict for d in outcome.datasets}
    assert verdicts["students"].startswith("FAILED: ")
    assert "no_such_column" in verdicts["students"]
    assert verdicts["attendance"].startswith("ok: columns match"), verdicts
    assert verdicts["staff"].startswith("ok: columns match"), verdicts


def test_extract_honours_allow_empty_as_run_does(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    job = make_job(
        tmp_path, district, "https://127.0.0.1:9/", CA, staff="allow_empty = true"
    )
    template = job.template_path("staff")
    template.write_text("SELECT * FROM (" + template.read_text() + ") WHERE 1 = 0")

    results = {r.dataset: r for r in extract(job)}

    assert results["staff"].written == 0
    assert (job.output_folder / "staff.csv").read_text().count("\n") == 1
    strict = make_job(tmp_path, district, "https://127.0.0.1:9/", CA)
    template.write_text("SELECT * FROM (" + template.read_text() + ") WHERE 1 = 0")
    with pytest.raises(ExportError, match="data set staff: the query returned no rows"):
        extract(strict)


def test_rows_all_rejected_are_not_called_an_empty_result(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    job = make_job(tmp_path, district, "https://127.0.0.1:9/", CA)
    with pytest.raises(ExportError, match="staff: all 6 rows fetched were rejected"):
        check_not_empty(job, "staff", 0, 6)


def test_demo_refuses_a_folder_that_is_not_an_earlier_demo(tmp_path: Path) -> None:
    folder = tmp_path / "dba"
    (folder / "queries").mkdir(parents=True)
    (folder / "connector.toml").write_text("# the district's real config\n")
    (folder / "queries" / "students.sql.j2").write_text("SELECT 1\n")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    refused = connector("demo", "--folder", str(folder), "--students", "10")

    assert refused.returncode == ExitCode.USAGE, refused.stderr
    [line] = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: --folder {folder} is not empty and is not an ")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before

    demo = tmp_path / "demo"
    for _ in range(2):  # an earlier demo's folder may be used again
        again = connector("demo", "--folder", str(demo), "--students", "10")
        assert again.returncode == 0, again.stderr


def test_a_quoted_placeholder_names_the_template_line_and_the_fix(offline: Job) -> None:
    job = offline
    template = job.template_path("attendance")
    lines = template.read_text().splitlines()
    [number] = [n for n, x in enumerate(lines, 1) if "{{ start_date }}" in x]
    lines[number - 1] = lines[number - 1].replace(
        "{{ start_date }}", "'{{ start_date }}'"
    )
    template.write_text("\n".join(lines) + "\n")

    with pytest.raises(TemplateError) as caught:
        extract(job)

    assert str(caught.value).startswith(
        f"template {template}, line {number}: a placeholder is inside SQL quotes; "
        "remove the quotes around it"
    )
    assert "every value is bound as a parameter" in str(caught.value)


@pytest.mark.parametrize("text", ["", "\n  \n", "{# only a comment #}\n"])
def test_an_empty_template_is_a_template_error(tmp_path: Path, text: str) -> None:
    template = tmp_path / "students.sql.j2"
    template.write_text(text)
    with pytest.raises(TemplateError, match=f"template {template} is empty"):
        render_query(template, {})


def test_config_errors_list_every_problem_and_count_columns_from_one(
    offline: Job,
) -> None:
    job = offline
    with_lines(job, "[datasets.staff]", 'on_row_eror = "drop"\nmax_rejected = "5%"')
    with job.path.open("a", encoding="utf-8") as config:
        for name, header in (("room", "Room"), ("desk", " Desk")):
            config.write(
                f'[[datasets.staff.columns]]\nname = "{name}"\n'
                f'header = "{header}"\nkind = "text"\n'
            )
    with pytest.raises(ConfigError) as caught:
        load_job(job.path)
    message = str(caught.value)
    assert "\n" not in message and "more)" not in message
    assert message.startswith(f"{job.path}: datasets.staff.on_row_eror: unknown key")
    assert "; datasets.staff.max_rejected: Input should be" in message
    assert "; datasets.staff.columns[2].header: must be 1 to 100" in message


def test_extract_prints_rows_and_bytes_per_export(offline: Job) -> None:
    result = connector("extract", "-c", str(offline.path))
    assert result.returncode == 0, result.stderr
    export = offline.output_folder / "students.csv"
    size = export.stat().st_size
    assert f"students: {export} (200 rows, {size} bytes)" in result.stdout.splitlines()


def test_extract_prints_an_empty_export_too(offline: Job) -> None:
    # A day without absences: attendance may be empty, and its file is written.
    template = offline.template_path("attendance")
    body = template.read_text(encoding="utf-8").strip().rstrip(";")
    template.write_text(f"SELECT * FROM (\n{body}\n) no_rows WHERE 1 = 0\n")
    result = connector("extract", "-c", str(offline.path))
    assert result.returncode == 0, result.stderr
    export = offline.output_folder / "attendance.csv"
    size = export.stat().st_size
    assert f"attendance: {export} (0 rows, {size} bytes)" in result.stdout.splitlines()


def test_help_and_readme_say_what_the_commands_take() -> None:
    send = connector("send", "--help")
    assert "see below" not in send.stdout
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert "Every command takes" not in readme
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    modules = Path(__file__).parents[1] / "connector"
    for module in sorted(modules.glob("*.py")):
        if module.stem not in ("__init__", "cli"):
            assert f"`{module.stem}`" in layout, module.stem
    gate = readme.split("## Validation, row accounting and the safety gate")[1]
    assert "`max_drop = 1.0`" in gate and "`allow_empty = true`" in gate


def test_connector_test_names_a_missing_destination_folder(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    job, dropbox = folder_job(tmp_path, district)
    outcome = check_job(job, rows=1)
    assert not outcome.is_ok
    assert outcome.destination.verdict == (
        f"FAILED: destination.path: no folder at {dropbox}; create it (or mount "
        "the share) before the nightly run"
    )
    dropbox.mkdir()
    assert check_job(job, rows=1).destination.verdict.startswith(f"ok ({dropbox}")


@pytest.mark.parametrize(
    "param",
    [
        ["--param", "start_date=2026-13-01"],
        ["--param", "start_date"],
        ["--param", "start_date=2026-12-01", "--param", "end_date=2026-01-01"],
    ],
    ids=["not-a-date", "no-equals", "swapped-dates"],
)
def test_a_bad_param_on_run_is_a_usage_error_not_a_crash(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,  # noqa: F811
    param: list[str],
) -> None:
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)

    result = connector("run", "-c", str(job.path), *param)

    assert result.returncode == ExitCode.USAGE, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "--param" in line and "unexpected" not in line
    assert list(live.folder.glob("*")) == []


def test_the_database_side_can_be_set_up_before_the_services_key_arrives(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,  # noqa: F811
) -> None:
    """`connector test` checks the database without the recipient key; a run
    stops before extracting, naming the setting (exit 2)."""
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file)
    key = district / "keys" / "recipient.asc"
    job.path.write_text(job.path.read_text().replace(str(key), "not-yet.asc"))

    tested = connector("test", "-c", str(job.path))
    assert "students: ok" in tested.stdout + tested.stderr, tested.stderr
    assert "not-yet.asc does not exist" in tested.stdout + tested.stderr

    result = connector("run", "-c", str(job.path))
    assert result.returncode == ExitCode.USAGE, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "not-yet.asc does not exist; set destination.recipient_cert" in line
    assert not (job.output_folder / "students.csv").exists()
