"""connector doctor against the real PostgreSQL, receiver, sshd and secrets."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app
from connector.doctor import DoctorReport, _check_clock, sql_server_encryption
from connector.package import Recipient, make_keypair
from connector.receiver import Receiver

from .conftest import TOKEN, Keys, connector_command
from .test_integration import write_config
from .test_sftp import Keys as SshKeys
from .test_sftp import (
    Sshd,
    _fingerprint,
    keys,  # noqa: F401 - a fixture
    sshd,  # noqa: F401 - a fixture
)

runner = CliRunner()


def doctor(
    config: Path, *more: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed script, from /, as an operator or a scheduler runs it."""
    return subprocess.run(
        [*connector_command(), "doctor", "--config", str(config), *more],
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def line(output: str, name: str) -> str:
    [found] = [x for x in output.splitlines() if re.match(rf"\S+ +{name}: ", x)]
    return found


@pytest.fixture
def token_file(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "upload-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return {"CONNECTOR_SECRET_UPLOAD_TOKEN_FILE": str(path)}


@pytest.fixture
def healthy(
    sis_loaded: None, tmp_path: Path, receiver: Receiver, gpg_keys: Keys
) -> Path:
    assert receiver.ca_file is not None
    folder = tmp_path / "district"
    folder.mkdir()
    config = write_config(
        folder, "rosariosis", receiver.url, receiver.ca_file, gpg_keys.public
    )
    # A healthy setup pins its zone and the recipient's key (doctor warns else).
    fingerprint = Recipient.openpgp(gpg_keys.public, None).fingerprint
    text = config.read_text(encoding="utf-8")
    text = text.replace("[source]\n", '[source]\ntime_zone = "America/Chicago"\n')
    text = text.replace(
        "[destination]\n", f'[destination]\nrecipient_fingerprint = "{fingerprint}"\n'
    )
    config.write_text(text, encoding="utf-8")
    return config


@pytest.mark.integration
def test_doctor_on_a_healthy_setup_exits_0(
    healthy: Path, token_file: dict[str, str]
) -> None:
    result = doctor(healthy, env=token_file)

    assert result.returncode == 0, result.stdout + result.stderr
    for name in (
        "config",
        "secret upload-token",
        "ODBC driver",
        "database connection",
        "data set students",
        "data set attendance",
        "data set staff",
        "encryption key",
        "destination reachable",
        "TLS certificate",
        "clock",
        "output folder",
        "spool folder",
    ):
        assert line(result.stdout, name).startswith("ok "), name
    assert "PostgreSQL 15" in line(result.stdout, "database connection")
    assert "COUNT(*) gives 453 rows" in line(result.stdout, "data set attendance")
    assert "64-bit Python on Linux" in line(result.stdout, "ODBC driver")
    assert TOKEN not in result.stdout + result.stderr
    assert result.stdout.endswith("doctor: healthy (0 warning(s))\n")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("old", "new", "code", "check", "says", "then"),
    [
        (
            "PORT=5432",
            "PORT=1",  # a closed port: nothing listens there
            1,
            "database connection",
            ["port 1 failed: Connection refused", "check the server, port"],
            ("data set students", "skip  data set students: not checked"),
        ),
        (
            "PostgreSQL Unicode",
            "PostgreSQL Nonesuch",
            2,
            "ODBC driver",
            ["'PostgreSQL Nonesuch' is not installed", "installed: ", "install the"],
            ("database connection", "skip  database connection: not tried: no ODBC"),
        ),
    ],
    ids=["database-down", "driver-missing"],
)
def test_doctor_names_what_is_broken(
    healthy: Path,
    token_file: dict[str, str],
    old: str,
    new: str,
    code: int,
    check: str,
    says: list[str],
    then: tuple[str, str],
) -> None:
    healthy.write_text(healthy.read_text().replace(old, new))

    result = doctor(healthy, env=token_file)

    assert result.returncode == code
    failed = line(result.stdout, check)
    assert failed.startswith(f"FAIL  {check}: ")
    for words in says:
        assert words in failed
    assert line(result.stdout, then[0]).startswith(then[1])
    # The rest is still checked.
    assert line(result.stdout, "TLS certificate").startswith("ok ")


@pytest.mark.integration
def test_doctor_missing_secret(healthy: Path) -> None:
    result = doctor(
        healthy, env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    )

    assert result.returncode == 3
    failed = line(result.stdout, "secret upload-token")
    assert failed.startswith("FAIL ")
    assert "CONNECTOR_SECRET_UPLOAD_TOKEN" in failed
    assert "looked in" in failed
    # The database is still checked: it needs no secret here.
    assert line(result.stdout, "database connection").startswith("ok ")


@pytest.mark.integration
def test_doctor_as_scheduled_misses_a_secret_only_the_shell_has(
    healthy: Path, token_file: dict[str, str]
) -> None:
    shell = {"CONNECTOR_SECRET_UPLOAD_TOKEN": TOKEN}
    assert doctor(healthy, env=shell).returncode == 0

    result = doctor(healthy, "--as-scheduled", env=shell)

    assert result.returncode == 3
    assert (
        result.stdout.startswith("as scheduled (cron): env -i HOME=")
        and "PATH=/usr/bin:/bin LANG=C, from " in result.stdout.splitlines()[0]
    )
    assert line(result.stdout, "secret upload-token").startswith("FAIL ")
    assert line(result.stdout, "database connection").startswith("ok ")
    assert TOKEN not in result.stdout + result.stderr

    # A 0600 secret file in [secrets] folder is found in that environment too.
    secrets = healthy.parent / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "upload-token").write_text(TOKEN)
    (secrets / "upload-token").chmod(0o600)
    healthy.write_text(healthy.read_text() + '\n[secrets]\nfolder = "secrets"\n')
    for kind in ("cron", "systemd"):
        result = doctor(healthy, "--as-scheduled", "--kind", kind)
        assert result.returncode == 0, result.stdout


