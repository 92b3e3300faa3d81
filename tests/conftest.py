"""Shared fixtures: a clean environment, the local receiver, keys and configs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyodbc
import pytest

from connector.package import Payload
from connector.receiver import Receiver

from .sis_expectations import SIS

SHARED = Path(os.environ.get("CONNECTOR_SHARED", Path(__file__).parents[2] / "shared"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip on a developer's machine that lacks something; fail in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must not skip: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        upper = name.upper()
        if (
            upper.startswith("CONNECTOR_")
            and upper != "CONNECTOR_SHARED"
            or upper in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
            or upper in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
            or upper == "CREDENTIALS_DIRECTORY"
        ):
            monkeypatch.delenv(name, raising=False)
    # Never let a test reach a real desktop keyring.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")


@dataclass
class Keys:
    """A receiver's key pair made by the real GnuPG, as a service would hand it out."""

    gnupghome: Path
    public: Path


@pytest.fixture(scope="session")
def gpg_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    require(shutil.which("gpg") is not None, "gpg (GnuPG) is not installed")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--quiet",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Receiver Test <receiver@example.invalid>",
            "default",
            "default",
            "never",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    public = home / "receiver.asc"
    exported = subprocess.run(
        ["gpg", "--batch", "--armor", "--export", "receiver@example.invalid"],
        check=True,
        env=env,
        capture_output=True,
    )
    public.write_bytes(exported.stdout)
    return Keys(gnupghome=home, public=public)


def gpg_decrypt(keys: Keys, payload: bytes) -> bytes:
    result = subprocess.run(
        ["gpg", "--batch", "--quiet", "--decrypt"],
        input=payload,
        check=True,
        capture_output=True,
        env={**os.environ, "GNUPGHOME": str(keys.gnupghome)},
    )
    return result.stdout


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", TOKEN, tls_dir=tmp_path / "tls") as running:
        yield running


TOKEN = "test-token-7f3a9c"  # a throwaway value for the local receiver only


def connector_command() -> list[str]:
    """The installed console script, run the way a scheduler would run it."""
    script = Path(sys.executable).parent / "connector"
    require(script.exists(), "the connector console script is not installed")
    return [str(script)]


DRIVERS = {
    "rosariosis": "PostgreSQL Unicode",
    "opensis": "MariaDB Unicode",
    "gibbon": "MariaDB Unicode",
    "rosariosis-mysql": "MariaDB Unicode",
    "openemis": "MariaDB Unicode",
}
DATABASES = {
    "rosariosis": "sis_rosariosis",
    "opensis": "sis_opensis",
    "gibbon": "sis_gibbon",
    "rosariosis-mysql": "sis_rosariosis_mysql",
    "openemis": "sis_openemis",
}
# The name load_all.sh knows each database by (it loads both RosarioSIS ones).
LOADER_NAMES = {"rosariosis-mysql": "rosariosis"}
# A query that shows the seeded data is there (the upstream demos alone are not).
SEEDED = {
    "rosariosis": "SELECT COUNT(*) > 100 FROM students",
    "opensis": "SELECT COUNT(*) > 100 FROM students",
    "gibbon": "SELECT COUNT(*) > 0 FROM gibbonAttendanceLogPerson",
    "rosariosis-mysql": "SELECT COUNT(*) > 100 FROM students",
    "openemis": "SELECT COUNT(*) > 100 FROM institution_student_absences",
}


def _database_ready(sis: str) -> bool:
    try:
        with pyodbc.connect(SIS[sis]["connection"], timeout=5) as conn:
            return bool(conn.execute(SEEDED[sis]).fetchone()[0])
    except pyodbc.Error:
        return False


@pytest.fixture(scope="session")
def sis_loaded() -> Iterator[None]:
    for sis, driver in DRIVERS.items():
        require(driver in pyodbc.drivers(), f"ODBC driver {driver!r} is not installed")
        if not _database_ready(sis):
            loader = SHARED / "sis" / "load_all.sh"
            require(loader.exists(), f"{loader} is missing: cannot load {sis}")
            name = LOADER_NAMES.get(sis, sis)
            subprocess.run(["bash", str(loader), name], check=True, capture_output=True)
        require(_database_ready(sis), f"database {DATABASES[sis]} is not reachable")
    yield


def random_payload(
    folder: Path, size: int, name: str = "students.csv.gz.pgp"
) -> Payload:
    """A spooled payload of ``size`` random bytes, as packaging would leave it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    data = os.urandom(size)
    path.write_bytes(data)
    return Payload(
        path=path,
        size=size,
        sha256=hashlib.sha256(data).hexdigest(),
        csv_name=name.split(".gz.")[0],
        csv_size=0,
        csv_sha256="",
        fingerprint="",
    )
