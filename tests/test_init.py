"""``connector init``: the packs it ships, the config it writes, and that config
run end to end (``connector run`` over ODBC, the local receiver, GnuPG) against
the real SIS databases of ../shared/sis."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pyodbc
import pytest

from connector.datasets import DATASETS
from connector.init import list_packs
from connector.receiver import Receiver

from .conftest import TOKEN, Keys, connector_command
from .sis_expectations import ABSENT_ROWS, KNOWN_ROWS, SIS
from .test_integration import count, run_connector
from .test_secrets import VALUE
from .test_secrets import run as secrets_cli

ROOT = Path(__file__).parents[1]
LIVE = ["rosariosis", "rosariosis-mysql", "opensis", "gibbon", "openemis"]


def init(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_connector("init", "--folder", str(folder), *args)


def point_at_receiver(config: Path, receiver: Receiver, cert: Path) -> None:
    """What the DBA edits after init: the service's key and (here) a private CA."""
    assert receiver.ca_file is not None
    text = config.read_text()
    assert 'recipient_cert = "receiver-public.asc"' in text
    text = text.replace(
        'recipient_cert = "receiver-public.asc"',
        f'recipient_cert = "{cert}"\nca_file = "{receiver.ca_file}"',
    )
    config.write_text(text)


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="ascii"))))


def param_args(sis: str) -> list[str]:
    args = []
    for name, value in SIS[sis]["params"].items():
        text = value.isoformat() if isinstance(value, dt.date) else str(value)
        args += ["--param", f"{name}={text}"]
    return args


@pytest.mark.integration
@pytest.mark.parametrize("sis", LIVE)
def test_init_then_run_on_real_sis(
    sis: str, sis_loaded: None, tmp_path: Path, receiver: Receiver, gpg_keys: Keys
) -> None:
    odbc = SIS[sis]["connection"].replace("PWD=;", "")
    made = init(tmp_path, "--sis", sis, "--odbc", odbc, "--upload-url", receiver.url)
    assert made.returncode == 0, made.stderr
    config = tmp_path / "connector.toml"
    for name in DATASETS:
        assert (tmp_path / f"{name}.sql.j2").read_bytes() == (
            ROOT / "queries" / sis / f"{name}.sql.j2"
        ).read_bytes()
    point_at_receiver(config, receiver, gpg_keys.public)

    result = run_connector("run", "-c", str(config), *param_args(sis))

    assert result.returncode == 0, result.stderr
    exports = tmp_path / "exports"
    report = json.loads((exports / "run-report.json").read_text())
    assert report["outcome"] == "sent"
    for name in DATASETS:
        rows = csv_rows(exports / f"{name}.csv")
        expected = count(sis, SIS[sis]["counts"][name])
        assert len(rows) == expected == report["datasets"][name]["fetched"], name
        assert (receiver.folder / f"{name}.csv.gz.pgp").exists()

    students = {r["Student ID"]: r for r in csv_rows(exports / "students.csv")}
    accented = SIS[sis]["accented_student"]
    row = students[accented["student_id"]]
    assert (row["First Name"], row["Last Name"]) == (
        accented["first_name"],
        accented["last_name"],
    )
    keys = {"students": ("Student ID",), "staff": ("Staff ID",)}
    keys["attendance"] = ("Student ID", "Absence Date")
    for name, known in KNOWN_ROWS[sis].items():
        written = {
            tuple(r[k] for k in keys[name]): r
            for r in csv_rows(exports / f"{name}.csv")
        }
        for want in known:
            assert written[tuple(want[k] for k in keys[name])] == want, name
    attendance = csv_rows(exports / "attendance.csv")
    for key in ABSENT_ROWS.get(sis, []):
        assert key not in {(r["Student ID"], r["Absence Date"]) for r in attendance}