def sftp_config(
    folder: Path, sshd_: Sshd, ssh: SshKeys, gpg_keys: Keys, pin: str
) -> Path:
    config = folder / "connector.toml"
    config.write_text(
        f"""
[source]
odbc = "DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT=1;DATABASE=x"
[datasets.students]
template = "{Path(__file__).parents[1] / "queries/rosariosis/students.sql.j2"}"
[destination]
kind = "sftp"
host = "127.0.0.1"
port = {sshd_.port}
user = "{getpass.getuser()}"
key_file = "{ssh.client}"
recipient_cert = "{gpg_keys.public}"
{pin}
"""
    )
    return config


@pytest.mark.parametrize("pinned", ["known_hosts", "fingerprint"])
def test_doctor_wrong_ssh_host_key(
    sshd: Sshd,  # noqa: F811 - the fixture imported above
    keys: SshKeys,  # noqa: F811
    gpg_keys: Keys,
    tmp_path: Path,
    pinned: str,
) -> None:
    good_pin = f'host_key_fingerprint = "{sshd.fingerprint}"'
    good = sftp_config(tmp_path, sshd, keys, gpg_keys, good_pin)
    result = runner.invoke(app, ["doctor", "-c", str(good)])
    assert line(result.stdout, "SSH host key").startswith("ok "), result.stdout
    assert sshd.fingerprint in line(result.stdout, "SSH host key")

    other = _fingerprint(keys.other_host)
    if pinned == "fingerprint":
        pin = f'host_key_fingerprint = "{other}"'
    else:
        known = tmp_path / "known_hosts"
        public = Path(f"{keys.other_host}.pub").read_text()
        known.write_text(f"[127.0.0.1]:{sshd.port} {public}")
        pin = f'known_hosts = "{known}"'
    wrong = sftp_config(tmp_path, sshd, keys, gpg_keys, pin)
    result = runner.invoke(app, ["doctor", "-c", str(wrong)])

    assert result.exit_code == 1
    failed = line(result.stdout, "SSH host key")
    assert failed.startswith("FAIL ")
    assert "is not the pinned one" in failed
    assert sshd.fingerprint in failed and other in failed
    assert "confirm the new fingerprint with them" in failed
    assert line(result.stdout, "destination reachable").startswith("ok ")


@pytest.mark.parametrize(
    ("driver", "connection", "status", "words"),
    [
        ("ODBC Driver 18 for SQL Server", "SERVER=sis", "ok", "certificate is checked"),
        (
            "ODBC Driver 18 for SQL Server",
            "SERVER=sis;Encrypt=yes;TrustServerCertificate=yes",
            "warn",
            "not checked",
        ),
        ("ODBC Driver 18 for SQL Server", "Encrypt=no", "warn", "not encrypted"),
        ("ODBC Driver 17 for SQL Server", "SERVER=sis", "warn", "not encrypted"),
        ("ODBC Driver 18 for SQL Server", "Encrypt=strict", "ok", "TDS 8.0"),
    ],
    ids=["18-default", "18-trust", "18-off", "17-default", "18-strict"],
)
def test_sql_server_encryption_is_explained(
    driver: str, connection: str, status: str, words: str
) -> None:
    found, text = sql_server_encryption(driver, connection)
    assert (found, words in text) == (status, True), text
    assert text.startswith("Encrypt=")


@pytest.mark.parametrize(
    ("offset", "status"), [(0, "ok"), (120, "warn"), (-900, "FAIL")]
)
def test_clock_skew_against_the_date_header(offset: int, status: str) -> None:
    import datetime as dt
    import email.utils

    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    report = DoctorReport()
    _check_clock(report, email.utils.format_datetime(when, usegmt=True))
    assert report.checks[0].status == status


def test_doctor_help_has_an_example() -> None:
    result = runner.invoke(app, ["doctor", "--help"])
    assert result.exit_code == 0
    assert "Example: connector doctor" in result.stdout


def test_doctor_on_a_broken_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text("[source]\nodbc = 1\n")
    result = runner.invoke(app, ["doctor", "-c", str(config)])
    assert result.exit_code == 2
    assert line(result.stdout, "config").startswith("FAIL ")


