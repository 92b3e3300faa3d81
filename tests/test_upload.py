"""Uploads against the real receiver over HTTPS on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.errors import ConfigError, ExitCode, UploadError, VerificationError
from connector.package import Payload
from connector.receiver import Receiver, make_certificates
from connector.upload import UploadTarget, upload_payload

from .conftest import random_payload

TOKEN = "upload-test-token-d0-not-log"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "store", TOKEN, tls_dir=tmp_path / "tls") as running:
        yield running


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    return random_payload(tmp_path / "spool", 200_000)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "uploads.jsonl"


def _target(receiver: Receiver, **changes: Any) -> UploadTarget:
    settings: dict[str, Any] = {
        "url": receiver.url,
        "token": TOKEN,
        "ca_file": receiver.ca_file,
        "attempts": 3,
        "timeout": 5.0,
        "backoff": 0.01,
    }
    return UploadTarget(**(settings | changes))


def _log_lines(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_upload_payload_verified(
    receiver: Receiver,
    payload: Payload,
    log_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connector.upload")

    receipt = upload_payload(payload, _target(receiver), log_path)

    assert (receipt.name, receipt.size, receipt.sha256) == (
        "students.csv.gz.pgp",
        payload.size,
        payload.sha256,
    )
    assert (receipt.verified, receipt.attempts) == ("receipt", 1)
    assert receiver.ca_file is not None
    context = ssl.create_default_context(cafile=str(receiver.ca_file))
    fetched = httpx.get(
        receiver.url + "students.csv.gz.pgp",
        headers={"Authorization": f"Bearer {TOKEN}"},
        verify=context,
    )
    assert fetched.content == payload.path.read_bytes()
    [line] = _log_lines(log_path)
    assert line["outcome"] == "verified" and line["status"] == 201
    assert line["attempt"] == 1 and line["sha256"] == payload.sha256
    assert line["destination"] == receiver.url + "students.csv.gz.pgp"
    assert caplog.record_tuples[-1][:2] == ("connector.upload", logging.INFO)
    assert TOKEN not in log_path.read_text() + caplog.text


def test_upload_payload_retries_after_503(
    receiver: Receiver, payload: Payload, log_path: Path
) -> None:
    receiver.fail_next(1, status=503)

    receipt = upload_payload(payload, _target(receiver), log_path)

    assert receipt.attempts == 2
    lines = _log_lines(log_path)
    assert [(x["outcome"], x["status"]) for x in lines] == [
        ("retry", 503),
        ("verified", 201),
    ]


def test_upload_payload_honours_retry_after(
    receiver: Receiver, payload: Payload, log_path: Path
) -> None:
    receiver.fail_next(1, status=429, retry_after="0")

    receipt = upload_payload(payload, _target(receiver, backoff=30.0), log_path)

    assert receipt.attempts == 2  # waited Retry-After (0 s), not the 30 s back-off


def test_upload_payload_refused_token_is_not_retried(
    receiver: Receiver, payload: Payload, log_path: Path
) -> None:
    with pytest.raises(UploadError) as caught:
        upload_payload(payload, _target(receiver, token="wrong-secret"), log_path)

    message = str(caught.value)
    assert "destination.token_secret" in message and "HTTP 401" in message
    assert "wrong-secret" not in message
    assert caught.value.exit_code == ExitCode.SECRETS_OR_AUTH
    [line] = _log_lines(log_path)
    assert (line["outcome"], line["status"]) == ("failed", 401)
    assert "wrong-secret" not in log_path.read_text()


def test_upload_payload_unreachable_gives_up(payload: Payload, log_path: Path) -> None:
    port = _closed_port()
    target = UploadTarget(f"https://127.0.0.1:{port}/files/", "t", backoff=0.01)

    with pytest.raises(UploadError) as caught:
        upload_payload(payload, target, log_path)

    message = str(caught.value)
    assert f"could not reach https://127.0.0.1:{port} after 5 attempts" in message
    assert str(payload.path) in message and "connector send" in message
    assert caught.value.exit_code == ExitCode.RETRY_LATER
    lines = _log_lines(log_path)
    assert [x["attempt"] for x in lines] == [1, 2, 3, 4, 5]
    assert [x["outcome"] for x in lines] == ["retry"] * 4 + ["failed"]
    assert all(x["status"] is None and "ConnectError" in x["error"] for x in lines)
    assert payload.path.exists()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/files/", "ftp://example.invalid/", "127.0.0.1/files/"],
    ids=["http", "ftp", "no-scheme"],
)
def test_upload_target_refuses_non_https(url: str) -> None:
    with pytest.raises(ConfigError, match="destination.url must be an https"):
        UploadTarget(url)


def test_upload_target_refuses_credentials_in_url() -> None:
    with pytest.raises(ConfigError, match="destination.token_secret") as caught:
        UploadTarget("https://user:hunter2@example.invalid/files/")
    assert "hunter2" not in str(caught.value)


def test_upload_target_repr_hides_token() -> None:
    target = UploadTarget("https://example.invalid/files", token=TOKEN)

    assert TOKEN not in repr(target)
    assert target.url == "https://example.invalid/files/"


def test_upload_payload_corrupting_receiver(
    receiver: Receiver, payload: Payload, log_path: Path
) -> None:
    receiver.corrupt_next()

    with pytest.raises(VerificationError, match="students.csv.gz.pgp") as caught:
        upload_payload(payload, _target(receiver), log_path)

    assert caught.value.exit_code == ExitCode.VERIFICATION_FAILED
    [line] = _log_lines(log_path)
    assert line["outcome"] == "mismatch"
    assert payload.path.exists()


def test_upload_payload_wrong_ca_fails_fast(
    tmp_path: Path, receiver: Receiver, payload: Payload, log_path: Path
) -> None:
    other_ca, _, _ = make_certificates(tmp_path / "other")

    with pytest.raises(UploadError) as caught:
        upload_payload(payload, _target(receiver, ca_file=other_ca), log_path)

    message = str(caught.value)
    assert "certificate" in message and "destination.ca_file" in message
    assert type(caught.value) is UploadError
    assert caught.value.exit_code == ExitCode.FAILURE
    [line] = _log_lines(log_path)
    assert line["outcome"] == "failed"
    assert os.listdir(receiver.folder) == []


def test_upload_payload_unreadable_ca_file(
    tmp_path: Path, receiver: Receiver, payload: Payload, log_path: Path
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")

    with pytest.raises(ConfigError, match="destination.ca_file"):
        upload_payload(payload, _target(receiver, ca_file=bad), log_path)
