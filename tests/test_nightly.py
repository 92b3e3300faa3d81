"""``connector run`` as a scheduler starts it: the installed script, no terminal,
a bare environment; secrets, the run lock, the business date, the logs and the
heartbeat. The sample SIS (SQLite) or the real rosariosis database over psqlODBC,
the real local receiver."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.receiver import Receiver

from .conftest import TOKEN, connector_command
from .keyring_store import BACKEND
from .test_integration import write_config
from .test_pipeline import district, make_job  # noqa: F401 - district is a fixture

ROOT = Path(__file__).parents[1]
FAIL_KEYRING = "keyring.backends.fail.Keyring"
CANARY = "Canary-7q!Zx;{pw}-c5a"
TOKEN_CANARY = "Canary-7qZx-token-c5a"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", TOKEN, tls_dir=tmp_path / "tls") as r:
        yield r


def bare_env(**extra: str) -> dict[str, str]:
    """What a scheduler gives a job: a PATH and little else."""
    return {"PATH": "/usr/bin:/bin", "PYTHON_KEYRING_BACKEND": FAIL_KEYRING, **extra}


def connector(
    *args: str, env: dict[str, str], cwd: Path | str = "/", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *connector_command()]
        + list(args),
        capture_output=True,
        text=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def secret_file(folder: Path, name: str, value: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def sample_job(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
    extra: str = "",
    *,
    url: str | None = None,
) -> Path:
    """The sample SIS job, its upload token in an owner-only secrets folder."""
    assert live.ca_file is not None
    job = make_job(tmp_path, district, url or live.url, live.ca_file)
    secret_file(tmp_path / "secrets", "upload-token", TOKEN)
    with job.path.open("a", encoding="utf-8") as f:
        f.write('[secrets]\nfolder = "secrets"\n' + extra)
    return job.path


def written_files(folder: Path) -> str:
    """Everything the run wrote, as text, to search for a leaked value."""
    texts = []
    for path in sorted(folder.rglob("*")):
        if path.name == "keyring.json":  # the stand-in OS store itself
            continue
        if path.is_file() and path.suffix in (".log", ".jsonl", ".json", ".csv"):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(texts)


def test_missing_secret_stops_before_any_connection_with_every_place(
    tmp_path: Path,
) -> None:
    """Fail keyring, no other source: exit 3 in seconds, no prompt, no traceback."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (tmp_path / "secrets").mkdir()
    config = tmp_path / "connector.toml"
    # Nothing listens on port 9: any connection attempt would show in the error.
    config.write_text(
        """
[source]
odbc = "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=9;DATABASE=x;UID=c5a"
password_secret = "sis-db"
login_timeout = 30
[datasets.students]
template = "students.sql.j2"
[destination]
url = "https://127.0.0.1:9/files/"
token_secret = "upload-token"
encryption = "age"
age_recipient = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"
[state]
folder = "state"
[log]
folder = "logs"
[secrets]
folder = "secrets"
""",
        encoding="utf-8",
    )
    (tmp_path / "students.sql.j2").write_text("SELECT 1")

    started = time.monotonic()
    result = connector(
        "run",
        "-c",
        str(config),
        env=bare_env(CREDENTIALS_DIRECTORY=str(credentials)),
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 3, result.stderr
    assert elapsed < 10
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    for name, var in (("sis-db", "SIS_DB"), ("upload-token", "UPLOAD_TOKEN")):
        assert f"secret {name!r} not found" in error
        assert f"secrets folder {tmp_path / 'secrets' / name}" in error
        assert f"systemd credentials {credentials / name}" in error
        assert f"environment variable CONNECTOR_SECRET_{var}" in error
    assert "OS keyring (skipped: backend Keyring)" in error
    assert "LoadCredential=sis-db:" in error
    assert f"connector secrets set sis-db -c {config}" in error
    assert "chmod" not in error and "mode 0600" in error
    assert "Traceback" not in result.stderr
    assert "cannot connect" not in result.stderr and "port 9" not in result.stderr
    assert "value of" not in result.stdout + result.stderr  # no prompt
    events = [
        json.loads(line)
        for line in (tmp_path / "logs" / "events.jsonl").read_text().splitlines()
    ]
    assert [e["event"] for e in events] == ["run_start", "run_end"]
    assert events[-1]["exit_code"] == 3


def test_env_i_with_a_0600_secret_file_succeeds(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    config = sample_job(tmp_path, district, live)

    result = connector("run", "-c", str(config), env={"PATH": "/usr/bin:/bin"})

    assert result.returncode == 0, result.stderr
    assert (live.folder / "students.csv.gz.pgp").exists()
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith("run ") and ": sent (exit 0); business date " in summary
    assert "3 uploads verified" in summary
    assert "environment variable" not in result.stderr  # no env-var warning
    heartbeat = json.loads((tmp_path / "state" / "heartbeat.json").read_text())
    assert heartbeat["business_date"] == summary.split("business date ")[1][:10]
    assert heartbeat["datasets"]["students"]["written"] > 0
    assert heartbeat["uploads"] == 3
    events = [
        json.loads(line)
        for line in (tmp_path / "logs" / "events.jsonl").read_text().splitlines()
    ]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert kinds.count("dataset_extracted") == 3
    assert kinds.count("gate_verdict") == 3
    assert kinds.count("upload_verified") == 3
    assert {e["run_id"] for e in events} == {heartbeat["run_id"]}
    log_text = (tmp_path / "logs" / "connector.log").read_text()
    assert heartbeat["run_id"] in log_text and "data set students" in log_text
    mode = (tmp_path / "logs" / "connector.log").stat().st_mode & 0o777
    assert mode == 0o600


def test_an_environment_secret_warns_naming_the_variable(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    config = sample_job(tmp_path, district, live)
    (tmp_path / "secrets" / "upload-token").unlink()

    result = connector(
        "run",
        "-c",
        str(config),
        env=bare_env(CONNECTOR_SECRET_UPLOAD_TOKEN=TOKEN),
    )

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "CONNECTOR_SECRET_UPLOAD_TOKEN" in warnings[0]
    assert TOKEN not in result.stderr + result.stdout


SOURCES = ["folder", "credentials", "file-variable", "environment", "keyring"]


def test_every_command_that_reads_or_sends_leaves_its_lines_in_the_logs(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    """test, extract, send and backfill are logged as a run is, each under its own
    run ID; a failed manual extract leaves the error line it printed."""
    config = str(sample_job(tmp_path, district, live))
    env = bare_env()
    results = {
        "test": connector("test", "-c", config, env=env),
        "extract": connector("extract", "-c", config, env=env),
        "send": connector("send", "-c", config, env=env),
        "backfill": connector(
            "backfill",
            "attendance",
            "--from",
            "2026-03-02",
            "--to",
            "2026-03-13",
            "-c",
            config,
            env=env,
        ),
    }
    for command, result in results.items():
        assert result.returncode == 0, (command, result.stderr)
    (tmp_path / "queries" / "staff.sql.j2").write_text("SELECT no_such FROM staff")
    failed = connector("extract", "-c", config, env=env)
    assert failed.returncode == 1, failed.stderr
    [error] = [ln for ln in failed.stderr.splitlines() if ln.startswith("error:")]

    events = [
        json.loads(line)
        for line in (tmp_path / "logs" / "events.jsonl").read_text().splitlines()
    ]
    ends = [e for e in events if e["event"] == "run_end"]
    starts = [e for e in events if e["event"] == "run_start"]
    said = ["test", "extract", "send", "backfill", "extract"]
    assert [e["command"] for e in starts] == [e["command"] for e in ends] == said
    assert [e["run_id"] for e in starts] == [e["run_id"] for e in ends]
    assert len({e["run_id"] for e in ends}) == 5
    assert [e["outcome"] for e in ends] == [
        "ok",
        "extracted",
        "sent",
        "written",
        "failed",
    ]
    assert ends[-1]["exit_code"] == 1 and ends[-1]["error"] == error[len("error: ") :]
    kinds = [e["event"] for e in events]
    assert kinds.count("dataset_extracted") == 3 + 1  # the failed one: students
    assert kinds.count("upload_verified") == 3

    log_text = (tmp_path / "logs" / "connector.log").read_text()
    for start, end in zip(starts, ends, strict=True):
        ran = [ln for ln in log_text.splitlines() if f"[{start['run_id']}]" in ln]
        assert f"connector {start['command']} started with {config}" in ran[0]
        assert f"connector {end['command']} {end['outcome']} (exit " in ran[-1]
    assert "data set students: " in log_text and "backfill attendance" in log_text
    assert (
        f"ERROR connector.outcome: connector extract failed (exit 1): {error[7:]}"
        in (log_text)
    )


def plant(source: str, name: str, value: str, tmp_path: Path) -> dict[str, str]:
    """Put ``value`` as the secret ``name`` in ``source``; returns the env to add."""
    var = "CONNECTOR_SECRET_" + name.upper().replace("-", "_")
    if source == "folder":
        secret_file(tmp_path / "secrets", name, value)
        return {}
    if source == "credentials":
        secret_file(tmp_path / "credentials", name, value)
        return {"CREDENTIALS_DIRECTORY": str(tmp_path / "credentials")}
    if source == "file-variable":
        path = secret_file(tmp_path / "elsewhere", name, value)
        return {var + "_FILE": str(path)}
    if source == "environment":
        return {var: value}
    store = tmp_path / "keyring.json"
    data = json.loads(store.read_text()) if store.exists() else {}
    data[f"connector/{name}"] = value
    store.write_text(json.dumps(data))
    return {
        "PYTHON_KEYRING_BACKEND": BACKEND,
        "CONNECTOR_TEST_KEYRING": str(store),
        "PYTHONPATH": str(ROOT),
    }


def assert_no_canary(
    result: subprocess.CompletedProcess[str], folder: Path, canary: str = CANARY
) -> None:
    for text in (result.stdout, result.stderr, written_files(folder)):
        assert canary not in text


@pytest.mark.integration
@pytest.mark.parametrize("source", SOURCES)
def test_a_canary_database_password_never_shows_when_the_login_fails(
    source: str,
    sis_loaded: None,
    tmp_path: Path,
    live: Receiver,
    gpg_keys: object,
) -> None:
    """The real MariaDB driver refuses a login with the canary as its password."""
    assert live.ca_file is not None
    config = write_config(
        tmp_path,
        "opensis",
        live.url,
        live.ca_file,
        gpg_keys.public,  # type: ignore[attr-defined]
        odbc="DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;"
        "UID=c5a_nobody;DATABASE=sis_opensis",
        password_secret="sis-db",
    )
    secret_file(tmp_path / "secrets", "upload-token", TOKEN)
    with config.open("a") as f:
        f.write('[secrets]\nfolder = "secrets"\n')
    env = bare_env(**plant(source, "sis-db", CANARY, tmp_path))

    result = connector("-v", "run", "-c", str(config), env=env)

    assert result.returncode == 3, result.stderr
    assert "refused the login" in result.stderr
    assert_no_canary(result, tmp_path)


@pytest.mark.parametrize("source", SOURCES)
def test_a_canary_token_never_shows_when_the_receiver_refuses_it(
    source: str,
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    """The real receiver answers 401 to the canary token: exit 3, never shown."""
    config = sample_job(tmp_path, district, live)
    (tmp_path / "secrets" / "upload-token").unlink()
    env = bare_env(**plant(source, "upload-token", TOKEN_CANARY, tmp_path))

    result = connector("-v", "run", "-c", str(config), env=env)

    assert result.returncode == 3, result.stderr
    assert result.stderr.count("error:") == 1
    assert "destination.token_secret" in result.stderr
    assert_no_canary(result, tmp_path, TOKEN_CANARY)


@pytest.mark.parametrize("source", SOURCES)
def test_a_canary_in_an_unexpected_exception_never_shows(
    source: str,
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    """A bug that puts the token into an exception's text, down to the last guard."""
    config = sample_job(tmp_path, district, live)
    (tmp_path / "secrets" / "upload-token").unlink()
    env = bare_env(**plant(source, "upload-token", TOKEN_CANARY, tmp_path))
    crash = (
        "import connector.upload as u\n"
        "def boom(payload, target, log):\n"
        "    raise RuntimeError(f'bug: token={target.token!r} raw={target.token}')\n"
        "u.upload_payload = boom\n"
        "import sys\n"
        "from connector.cli import main\n"
        "sys.argv = ['connector', '-v', 'run', '-c', sys.argv[1]]\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", crash, str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=120,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 1, result.stderr
    assert "unexpected RuntimeError: bug: token=" in result.stderr
    assert "***" in result.stderr
    report = json.loads((tmp_path / "exports" / "run-report.json").read_text())
    assert report["error"].startswith("unexpected RuntimeError")
    assert "RuntimeError" in (tmp_path / "logs" / "connector.log").read_text()
    assert_no_canary(result, tmp_path, TOKEN_CANARY)


def slow_rosariosis(tmp_path: Path, receiver: Receiver, keys: object) -> Path:
    """A rosariosis config whose students query sleeps a second (twice: count)."""
    assert receiver.ca_file is not None
    config = write_config(
        tmp_path,
        "rosariosis",
        receiver.url,
        receiver.ca_file,
        keys.public,  # type: ignore[attr-defined]
    )
    students = ROOT / "queries/rosariosis/students.sql.j2"
    slow = tmp_path / "slow.sql.j2"
    slow.write_text(
        "SELECT * FROM (\n"
        + students.read_text()
        + "\n) s WHERE (SELECT pg_sleep(1)) IS NOT NULL"
    )
    config.write_text(config.read_text().replace(str(students), str(slow)))
    secret_file(tmp_path / "secrets", "upload-token", TOKEN)
    with config.open("a") as f:
        f.write('[secrets]\nfolder = "secrets"\n')
    return config


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def start_run(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`connector run` in the background, as a scheduler starts it."""
    return subprocess.Popen(
        [*connector_command(), "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.integration
def test_one_run_at_a_time_a_killed_run_frees_the_lock_and_one_send_a_day(
    sis_loaded: None, tmp_path: Path, live: Receiver, gpg_keys: object
) -> None:
    config = slow_rosariosis(tmp_path, live, gpg_keys)
    owner = tmp_path / "state" / "run.lock.owner"
    env = bare_env()
    first = start_run(config, env)
    try:
        wait_for(owner)
        started = time.monotonic()
        second = connector("run", "-c", str(config), env=env)
        assert time.monotonic() - started < 5
        assert second.returncode == 8, second.stderr
        [error] = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
        assert f"holds the lock {tmp_path / 'state' / 'run.lock'}" in error
        assert f"PID {first.pid}" in error

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert owner.exists()  # the killed run could not clean up, its lock is gone

    after_kill = connector("run", "-c", str(config), env=env)
    assert after_kill.returncode == 0, after_kill.stderr
    stored = (live.folder / "students.csv.gz.pgp").stat().st_mtime_ns

    again = connector("run", "-c", str(config), env=env)
    assert again.returncode == 7, again.stderr
    assert "was sent already" in again.stderr and "--force" in again.stderr
    assert (live.folder / "students.csv.gz.pgp").stat().st_mtime_ns == stored

    forced = connector("run", "-c", str(config), "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    dates = json.loads((tmp_path / "state" / "sent-dates.json").read_text())
    assert len(dates) == 1


def folder_state(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Each file below ``folder`` with its modification time and bytes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.integration
def test_extract_into_the_output_folder_exits_8_while_a_run_holds_the_lock(
    sis_loaded: None, tmp_path: Path, live: Receiver, gpg_keys: object
) -> None:
    """While a run holds the lock, `extract` into the output folder exits 8 and
    changes nothing there; `extract --to DIR` is elsewhere and takes no lock."""
    config = slow_rosariosis(tmp_path, live, gpg_keys)
    slow = tmp_path / "slow.sql.j2"
    slow.write_text(slow.read_text().replace("pg_sleep(1)", "pg_sleep(10)"))
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "students.csv").write_bytes(b'"Student ID"\r\n"last sent"\r\n')
    (exports / "run-report.json").write_text('{"outcome": "sent"}\n')
    before = folder_state(exports)
    owner = tmp_path / "state" / "run.lock.owner"
    env = bare_env()
    first = start_run(config, env)
    try:
        wait_for(owner)
        locked = connector("extract", "-c", str(config), env=env)
        elsewhere = tmp_path / "one-off"
        elsewhere.mkdir()
        one_off = connector(
            "extract", "-c", str(config), "-d", "staff", "--to", str(elsewhere), env=env
        )
        still_running = first.poll() is None
    finally:
        first.kill()
        first.wait()

    assert locked.returncode == 8, locked.stderr
    [error] = [ln for ln in locked.stderr.splitlines() if ln.startswith("error:")]
    assert f"holds the lock {tmp_path / 'state' / 'run.lock'}" in error
    assert f"PID {first.pid}" in error
    assert locked.stdout == ""
    assert folder_state(exports) == before
    assert one_off.returncode == 0, one_off.stderr
    assert (elsewhere / "staff.csv").is_file()
    assert still_running  # both ran while the lock was held


def test_from_root_with_a_relative_path_and_lc_all_c_gives_the_same_bytes(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    """From / with LC_ALL=C as from the config's folder with a UTF-8 locale."""
    folders = {}
    for label in ("utf8", "c"):
        folder = tmp_path / f"distrito-año-{label}"
        folder.mkdir()
        sample_job(folder, district, live)
        folders[label] = folder

    utf8 = connector(
        "run",
        "-c",
        "connector.toml",
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        cwd=folders["utf8"],
    )
    c = connector(
        "run",
        "-c",
        str((folders["c"] / "connector.toml").relative_to("/")),
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        cwd="/",
    )

    assert utf8.returncode == 0, utf8.stderr
    assert c.returncode == 0, c.stderr
    for name in ("students", "attendance", "staff"):
        want = (folders["utf8"] / "exports" / f"{name}.csv").read_bytes()
        got = (folders["c"] / "exports" / f"{name}.csv").read_bytes()
        assert got == want, name
        got.decode("ascii")
    # The sample SIS has accented names: they arrive transliterated.
    students = (folders["c"] / "exports" / "students.csv").read_text("ascii")
    assert '"Nguyen"' in students and '"Zoe"' in students
    for folder, result in ((folders["c"], c), (folders["utf8"], utf8)):
        log_text = (folder / "logs" / "connector.log").read_text(encoding="utf-8")
        assert "distrito-año" in log_text
        for text in (log_text, result.stderr):
            assert "UnicodeError" not in text and "UnicodeEncodeError" not in text


def test_a_held_run_sent_by_connector_send_counts_as_that_days_send(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
) -> None:
    """Held (an empty students export), then sent by hand: the date is sent."""
    db = tmp_path / "sis.db"
    shutil.copyfile(district / "sis.db", db)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM students")
    conn.close()
    assert live.ca_file is not None
    job = make_job(tmp_path, district, live.url, live.ca_file, db=db)
    secret_file(tmp_path / "secrets", "upload-token", TOKEN)
    with job.path.open("a", encoding="utf-8") as f:
        f.write('[secrets]\nfolder = "secrets"\n')
    config = str(job.path)

    held = connector("run", "-c", config, env=bare_env())
    assert held.returncode == 6, held.stderr
    assert not (tmp_path / "state" / "sent-dates.json").exists()
    assert not (tmp_path / "state" / "heartbeat.json").exists()

    sent = connector("send", "-c", config, "--accept-change", env=bare_env())
    assert sent.returncode == 0, sent.stderr

    again = connector("run", "-c", config, env=bare_env())
    assert again.returncode == 7, again.stderr
    dates = json.loads((tmp_path / "state" / "sent-dates.json").read_text())
    assert list(dates) == [
        json.loads((tmp_path / "state" / "heartbeat.json").read_text())["business_date"]
    ]