def test_list_shows_every_pack_from_the_installed_script() -> None:
    result = subprocess.run(
        [*connector_command(), "init", "--list"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    shown = {line.split()[0]: line for line in result.stdout.splitlines()}
    in_tree = {p.parent.name for p in (ROOT / "queries").glob("*/pack.toml")}
    assert set(shown) == in_tree
    assert "tested live" in shown["openemis"]
    assert "not tried live" in shown["powerschool"]


def test_wheel_ships_the_packs(tmp_path: Path) -> None:
    """The built wheel holds queries/ as connector/queries, and finds it there."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path, ROOT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("connector-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for pack in (ROOT / "queries").glob("*/pack.toml"):
        for file in pack.parent.iterdir():
            assert f"connector/queries/{pack.parent.name}/{file.name}" in names

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from connector.init import packs_folder, list_packs;"
            "print(packs_folder()); print(len(list_packs()))",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        cwd="/",
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    folder, packs = found.stdout.split()
    assert Path(folder) == unpacked / "connector" / "queries"
    assert int(packs) == len(list_packs())


def test_init_writes_a_config_that_loads(tmp_path: Path) -> None:
    from connector.config import load_job

    result = init(tmp_path, "--sis", "rosariosis")

    assert result.returncode == 0, result.stderr
    config = tmp_path / "connector.toml"
    data = tomllib.loads(config.read_text())
    assert data["source"]["odbc"] == (
        "DRIVER={PostgreSQL Unicode};SERVER=sis-db.district.local;PORT=5432;"
        "DATABASE=rosariosis;UID=connector"
    )
    assert data["source"]["password_secret"] == "sis-db"
    assert data["params"]["school_year"] == 2025
    assert "connector test" in config.read_text()
    (tmp_path / "receiver-public.asc").write_text("placeholder")
    job = load_job(config)
    assert job.template_path("staff") == tmp_path / "staff.sql.j2"
    assert (tmp_path / "README-rosariosis.md").exists()
    assert str(config) in result.stdout


def test_init_guidance_stores_the_password_on_a_server_without_a_keyring(
    tmp_path: Path,
) -> None:
    """As a DBA on a headless server: init, then the next: line's command."""
    made = init(tmp_path, "--sis", "rosariosis")

    assert made.returncode == 0, made.stderr
    config = tmp_path / "connector.toml"
    secrets = tmp_path / "secrets"
    assert tomllib.loads(config.read_text())["secrets"] == {"folder": "secrets"}
    assert secrets.is_dir() and secrets.stat().st_mode & 0o777 == 0o700
    assert str(secrets) in made.stdout.splitlines()
    for name in ("sis-db", "upload-token"):
        assert f"connector secrets set {name} -c {config}" in made.stderr
    stored = secrets_cli(
        "set", "sis-db", "-c", str(config), "--from-stdin", stdin=VALUE + "\n"
    )
    assert stored.returncode == 0, stored.stderr
    assert (secrets / "sis-db").read_text() == VALUE
    assert (secrets / "sis-db").stat().st_mode & 0o777 == 0o600
    checked = secrets_cli("check", "-c", str(config))
    assert (
        f"sis-db (source.password_secret): found in secrets folder {secrets}/sis-db"
        in checked.stdout
    )


def test_init_config_says_what_the_state_folder_holds(tmp_path: Path) -> None:
    assert init(tmp_path, "--sis", "rosariosis").returncode == 0

    text = (tmp_path / "connector.toml").read_text()
    section = text.split("[state]\n", 1)[1].split("\n\n", 1)[0]
    comment = " ".join(line.split("#", 1)[1].strip() for line in section.splitlines())
    assert section.startswith('folder = "state" ')
    assert comment == (
        "spool, pending exports, upload log, the gate's store, run lock, sent "
        "dates, heartbeat and backfill progress"
    )


def test_init_refuses_a_file_where_the_secrets_folder_goes(tmp_path: Path) -> None:
    (tmp_path / "secrets").write_text("not a folder")

    result = init(tmp_path, "--sis", "rosariosis")

    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'secrets'} is a file")
    assert "nothing was written" in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "secrets"]


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    (tmp_path / "attendance.sql.j2").write_text("-- the DBA's own edit\n")

    refused = init(tmp_path, "--sis", "gibbon")
    forced = init(tmp_path, "--sis", "gibbon", "--force")

    assert refused.returncode == 2
    errors = refused.stderr.splitlines()
    assert errors == [
        f"error: {tmp_path / 'attendance.sql.j2'} exists already; nothing was "
        "written (--force replaces it)"
    ]
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "attendance.sql.j2").read_bytes() == (
        ROOT / "queries/gibbon/attendance.sql.j2"
    ).read_bytes()


