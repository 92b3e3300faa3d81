"""Packaging: deterministic gzip, OpenPGP that the real GnuPG decrypts, clear errors."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from connector.errors import ExitCode, PackageError
from connector.package import (
    Recipient,
    load_recipient,
    make_keypair,
    package_export,
)

from .conftest import require

CSV = "student_id,first_name\r\n1,Ørjan\r\n2,Zoë\r\n".encode() * 2000


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def gnupg_home(
    tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path]
) -> Path:
    if shutil.which("gpg") is None:
        # A developer's machine may lack GnuPG; CI must not (a skip there fails).
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI must not skip: the gpg command is not installed")
        pytest.skip("the gpg command is not installed")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    _gpg(home, "--import", str(keys[1]))
    return home


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "students.csv"
    path.write_bytes(CSV)
    return path


def _gpg(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GNUPGHOME": str(home)}
    return subprocess.run(
        ["gpg", "--batch", "--no-tty", *args],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )


def test_package_export_decrypts_with_gnupg(
    tmp_path: Path, export: Path, keys: tuple[Path, Path], gnupg_home: Path
) -> None:
    payload = package_export(export, tmp_path / "spool", keys[0])

    compressed = _gpg(gnupg_home, "--decrypt", str(payload.path)).stdout
    assert gzip.decompress(compressed) == CSV
    data = payload.path.read_bytes()
    assert payload.path == tmp_path / "spool" / "students.csv.gz.pgp"
    assert payload.size == len(data)
    assert payload.sha256 == hashlib.sha256(data).hexdigest()
    assert payload.csv_name == "students.csv"
    assert payload.csv_size == len(CSV)
    assert payload.csv_sha256 == hashlib.sha256(CSV).hexdigest()
    assert payload.fingerprint == load_recipient(keys[0]).fingerprint
    assert sorted(os.listdir(tmp_path / "spool")) == [
        "students.csv.gz.pgp",
        "students.csv.gz.pgp.json",
    ]


def test_a_spooled_payload_is_reused_until_the_export_changes(
    tmp_path: Path, export: Path, keys: tuple[Path, Path]
) -> None:
    first = package_export(export, tmp_path / "spool", keys[0])
    again = package_export(export, tmp_path / "spool", keys[0])
    # Encryption is randomised: the same bytes mean the spooled payload was kept,
    # so an interrupted upload resumes the very bytes it started.
    assert again == first

    export.write_bytes(CSV + b'"x"\r\n')
    changed = package_export(export, tmp_path / "spool", keys[0])
    assert changed.sha256 != first.sha256
    assert changed.csv_sha256 != first.csv_sha256

    changed.discard()
    assert os.listdir(tmp_path / "spool") == []


def test_a_pinned_fingerprint_must_match(keys: tuple[Path, Path]) -> None:
    actual = load_recipient(keys[0]).fingerprint
    assert Recipient.openpgp(keys[0], actual.lower()).fingerprint == actual
    with pytest.raises(PackageError) as info:
        Recipient.openpgp(keys[0], "0" * 40)
    assert info.value.exit_code == ExitCode.USAGE
    assert "pinned in destination.recipient_fingerprint" in str(info.value)


def test_age_payload_decrypts_with_the_age_command(
    tmp_path: Path, export: Path
) -> None:
    require(shutil.which("age-keygen") is not None, "age is not installed")
    identity = tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = next(
        line.split(": ")[1]
        for line in identity.read_text().splitlines()
        if line.startswith("# public key: ")
    )
    payload = package_export(export, tmp_path / "spool", Recipient.age_key(public))
    assert payload.path.name == "students.csv.gz.age"
    assert payload.format == "age"
    plain = subprocess.run(
        ["age", "-d", "-i", str(identity), str(payload.path)],
        check=True,
        capture_output=True,
    ).stdout
    assert gzip.decompress(plain) == CSV
    with pytest.raises(PackageError, match="not an age public key"):
        Recipient.age_key("age1nope")


def test_package_export_gzip_is_deterministic(
    tmp_path: Path, export: Path, keys: tuple[Path, Path], gnupg_home: Path
) -> None:
    first = package_export(export, tmp_path / "one", keys[0])
    second = package_export(export, tmp_path / "two", keys[0])

    gz_first = _gpg(gnupg_home, "--decrypt", str(first.path)).stdout
    gz_second = _gpg(gnupg_home, "--decrypt", str(second.path)).stdout
    assert gz_first == gz_second
    assert gz_first[4:8] == b"\0\0\0\0"  # mtime
    assert gz_first[3] & 0x08 == 0  # no file name
    # Encryption is randomised: the payloads differ, their contents do not.
    assert first.sha256 != second.sha256


def test_package_export_uses_aes256(
    tmp_path: Path, export: Path, keys: tuple[Path, Path], gnupg_home: Path
) -> None:
    payload = package_export(export, tmp_path, keys[0])

    listing = _gpg(
        gnupg_home, "-v", "--show-session-key", "--list-packets", str(payload.path)
    )
    stderr = listing.stderr.decode()
    assert "AES256 encrypted data" in stderr
    assert "session key: '9:" in stderr  # symmetric algorithm 9 is AES-256
    assert ":encrypted data packet:" in listing.stdout.decode()  # SEIPDv1 + MDC


def test_package_export_logs_names_and_hashes_only(
    tmp_path: Path,
    export: Path,
    keys: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connector.package")

    payload = package_export(export, tmp_path, keys[0])

    [(logger, level, message)] = caplog.record_tuples
    assert (logger, level) == ("connector.package", logging.INFO)
    assert "students.csv" in message and payload.sha256 in message
    assert "SEIPDv1" in message
    assert "Ørjan" not in caplog.text


@pytest.mark.parametrize(
    "content",
    [None, b"not a key\n", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n"],
    ids=["missing", "garbage", "broken-armor"],
)
def test_package_export_bad_certificate(
    tmp_path: Path, export: Path, content: bytes | None
) -> None:
    cert = tmp_path / "recipient.asc"
    if content is not None:
        cert.write_bytes(content)

    with pytest.raises(PackageError, match="recipient certificate .*recipient.asc"):
        package_export(export, tmp_path / "spool", cert)
    assert not (tmp_path / "spool").exists() or not os.listdir(tmp_path / "spool")


def test_package_export_refuses_secret_key(
    tmp_path: Path, export: Path, keys: tuple[Path, Path]
) -> None:
    with pytest.raises(PackageError, match="contains a secret key"):
        package_export(export, tmp_path / "spool", keys[1])


def test_package_export_missing_export_leaves_nothing(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()

    with pytest.raises(PackageError, match="absent.csv does not exist"):
        package_export(tmp_path / "absent.csv", spool, keys[0])
    assert os.listdir(spool) == []


def test_make_keypair_writes_public_and_secret(tmp_path: Path) -> None:
    public, secret = make_keypair(tmp_path)

    assert public.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert secret.read_text().startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert secret.stat().st_mode & 0o077 == 0
    assert load_recipient(public).fingerprint


def test_make_keypair_without_gnupg_uses_pysequoia(
    tmp_path: Path, export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connector.package

    monkeypatch.setattr(connector.package.shutil, "which", lambda name: None)
    public, secret = make_keypair(tmp_path / "keys")
    payload = package_export(export, tmp_path / "spool", public)
    assert payload.size > 0
    assert secret.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "how",
    [
        [
            "--faked-system-time",
            "20200101T000000",
            "--quick-gen-key",
            "default",
            "default",
            "1d",
        ],
        ["--quick-gen-key", "ed25519", "sign", "never"],
    ],
    ids=["expired", "sign-only"],
)
def test_a_key_that_cannot_be_encrypted_to_is_refused_when_loaded(
    tmp_path: Path, how: list[str]
) -> None:
    """Found before any extract (exit 2), not after it when encrypting."""
    require(shutil.which("gpg") is not None, "gpg (GnuPG) is not installed")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    uid = "Old Receiver <old@example.invalid>"
    at = how.index("--quick-gen-key") + 1
    args = [*how[:at], uid, *how[at:]]
    gpg = ["gpg", "--batch", "--quiet", "--passphrase", ""]
    subprocess.run([*gpg, *args], check=True, env=env, capture_output=True)
    cert = tmp_path / "old.asc"
    exported = subprocess.run(
        [*gpg, "--armor", "--export", "old@example.invalid"],
        check=True,
        env=env,
        capture_output=True,
    )
    cert.write_bytes(exported.stdout)

    with pytest.raises(PackageError) as caught:
        load_recipient(cert)

    assert caught.value.exit_code == ExitCode.USAGE
    message = str(caught.value)
    assert "has no valid encryption key (expired, revoked or sign-only)" in message
    assert "\n" not in message and len(message) < 600
