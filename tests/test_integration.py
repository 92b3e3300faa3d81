"""``connector run`` against the real SIS databases over the real ODBC drivers.

Needs PostgreSQL and MariaDB on 127.0.0.1 with the databases of ../shared/sis
loaded (the session fixture loads them if missing), the Debian ODBC drivers and
GnuPG. On a developer machine without them these tests skip; in CI they fail.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.datasets import DATASETS
from connector.package import load_recipient
from connector.receiver import Receiver

from .conftest import TOKEN, Keys, connector_command, gpg_decrypt
from .sis_expectations import SIS

pyodbc = pytest.importorskip("pyodbc")
YESTERDAY = b'"Student ID"\r\n"yesterday"\r\n'


def toml_value(value: Any) -> str:
    if isinstance(value, dt.date | int):
        return str(value)
    return json.dumps(value)


def write_config(
    folder: Path,
    sis: str,
    receiver_url: str,
    ca_file: Path,
    cert: Path,
    *,
    odbc: str | None = None,
    password_secret: str | None = None,
) -> Path:
    queries = Path(__file__).parents[1] / "queries" / sis
    params = "\n".join(f"{k} = {toml_value(v)}" for k, v in SIS[sis]["params"].items())
    datasets = "\n".join(
        f'[datasets.{name}]\ntemplate = "{queries / (name + ".sql.j2")}"\n'
        for name in DATASETS
    )
    secret = f'password_secret = "{password_secret}"' if password_secret else ""
    config = folder / "connector.toml"
    config.write_text(
        f"""
[source]
odbc = {json.dumps(odbc or SIS[sis]["connection"].replace("PWD=;", ""))}
{secret}

[params]
{params}

{datasets}

[output]
folder = "exports"

[destination]
url = "{receiver_url}"
token_secret = "upload-token"
ca_file = "{ca_file}"
recipient_cert = "{cert}"
attempts = 2
backoff = 0.01