def test_init_unknown_pack_names_the_known_ones(tmp_path: Path) -> None:
    result = init(tmp_path, "--sis", "banner")

    assert result.returncode == 2
    assert result.stderr.startswith("error: --sis 'banner': no such query pack")
    assert "openemis" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_without_sis_and_without_a_terminal_refuses(tmp_path: Path) -> None:
    result = subprocess.run(
        [*connector_command(), "init", "--folder", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr == (
        "error: connector init needs --sis NAME when it cannot ask questions "
        "(no terminal); see connector init --list\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_init_asks_in_a_terminal(tmp_path: Path) -> None:
    """The questions through a real pseudo-terminal, as a DBA would answer them."""
    child = pexpect.spawn(
        connector_command()[0],
        ["init", "--folder", str(tmp_path)],
        env={**os.environ, "CONNECTOR_SECRET_UPLOAD_TOKEN": TOKEN},
        encoding="utf-8",
        timeout=30,
    )
    answers = [
        ("Database kind", "sqlserver"),
        ("SIS product", "aeries"),
        ("Database server", "sql01.district.local"),
        ("Port", ""),
        ("Database name", "DST25000"),
        ("Login", "windows"),  # not a choice: asked again
        ("choose one of", None),
        ("Login", "integrated"),
    ]
    for prompt, answer in answers:
        child.expect(prompt)
        if answer is not None:
            child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 0, child.before
    data = tomllib.loads((tmp_path / "connector.toml").read_text())
    assert data["source"]["odbc"] == (
        "DRIVER={ODBC Driver 18 for SQL Server};SERVER=sql01.district.local,1433;"
        "DATABASE=DST25000;Trusted_Connection=yes"
    )
    assert "password_secret" not in data["source"]
    assert (tmp_path / "students.sql.j2").read_bytes() == (
        ROOT / "queries/aeries/students.sql.j2"
    ).read_bytes()


def fetch(connection: str, template: Path, params: dict[str, object]) -> list[tuple]:
    from connector.templates import render_query

    query = render_query(template, params)
    with pyodbc.connect(connection) as conn:
        return [tuple(r) for r in conn.execute(query.sql, query.params).fetchall()]


@pytest.mark.integration
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_rosariosis_mysql_pack_gives_the_postgresql_packs_rows(
    dataset: str, sis_loaded: None
) -> None:
    """The same seed loaded in both servers: the two packs return the same rows."""
    params = SIS["rosariosis"]["params"]

    on_postgres = fetch(
        SIS["rosariosis"]["connection"],
        ROOT / "queries/rosariosis" / f"{dataset}.sql.j2",
        params,
    )
    on_mariadb = fetch(
        SIS["rosariosis-mysql"]["connection"],
        ROOT / "queries/rosariosis-mysql" / f"{dataset}.sql.j2",
        params,
    )

    assert len(on_postgres) == SIS["rosariosis"]["expected_rows"][dataset]
    assert on_mariadb == on_postgres


OPENEMIS_ATTENDANCE_TABLES = (
    "academic_periods academic_period_levels institution_students student_statuses "
    "institutions calendar_event_dates calendar_events calendar_types "
    "institution_student_absences absence_types student_absence_reasons "
    "security_users"
).split()


@pytest.fixture
def openemis_copy(sis_loaded: None) -> Iterator[str]:
    """A throwaway copy of the tables the OpenEMIS attendance template reads."""
    name = f"c6a_openemis_{os.getpid()}"
    root = SIS["openemis"]["connection"].replace("DATABASE=sis_openemis", "")
    with pyodbc.connect(root, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        for table in OPENEMIS_ATTENDANCE_TABLES:
            conn.execute(f"CREATE TABLE {name}.{table} LIKE sis_openemis.{table}")
            conn.execute(
                f"INSERT INTO {name}.{table} SELECT * FROM sis_openemis.{table}"
            )
    try:
        yield root + f"DATABASE={name}"
    finally:
        with pyodbc.connect(root, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.mark.integration
def test_openemis_calendar_closures_are_not_school_days(openemis_copy: str) -> None:
    """A public holiday (all schools) and a school's closed day inside an absence
    range are left out; the range's other days stay."""
    params = SIS["openemis"]["params"]
    template = ROOT / "queries/openemis/attendance.sql.j2"
    before = fetch(openemis_copy, template, params)
    with pyodbc.connect(openemis_copy, autocommit=True) as conn:
        school = conn.execute(
            "SELECT institution_id FROM institution_student_absences WHERE id = 24"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO calendar_events (id, name, academic_period_id, institution_id,"
            " calendar_type_id, created_user_id, created) VALUES"
            " (901, 'State holiday', 2, -1, 4, 1, NOW()),"
            f" (902, 'Water main break', 2, {school}, 2, 1, NOW()),"
            f" (903, 'Open house', 2, {school}, 3, 1, NOW())"
        )
        conn.execute(
            "INSERT INTO calendar_event_dates (calendar_event_id, date) VALUES"
            " (901, '2025-09-04'), (902, '2025-09-05'), (903, '2025-09-08')"
        )

    after = fetch(openemis_copy, template, params)

    days = {(r[0], r[2]) for r in after}
    noah = sorted(d for s, d in days if s == "7401128283")
    assert dt.date(2025, 9, 8) in noah  # a school event day still needs attendance
    assert dt.date(2025, 9, 4) not in noah and dt.date(2025, 9, 5) not in noah
    assert not any(d == dt.date(2025, 9, 4) for _, d in days)
    gone = {(r[0], r[2]) for r in before} - days
    assert gone and all(
        d in (dt.date(2025, 9, 4), dt.date(2025, 9, 5)) for _, d in gone
    )
    assert len(before) - len(after) == len(gone)


def test_init_refuses_a_plain_http_upload_url(tmp_path: Path) -> None:
    result = init(tmp_path, "--sis", "gibbon", "--upload-url", "http://up.example/")

    assert result.returncode == 2
    assert result.stderr == (
        "error: connector init: destination.url: must start with https:// "
        "(plain http is never used); nothing was written\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_questions_build_a_password_login_for_the_chosen_pack() -> None:
    from connector.init import ask_answers, connection_string

    replies = iter(
        [
            "postgresql",
            "rosariosis",
            "10.0.4.20",
            "5433",
            "rosario",
            "password",
            "svc_connector",
        ]
    )
    asked: list[tuple[str, str, object]] = []

    def ask(question: str, default: str, choices: object) -> str:
        asked.append((question, default, choices))
        return next(replies)

    pack, answers = ask_answers(ask, list_packs())

    assert pack.name == "rosariosis"
    assert asked[1][2] == ["rosariosis"]  # only the packs for that database kind
    assert asked[5][2] == ["password"]  # integrated login is for SQL Server only
    assert connection_string(pack, answers) == (
        "DRIVER={PostgreSQL Unicode};SERVER=10.0.4.20;PORT=5433;DATABASE=rosario;"
        "UID=svc_connector"
    )


def test_init_into_a_file_names_the_folder_option(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("kept", encoding="utf-8")
    result = init(path, "--sis", "rosariosis")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [lines[0]]
    assert lines[0].startswith(f"error: --folder {path} is a file, not a folder")
    assert path.read_text(encoding="utf-8") == "kept"