@pytest.fixture
def reader_without_rights(sis_loaded: None) -> Iterator[str]:
    """A PostgreSQL login that may connect but read no SIS table."""
    import pyodbc

    from .sis_expectations import SIS

    role = f"c5b_doctor_{os.getpid()}"
    admin = SIS["rosariosis"]["connection"]
    with pyodbc.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
    yield role
    with pyodbc.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.integration
def test_doctor_reports_missing_read_rights_per_data_set(
    healthy: Path, token_file: dict[str, str], reader_without_rights: str
) -> None:
    healthy.write_text(
        healthy.read_text().replace("UID=postgres", f"UID={reader_without_rights}")
    )

    result = doctor(healthy, env=token_file)

    assert result.returncode == 1
    assert line(result.stdout, "database connection").startswith("ok ")
    for name in ("students", "staff", "attendance"):
        failed = line(result.stdout, f"data set {name}")
        assert failed.startswith("FAIL "), failed
        assert "permission denied for table" in failed
        assert f"{name}.sql.j2" in failed


@pytest.mark.integration
def test_doctor_tls_chain_against_another_ca(
    healthy: Path, token_file: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    assert receiver.ca_file is not None
    healthy.write_text(healthy.read_text().replace(str(receiver.ca_file), str(other)))

    result = doctor(healthy, env=token_file)

    assert result.returncode == 1
    failed = line(result.stdout, "TLS certificate")
    assert failed.startswith("FAIL ")
    assert f"does not verify against destination.ca_file {other}" in failed
    assert "set destination.ca_file" in failed
    assert line(result.stdout, "destination reachable").startswith("ok ")
    assert line(result.stdout, "clock").startswith("skip ")


def test_scheduled_environment_is_minimal_and_hands_over_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.doctor import scheduled_environment

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/0/bus")
    monkeypatch.setenv("CONNECTOR_SECRET_SIS_DB", "from-the-shell")
    secret = tmp_path / "sis-db"
    secret.write_text("s3cret")
    secret.chmod(0o600)

    cron = scheduled_environment("cron", {"sis-db": secret}, tmp_path / "c1")
    assert set(cron) == {"HOME", "LOGNAME", "USER", "SHELL", "PATH", "LANG"}
    assert (cron["PATH"], cron["LANG"]) == ("/usr/bin:/bin", "C")

    systemd = scheduled_environment("systemd", {"sis-db": secret}, tmp_path / "c2")
    folder = Path(systemd["CREDENTIALS_DIRECTORY"])
    assert (folder / "sis-db").read_text() == "s3cret"
    assert (folder / "sis-db").stat().st_mode & 0o777 == 0o400
    assert folder.stat().st_mode & 0o777 == 0o700
    assert "DBUS_SESSION_BUS_ADDRESS" not in systemd


@pytest.mark.integration
def test_doctor_and_secrets_check_refuse_a_token_run_would_refuse(
    healthy: Path, tmp_path: Path
) -> None:
    """A trailing space in the token file: run stops on it (exit 3), so doctor
    and `secrets check` say so too, without the value."""
    path = tmp_path / "upload-token"
    path.write_text(TOKEN + " \n")
    path.chmod(0o600)
    env = {"CONNECTOR_SECRET_UPLOAD_TOKEN_FILE": str(path)}

    result = doctor(healthy, env=env)
    assert result.returncode == 3
    assert line(result.stdout, "secret upload-token").startswith("FAIL ")
    assert "cannot have" in line(result.stdout, "secret upload-token")

    checked = subprocess.run(
        [*connector_command(), "secrets", "check", "-c", str(healthy)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert checked.returncode == 3
    assert "upload-token (destination.token_secret): found in" in checked.stdout
    assert "cannot have" in checked.stdout
    assert TOKEN not in result.stdout + result.stderr + checked.stdout + checked.stderr


def test_doctor_warns_of_an_env_secret_an_unpinned_key_and_no_time_zone(
    tmp_path: Path,
) -> None:
    public, _ = make_keypair(tmp_path / "keys")
    (tmp_path / "students.sql.j2").write_text("SELECT 1")
    (tmp_path / "sis.db").touch()
    (tmp_path / "dropbox").mkdir()
    config = tmp_path / "connector.toml"
    config.write_text(
        f"""
[source]
url = "sqlite:///sis.db"
password_secret = "sis-db"
[datasets.students]
template = "students.sql.j2"
[destination]
kind = "folder"
path = "dropbox"
recipient_cert = "{public}"
""",
        encoding="utf-8",
    )
    result = doctor(config, env={"CONNECTOR_SECRET_SIS_DB": "s3cret-Value-c5a"})
    out = result.stdout
    assert line(out, "secret sis-db").startswith("warn  secret sis-db: found in the ")
    assert "environment variable CONNECTOR_SECRET_SIS_DB" in line(out, "secret sis-db")
    assert line(out, "key fingerprint").startswith("warn ")
    assert "recipient_fingerprint is not pinned" in line(out, "key fingerprint")
    assert line(out, "time zone").startswith("warn  time zone: source.time_zone is")
    assert "s3cret-Value-c5a" not in out + result.stderr
    warned = sum(x.startswith("warn ") for x in out.splitlines())
    assert f"{warned} warning(s)" in out and warned >= 3
