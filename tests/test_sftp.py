"""SFTP uploads against a real OpenSSH sshd on 127.0.0.1, started by the tests."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.errors import ConfigError, ExitCode, UploadError
from connector.package import Payload
from connector.sftp import SftpTarget, upload_sftp
from connector.transfer import AttemptLog, RetryPolicy

from .conftest import random_payload, require

SSHD = Path("/usr/sbin/sshd")
PASSPHRASE = "correct horse sftp 7c1e"  # protects a throwaway test key only
NAME = "students.csv.gz.pgp"
QUICK = RetryPolicy(attempts=3, backoff=0.01, max_wait=0.05)


@dataclass
class Keys:
    """Throwaway key pairs made with the real ssh-keygen."""

    client: Path  # ed25519, in authorized_keys
    ecdsa: Path  # in authorized_keys
    protected: Path  # RSA under PASSPHRASE, in authorized_keys
    stranger: Path  # not in authorized_keys
    host: Path  # the sshd host key
    other_host: Path  # a host key of some other server


@dataclass
class Sshd:
    """A running sshd and what a client needs to pin it."""

    port: int
    known_hosts: Path
    fingerprint: str
    process: subprocess.Popen[bytes]
    log: Path


def _keygen(path: Path, kind: str, passphrase: str = "") -> Path:
    extra = ["-b", "3072"] if kind == "rsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *extra, "-N", passphrase, "-C", "test"]
        + ["-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _fingerprint(key: Path) -> str:
    """The fingerprint as ``ssh-keygen -l`` prints it, the way an operator gets it."""
    result = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{key}.pub"],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.split()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_sshd(folder: Path, host_key: Path, **options: str) -> Sshd:
    """Start ``sshd -D -e`` on a free port and wait until it greets clients."""
    require(SSHD.exists(), f"the OpenSSH server {SSHD} is not installed")
    require(shutil.which("ssh-keygen") is not None, "ssh-keygen is not installed")
    if os.geteuid() == 0:
        # sshd started as root insists on its privilege separation folder,
        # which the Debian service would have created.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    user = getpass.getuser()
    settings = {
        "ListenAddress": "127.0.0.1",
        "HostKey": str(host_key),
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "PubkeyAuthentication": "yes",
        "AuthorizedKeysFile": str(folder / "authorized_keys"),
        "StrictModes": "no",
        "Subsystem": "sftp internal-sftp",
        "PidFile": str(folder / "sshd.pid"),
        "UsePAM": "no",
        "AllowUsers": user,
        "PermitRootLogin": "prohibit-password",
        **options,
    }
    log = folder / "sshd.log"
    for _ in range(3):  # another process may take the free port first
        port = _free_port()
        config = folder / "sshd_config"
        lines = [f"Port {port}"] + [f"{k} {v}" for k, v in settings.items()]
        config.write_text("\n".join(lines) + "\n")
        with log.open("ab") as err:
            process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        if _wait_for_banner(port, process):
            known_hosts = folder / "known_hosts"
            public = Path(f"{host_key}.pub").read_text().strip()
            known_hosts.write_text(f"[127.0.0.1]:{port} {public}\n")
            return Sshd(port, known_hosts, _fingerprint(host_key), process, log)
        _stop(process)
    pytest.fail(f"sshd did not start: {log.read_text()}")


def _wait_for_banner(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    require(shutil.which("ssh-keygen") is not None, "ssh-keygen is not installed")
    folder = tmp_path_factory.mktemp("keys")
    return Keys(
        client=_keygen(folder / "client", "ed25519"),
        ecdsa=_keygen(folder / "ecdsa", "ecdsa"),
        protected=_keygen(folder / "protected", "rsa", PASSPHRASE),
        stranger=_keygen(folder / "stranger", "ed25519"),
        host=_keygen(folder / "host", "ed25519"),
        other_host=_keygen(folder / "other_host", "ed25519"),
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Sshd]:
    folder = tmp_path_factory.mktemp("sshd")
    authorized = [keys.client, keys.ecdsa, keys.protected]
    (folder / "authorized_keys").write_text(
        "".join(Path(f"{key}.pub").read_text() for key in authorized)
    )
    server = _start_sshd(folder, keys.host)
    yield server
    _stop(server.process)


@pytest.fixture
def password_only_sshd(tmp_path: Path, keys: Keys) -> Iterator[Sshd]:
    (tmp_path / "authorized_keys").write_text(Path(f"{keys.client}.pub").read_text())
    server = _start_sshd(
        tmp_path,
        keys.host,
        PubkeyAuthentication="no",
        PasswordAuthentication="yes",
    )
    yield server
    _stop(server.process)


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    return random_payload(tmp_path / "spool", 5 * 1024 * 1024 + 123, NAME)


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


@pytest.fixture
def log(tmp_path: Path, payload: Payload) -> AttemptLog:
    return AttemptLog(
        tmp_path / "state" / "uploads.jsonl",
        run_id="test-run",
        file=payload.path.name,
        destination="sftp",
        size=payload.size,
        sha256=payload.sha256,
    )


def _target(sshd: Sshd, keys: Keys, drop: Path, **changes: Any) -> SftpTarget:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": getpass.getuser(),
        "key_file": keys.client,
        "known_hosts": sshd.known_hosts,
        "folder": str(drop),
        "timeout": 10.0,
        "policy": QUICK,
    }
    settings.update(changes)
    return SftpTarget(**settings)


def _lines(log: AttemptLog) -> list[dict[str, Any]]:
    if not log.path.exists():
        return []
    return [json.loads(line) for line in log.path.read_text().splitlines()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("pin", "read_back", "level"),
    [("known_hosts", False, "length"), ("fingerprint", True, "read-back")],
    ids=["known_hosts-length", "fingerprint-read-back"],
)
def test_upload_sftp_stores_payload(
    sshd: Sshd,
    keys: Keys,
    drop: Path,
    payload: Payload,
    log: AttemptLog,
    caplog: pytest.LogCaptureFixture,
    pin: str,
    read_back: bool,
    level: str,
) -> None:
    if pin == "fingerprint":
        changes = {"known_hosts": None, "host_key_fingerprint": sshd.fingerprint}
    else:
        changes = {}
    target = _target(sshd, keys, drop, read_back=read_back, **changes)

    with caplog.at_level(logging.INFO, logger="connector.sftp"):
        receipt = upload_sftp(payload, target, log)

    assert (receipt.name, receipt.size, receipt.sha256) == (
        NAME,
        payload.size,
        payload.sha256,
    )
    assert (receipt.verified, receipt.destination, receipt.attempts) == (
        level,
        "sftp",
        1,
    )
    assert _sha256(drop / NAME) == payload.sha256
    assert sorted(p.name for p in drop.iterdir()) == [NAME]
    [line] = _lines(log)
    assert line["outcome"] == "verified"
    assert (line["offset"], line["sent"]) == (0, payload.size)
    assert line["verification"] == level
    assert any(
        "stored on sftp://" in message and level in message
        for _, _, message in caplog.record_tuples
    )


@pytest.mark.parametrize(
    "key_name", ["ecdsa", "protected"], ids=["ecdsa", "rsa-with-passphrase"]
)
def test_upload_sftp_logs_in_with_each_key_type(
    sshd: Sshd, keys: Keys, drop: Path, payload: Payload, log: AttemptLog, key_name: str
) -> None:
    passphrase = PASSPHRASE if key_name == "protected" else None
    key = getattr(keys, key_name)
    target = _target(sshd, keys, drop, key_file=key, passphrase=passphrase)

    receipt = upload_sftp(payload, target, log)

    assert receipt.verified == "length"
    assert _sha256(drop / NAME) == payload.sha256


@pytest.mark.parametrize(
    "pin", ["known_hosts", "fingerprint"], ids=["known_hosts", "fingerprint"]
)
def test_upload_sftp_refuses_other_host_key(
    sshd: Sshd,
    keys: Keys,
    drop: Path,
    payload: Payload,
    log: AttemptLog,
    tmp_path: Path,
    pin: str,
) -> None:
    other = _fingerprint(keys.other_host)
    if pin == "fingerprint":
        changes: dict[str, Any] = {"known_hosts": None, "host_key_fingerprint": other}
    else:
        known_hosts = tmp_path / "known_hosts"
        public = Path(f"{keys.other_host}.pub").read_text()
        known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {public}")
        changes = {"known_hosts": known_hosts}
    target = _target(sshd, keys, drop, **changes)

    with pytest.raises(UploadError) as caught:
        upload_sftp(payload, target, log)

    assert caught.value.exit_code == ExitCode.FAILURE
    message = str(caught.value)
    assert "\n" not in message
    assert "not the pinned one" in message
    assert sshd.fingerprint in message and other in message
    [line] = _lines(log)
    assert line["outcome"] == "failed"
    assert list(drop.iterdir()) == []


def test_upload_sftp_refuses_unknown_client_key(
    sshd: Sshd, keys: Keys, drop: Path, payload: Payload, log: AttemptLog
) -> None:
    target = _target(sshd, keys, drop, key_file=keys.stranger)

    with pytest.raises(UploadError) as caught:
        upload_sftp(payload, target, log)

    assert caught.value.exit_code == ExitCode.SECRETS_OR_AUTH
    assert "refused the key in destination.key_file" in str(caught.value)
    assert str(keys.stranger) in str(caught.value)
    [line] = _lines(log)
    assert (line["outcome"], line["error_class"]) == (
        "failed",
        "AuthenticationException",
    )


def test_upload_sftp_refuses_password_only_server(
    password_only_sshd: Sshd, keys: Keys, drop: Path, payload: Payload, log: AttemptLog
) -> None:
    target = _target(password_only_sshd, keys, drop)

    with pytest.raises(UploadError) as caught:
        upload_sftp(payload, target, log)

    assert caught.value.exit_code == ExitCode.SECRETS_OR_AUTH
    message = str(caught.value)
    assert "does not accept key-pair login" in message
    assert "logs in only with the key pair" in message
    assert "offers: password" in message
    [line] = _lines(log)
    assert (line["outcome"], line["error_class"]) == ("failed", "BadAuthenticationType")


@pytest.mark.parametrize(
    ("part_bytes", "expected_offset"),
    [("prefix", 3_000_000), ("foreign", 0), ("longer", 0)],
    ids=["prefix-resumed", "foreign-restarted", "longer-restarted"],
)
def test_upload_sftp_resumes_part(
    sshd: Sshd,
    keys: Keys,
    drop: Path,
    payload: Payload,
    log: AttemptLog,
    part_bytes: str,
    expected_offset: int,
) -> None:
    data = payload.path.read_bytes()
    part = {
        "prefix": data[:3_000_000],
        "foreign": os.urandom(3_000_000),
        "longer": data + b"extra",
    }[part_bytes]
    (drop / f".{NAME}.part").write_bytes(part)

    receipt = upload_sftp(payload, _target(sshd, keys, drop), log)

    assert receipt.resumed_from == expected_offset
    assert _sha256(drop / NAME) == payload.sha256
    assert sorted(p.name for p in drop.iterdir()) == [NAME]
    [line] = _lines(log)
    assert (line["offset"], line["sent"]) == (
        expected_offset,
        payload.size - expected_offset,
    )


def test_upload_sftp_without_rename_writes_final_name(
    sshd: Sshd, keys: Keys, drop: Path, payload: Payload, log: AttemptLog
) -> None:
    (drop / NAME).write_bytes(b"an older, longer file " * 400_000)

    receipt = upload_sftp(payload, _target(sshd, keys, drop, rename=False), log)

    assert receipt.verified == "none"
    assert _sha256(drop / NAME) == payload.sha256
    assert sorted(p.name for p in drop.iterdir()) == [NAME]
    [line] = _lines(log)
    assert (line["outcome"], line["verification"]) == ("verified", "none")


def test_upload_sftp_replaces_older_file(
    sshd: Sshd, keys: Keys, drop: Path, payload: Payload, log: AttemptLog
) -> None:
    (drop / NAME).write_bytes(b"yesterday")

    upload_sftp(payload, _target(sshd, keys, drop), log)

    assert _sha256(drop / NAME) == payload.sha256


def test_upload_sftp_names_missing_remote_folder(
    sshd: Sshd, keys: Keys, drop: Path, payload: Payload, log: AttemptLog
) -> None:
    target = _target(sshd, keys, drop / "missing")

    with pytest.raises(UploadError) as caught:
        upload_sftp(payload, target, log)

    assert caught.value.exit_code == ExitCode.FAILURE
    assert "destination.remote_folder" in str(caught.value)
    assert len(_lines(log)) == 1


def test_upload_sftp_retries_dead_port(
    sshd: Sshd, keys: Keys, drop: Path, payload: Payload, log: AttemptLog
) -> None:
    target = _target(
        sshd,
        keys,
        drop,
        port=_free_port(),
        known_hosts=None,
        host_key_fingerprint=sshd.fingerprint,
    )

    with pytest.raises(UploadError) as caught:
        upload_sftp(payload, target, log)

    assert caught.value.exit_code == ExitCode.RETRY_LATER
    assert "after 3 attempts" in str(caught.value)
    lines = _lines(log)
    assert [line["outcome"] for line in lines] == ["retry", "retry", "failed"]
    assert {line["error_class"] for line in lines} == {"ConnectionRefusedError"}


class _CuttingProxy:
    """Forwards TCP to sshd, and cuts the first connection after some bytes."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.port = port
        self.cut_after = cut_after
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.port))
            limit = self.cut_after if self.connections == 1 else None
            for source, sink, cut in ((client, server, limit), (server, client, None)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, cut), daemon=True
                )
                thread.start()
                self.threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, cut: int | None) -> None:
        forwarded = 0
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                forwarded += len(data)
                if cut is not None and forwarded >= cut:
                    break
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept(); shutdown() does.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for thread in self.threads:
            thread.join(5)