[state]
folder = "state"
[log]
folder = "logs"
""",
        encoding="utf-8",
    )
    return config


def run_connector(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "CONNECTOR_SECRET_UPLOAD_TOKEN": TOKEN, **(env or {})}
    return subprocess.run(
        [*connector_command(), *args],
        capture_output=True,
        text=True,
        cwd=cwd or "/",
        env=full_env,
        timeout=300,
    )


def count(sis: str, sql: str) -> int:
    with pyodbc.connect(SIS[sis]["connection"]) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.mark.integration
@pytest.mark.parametrize("sis", ["rosariosis", "opensis", "gibbon"])
def test_run_end_to_end_on_real_sis(
    sis: str, sis_loaded: None, tmp_path: Path, receiver: Receiver, gpg_keys: Keys
) -> None:
    assert receiver.ca_file is not None
    config = write_config(
        tmp_path, sis, receiver.url, receiver.ca_file, gpg_keys.public
    )

    result = run_connector("run", "--config", str(config.relative_to("/")))

    assert result.returncode == 0, result.stderr
    exports = tmp_path / "exports"
    for name, dataset in DATASETS.items():
        data = (exports / f"{name}.csv").read_bytes()
        data.decode("ascii")
        assert data.endswith(b"\r\n")
        records = data.split(b"\r\n")[:-1]
        for record in records:
            assert b"\r" not in record and b"\n" not in record
        rows = list(csv.reader(io.StringIO(data.decode("ascii"), newline="")))
        assert rows[0] == list(dataset.headers)
        for record, row in zip(records, rows, strict=True):
            assert record == b",".join(
                b'"' + v.encode("ascii").replace(b'"', b'""') + b'"' for v in row
            ), "every field is quoted"
        assert len(rows) - 1 == count(sis, SIS[sis]["counts"][name]), name

        stored = receiver.folder / f"{name}.csv.gz.pgp"
        assert gzip.decompress(gpg_decrypt(gpg_keys, stored.read_bytes())) == data
        manifest = json.loads(
            (receiver.folder / f"{name}.csv.manifest.json").read_text()
        )
        assert (
            manifest["payload_sha256"]
            == hashlib.sha256(stored.read_bytes()).hexdigest()
        )
        assert manifest["file_sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["rows"] == len(rows) - 1
        assert manifest["format"] == "openpgp+gzip"
        assert (
            manifest["key_fingerprint"] == load_recipient(gpg_keys.public).fingerprint
        )

    students = list(csv.DictReader(io.StringIO((exports / "students.csv").read_text())))
    accented = SIS[sis]["accented_student"]
    [row] = [r for r in students if r["Student ID"] == accented["student_id"]]
    assert row["First Name"] == accented["first_name"]
    assert row["Last Name"] == accented["last_name"]

    # The run report accounts for every row the source holds.
    report = json.loads((exports / "run-report.json").read_text())
    assert report["outcome"] == "sent"
    for name, counts in report["datasets"].items():
        expected = count(sis, SIS[sis]["counts"][name])
        assert counts["expected"] == counts["fetched"] == expected, name
        assert counts["written"] + counts["rejected"] == counts["fetched"], name
        assert counts["gate"]["held"] is False
    assert set(report["datasets"]) == set(DATASETS)

    log_lines = (tmp_path / "state" / "uploads.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in log_lines]
    assert len(entries) == 6  # a payload and its manifest per data set
    assert all(e["outcome"] == "verified" for e in entries)
    assert {e["run_id"] for e in entries} == {report["run_id"]}
    assert TOKEN not in "".join(log_lines)
    assert "verified" in result.stdout


@pytest.fixture
def yesterday(tmp_path: Path) -> Path:
    exports = tmp_path / "exports"
    exports.mkdir()
    path = exports / "students.csv"
    path.write_bytes(YESTERDAY)
    return path


@pytest.fixture(scope="session")
def mariadb_login(sis_loaded: None) -> Iterator[tuple[str, str]]:
    """A MariaDB user with a password, reachable over TCP, for the login tests."""
    user, password = f"connector_test_{os.getpid()}", "Right;Pass{word}"
    root = SIS["opensis"]["connection"]
    with pyodbc.connect(root, autocommit=True) as conn:
        for host in ("localhost", "127.0.0.1"):
            conn.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
            conn.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
            conn.execute(f"GRANT SELECT ON sis_opensis.* TO '{user}'@'{host}'")
    yield user, password
    with pyodbc.connect(root, autocommit=True) as conn:
        for host in ("localhost", "127.0.0.1"):
            conn.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")


def tcp_login(user: str) -> str:
    return (
        "DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;"
        f"UID={user};CHARSET=utf8mb4;DATABASE=sis_opensis"
    )


@pytest.mark.integration
def test_password_from_a_secret_logs_in(
    mariadb_login: tuple[str, str], tmp_path: Path, receiver: Receiver, gpg_keys: Keys
) -> None:
    user, password = mariadb_login
    assert receiver.ca_file is not None
    config = write_config(
        tmp_path,
        "opensis",
        receiver.url,
        receiver.ca_file,
        gpg_keys.public,
        odbc=tcp_login(user),
        password_secret="sis-db",
    )
    secret = tmp_path / "sis-db.secret"
    secret.write_text(password + "\n")
    secret.chmod(0o600)

    result = run_connector(
        "extract", "-c", str(config), env={"CONNECTOR_SECRET_SIS_DB_FILE": str(secret)}
    )

    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    "case", ["wrong-password", "unknown-driver", "undefined-variable", "unreachable"]
)
def test_failures_are_one_line_and_keep_yesterdays_file(
    case: str,
    mariadb_login: tuple[str, str],
    tmp_path: Path,
    yesterday: Path,
    receiver: Receiver,
    gpg_keys: Keys,
) -> None:
    user, _ = mariadb_login
    assert receiver.ca_file is not None
    url, odbc, secret, env = receiver.url, None, None, {}
    wrong = "Wrong-Pa55word"
    if case == "wrong-password":
        odbc, secret = tcp_login(user), "sis-db"
        env["CONNECTOR_SECRET_SIS_DB"] = wrong
    elif case == "unknown-driver":
        odbc = "DRIVER={No Such Driver 9};SERVER=127.0.0.1;DATABASE=sis_opensis"
    elif case == "unreachable":
        url = "https://127.0.0.1:9/files/"
    config = write_config(
        tmp_path,
        "opensis",
        url,
        receiver.ca_file,
        gpg_keys.public,
        odbc=odbc,
        password_secret=secret,
    )
    if case == "undefined-variable":
        template = tmp_path / "students.sql.j2"
        template.write_text(
            "SELECT *\nFROM students\nWHERE syear = {{ school_yeer }}\n"
        )
        text = config.read_text().replace(
            str(Path(__file__).parents[1] / "queries/opensis/students.sql.j2"),
            str(template),
        )
        config.write_text(text)

    result = run_connector("run", "-c", str(config), env=env)

    expected = {
        "wrong-password": (3, "refused the login"),
        "unknown-driver": (2, "'No Such Driver 9' is not installed"),
        "undefined-variable": (2, "line 3: 'school_yeer' is undefined"),
        "unreachable": (4, "127.0.0.1:9"),
    }[case]
    assert result.returncode == expected[0], result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert expected[1] in errors[0]
    assert "Traceback" not in result.stderr
    assert wrong not in result.stderr + result.stdout
    assert yesterday.read_bytes() == YESTERDAY
    assert sorted(p.name for p in yesterday.parent.glob("*.csv")) == ["students.csv"]
    report = json.loads((yesterday.parent / "run-report.json").read_text())
    assert (report["outcome"], report["error"]) == ("failed", errors[0][7:])
    assert wrong not in json.dumps(report)


def slow_rosariosis(
    tmp_path: Path, receiver: Receiver, keys: Keys, dataset: str, seconds: int = 3
) -> Path:
    """A rosariosis config whose ``dataset`` query sleeps ``seconds`` on the server
    (twice: its COUNT(*) too)."""
    assert receiver.ca_file is not None
    config = write_config(
        tmp_path, "rosariosis", receiver.url, receiver.ca_file, keys.public
    )
    template = Path(__file__).parents[1] / f"queries/rosariosis/{dataset}.sql.j2"
    slow = tmp_path / "slow.sql.j2"
    slow.write_text(
        "SELECT * FROM (\n"
        + template.read_text()
        + f"\n) s WHERE (SELECT pg_sleep({seconds})) IS NOT NULL"
    )
    config.write_text(config.read_text().replace(str(template), str(slow)))
    return config


def wait_for_sleep(process: subprocess.Popen[str], since: float) -> float:
    """Wait until the server sleeps in a slow template's pg_sleep for a session
    opened after ``since`` (a time.time()); when it was seen."""
    deadline = time.monotonic() + 60
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
        f"AND backend_start >= to_timestamp({since})"
    )
    while not count("rosariosis", sql):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    return time.monotonic()


def start_connector(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*connector_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "CONNECTOR_SECRET_UPLOAD_TOKEN": TOKEN},
    )


@pytest.mark.integration
@pytest.mark.parametrize("command", ["run", "extract"])
@pytest.mark.parametrize(
    ("name", "code", "said", "documented"),
    [
        ("SIGTERM", 1, "stopped by signal SIGTERM", "a scheduler's SIGTERM is 1"),
        ("SIGINT", 130, "stopped by Ctrl-C", "130 stopped by Ctrl-C"),
    ],
)
def test_a_signal_stops_cleanly_with_one_line(
    sis_loaded: None,
    tmp_path: Path,
    yesterday: Path,
    receiver: Receiver,
    gpg_keys: Keys,
    command: str,
    name: str,
    code: int,
    said: str,
    documented: str,
) -> None:
    """A scheduler's SIGTERM or a DBA's Ctrl-C mid-query: one line, an exit code
    `connector --help` and the README give, temporary files gone, yesterday's
    export as it was; the stop waits for the query, as the README says."""
    config = slow_rosariosis(tmp_path, receiver, gpg_keys, "students")
    since = time.time()
    process = start_connector(command, "-c", str(config))
    began = wait_for_sleep(process, since)
    process.send_signal(getattr(signal, name))
    signalled = time.monotonic()
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == code, stderr
    assert 3 - (signalled - began) - 0.5 < time.monotonic() - signalled < 10
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and said in errors[0], stderr
    assert "Traceback" not in stderr
    assert yesterday.read_bytes() == YESTERDAY
    leftovers = [p.name for p in tmp_path.rglob("*.tmp")]
    assert leftovers == []
    report = json.loads((yesterday.parent / "run-report.json").read_text())
    assert report["outcome"] == "failed"
    usage = subprocess.run(
        [*connector_command(), "--help"], capture_output=True, text=True, check=True
    )
    assert documented in " ".join(usage.stdout.split())
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    codes = readme.split("| code | meaning |", 1)[1].split("\n\n", 1)[0]
    [row] = [ln for ln in codes.splitlines() if ln.startswith(f"| {code} | ")]
    assert name.replace("SIGINT", "Ctrl-C") in row


@pytest.mark.integration
def test_ctrl_c_after_an_export_was_finished_claims_no_file(
    sis_loaded: None,
    tmp_path: Path,
    yesterday: Path,
    receiver: Receiver,
    gpg_keys: Keys,
) -> None:
    """Ctrl-C while attendance is read, after students was finished: nothing was
    put in place, so no line says an export was written, and exit 130."""
    config = slow_rosariosis(tmp_path, receiver, gpg_keys, "attendance")
    since = time.time()
    process = start_connector("run", "-c", str(config))
    wait_for_sleep(process, since)  # students are read and written by then
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    [error] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "stopped by Ctrl-C" in error
    assert "students" in stdout  # the table still counts what was read
    assert list((tmp_path / "state" / "pending").glob("*.csv")) == []
    claimed = re.findall(r"^\w+: (/\S+) \(\d+ rows", stdout, re.MULTILINE)
    assert claimed == [], stdout
    assert yesterday.read_bytes() == YESTERDAY
    assert [p.name for p in tmp_path.rglob("*.tmp")] == []