def test_upload_sftp_resumes_after_cut_connection(
    sshd: Sshd, keys: Keys, drop: Path, payload: Payload, log: AttemptLog
) -> None:
    proxy = _CuttingProxy(sshd.port, cut_after=2_000_000)
    target = _target(
        sshd,
        keys,
        drop,
        port=proxy.address[1],
        known_hosts=None,
        host_key_fingerprint=sshd.fingerprint,
    )
    try:
        receipt = upload_sftp(payload, target, log)
    finally:
        proxy.close()

    assert receipt.attempts == 2
    assert 0 < receipt.resumed_from < payload.size
    assert _sha256(drop / NAME) == payload.sha256
    first, second = _lines(log)
    assert first["outcome"] == "retry" and first["sent"] > 0
    assert second["outcome"] == "verified"
    assert second["offset"] == receipt.resumed_from
    assert second["sent"] == payload.size - receipt.resumed_from


def test_upload_sftp_gives_up_on_silent_server(
    sshd: Sshd, keys: Keys, drop: Path, payload: Payload, log: AttemptLog
) -> None:
    # The kernel accepts connections on a listening socket; nobody ever answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        target = _target(
            sshd,
            keys,
            drop,
            port=silent.getsockname()[1],
            known_hosts=None,
            host_key_fingerprint=sshd.fingerprint,
            timeout=0.5,
        )
        started = time.monotonic()
        with pytest.raises(UploadError) as caught:
            upload_sftp(payload, target, log)

    assert caught.value.exit_code == ExitCode.RETRY_LATER
    assert time.monotonic() - started < 10
    assert [line["outcome"] for line in _lines(log)] == ["retry", "retry", "failed"]


@pytest.mark.parametrize(
    "passphrase", ["wrong passphrase 91b2", None], ids=["wrong", "missing"]
)
def test_upload_sftp_rejects_wrong_passphrase(
    sshd: Sshd,
    keys: Keys,
    drop: Path,
    payload: Payload,
    log: AttemptLog,
    passphrase: str | None,
) -> None:
    target = _target(sshd, keys, drop, key_file=keys.protected, passphrase=passphrase)

    with pytest.raises(UploadError) as caught:
        upload_sftp(payload, target, log)

    assert caught.value.exit_code == ExitCode.SECRETS_OR_AUTH
    message = str(caught.value)
    assert "destination.key_file" in message
    assert PASSPHRASE not in message
    assert passphrase is None or passphrase not in message
    assert passphrase is None or passphrase not in repr(target)
    for line in _lines(log):
        assert passphrase is None or passphrase not in json.dumps(line)


@pytest.mark.parametrize(
    ("known_hosts", "fingerprint"),
    [(None, None), (Path("known_hosts"), "SHA256:" + "A" * 43)],
    ids=["neither", "both"],
)
def test_sftp_target_needs_exactly_one_pin(
    known_hosts: Path | None, fingerprint: str | None
) -> None:
    with pytest.raises(ConfigError) as caught:
        SftpTarget(
            "example.invalid",
            user="u",
            key_file=Path("key"),
            known_hosts=known_hosts,
            host_key_fingerprint=fingerprint,
        )

    assert "destination.known_hosts" in str(caught.value)
    assert "destination.host_key_fingerprint" in str(caught.value)


def test_sftp_target_checks_fingerprint_shape(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="destination.host_key_fingerprint"):
        SftpTarget(
            "example.invalid",
            user="u",
            key_file=tmp_path / "key",
            host_key_fingerprint="MD5:12:34",
        )


def test_upload_sftp_needs_host_in_known_hosts(
    keys: Keys, drop: Path, payload: Payload, log: AttemptLog, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"elsewhere.invalid {Path(f'{keys.host}.pub').read_text()}")
    target = SftpTarget(
        "127.0.0.1", 2222, "u", keys.client, known_hosts=known_hosts, policy=QUICK
    )

    with pytest.raises(ConfigError, match=r"no key for \[127.0.0.1\]:2222"):
        upload_sftp(payload, target, log)
