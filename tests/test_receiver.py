"""The reference receiver over real HTTPS on 127.0.0.1 with throwaway certificates."""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from connector.receiver import Receiver, make_certificates

TOKEN = "receiver-test-token"
BODY = os.urandom(300_000)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "store", TOKEN, tls_dir=tmp_path / "tls") as running:
        yield running


@pytest.fixture
def client(receiver: Receiver) -> Iterator[httpx.Client]:
    assert receiver.ca_file is not None
    context = ssl.create_default_context(cafile=str(receiver.ca_file))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(
        base_url=receiver.url, verify=context, headers=headers, timeout=10
    ) as c:
        yield c


def _digest_header(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def test_receiver_put_stores_and_answers_receipt(
    receiver: Receiver, client: httpx.Client
) -> None:
    response = client.put(
        "a.csv.gz.pgp", content=BODY, headers={"Content-Digest": _digest_header(BODY)}
    )

    assert response.status_code == 201
    assert response.json() == {
        "name": "a.csv.gz.pgp",
        "size": len(BODY),
        "sha256": hashlib.sha256(BODY).hexdigest(),
    }
    assert (receiver.folder / "a.csv.gz.pgp").read_bytes() == BODY
    assert receiver.url.startswith("https://127.0.0.1:")


def test_receiver_get_meta_and_head(client: httpx.Client) -> None:
    client.put("a.bin", content=BODY).raise_for_status()

    assert client.get("a.bin").content == BODY
    meta = client.get("a.bin", params="meta").json()
    assert meta["size"] == len(BODY)
    assert meta["sha256"] == hashlib.sha256(BODY).hexdigest()
    head = client.head("a.bin")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(BODY))
    assert client.get("absent.bin").status_code == 404


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_receiver_refuses_bad_token(
    receiver: Receiver, client: httpx.Client, headers: dict[str, str]
) -> None:
    client.headers.pop("Authorization")

    response = client.put("a.bin", content=BODY, headers=headers)

    assert response.status_code == 401
    assert os.listdir(receiver.folder) == []


@pytest.mark.parametrize(
    "name",
    [".hidden", "%2e%2e", "a%2Fb", "..%2Fescape", "", "sub/dir"],
    ids=["dot", "dotdot", "slash", "traversal", "empty", "nested"],
)
def test_receiver_refuses_bad_names(
    receiver: Receiver, client: httpx.Client, name: str
) -> None:
    response = client.put(name, content=b"x")

    assert response.status_code == 400
    assert os.listdir(receiver.folder) == []


def test_receiver_wrong_content_digest_keeps_nothing(
    receiver: Receiver, client: httpx.Client
) -> None:
    response = client.put(
        "a.bin", content=BODY, headers={"Content-Digest": _digest_header(b"other")}
    )

    assert response.status_code == 400
    assert os.listdir(receiver.folder) == []


def test_receiver_needs_content_length(client: httpx.Client) -> None:
    response = client.put("a.bin", content=iter([b"chunked", b"body"]))

    assert response.status_code == 411


def test_receiver_fail_next_then_recovers(
    receiver: Receiver, client: httpx.Client
) -> None:
    receiver.fail_next(2, status=503, retry_after="1")

    first = client.put("a.bin", content=BODY)
    second = client.put("a.bin", content=BODY)
    third = client.put("a.bin", content=BODY)

    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 201]
    assert first.headers["Retry-After"] == "1"


def test_receiver_corrupt_next_reports_stored_bytes(
    receiver: Receiver, client: httpx.Client
) -> None:
    receiver.corrupt_next()

    receipt = client.put("a.bin", content=BODY).json()

    stored = (receiver.folder / "a.bin").read_bytes()
    assert stored != BODY and len(stored) == len(BODY)
    assert receipt["sha256"] == hashlib.sha256(stored).hexdigest()


def test_make_certificates_files(tmp_path: Path) -> None:
    ca, chain, key = make_certificates(tmp_path)

    assert b"BEGIN CERTIFICATE" in ca.read_bytes()
    assert b"BEGIN CERTIFICATE" in chain.read_bytes()
    assert b"PRIVATE KEY" in key.read_bytes()
    assert key.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("kind", ["https", "tus"])
def test_the_receiver_can_decrypt_what_it_stores(tmp_path: Path, kind: str) -> None:
    """With the service's secret key, the receiver shows the CSV as it arrived."""
    from connector.package import make_keypair, package_export
    from connector.transfer import AttemptLog

    csv = b'"Student ID"\r\n"S1"\r\n'
    export = tmp_path / "students.csv"
    export.write_bytes(csv)
    public, secret = make_keypair(tmp_path / "keys")
    payload = package_export(export, tmp_path / "spool", public)
    log = AttemptLog(
        tmp_path / "log.jsonl",
        run_id="t",
        file=payload.path.name,
        destination=kind,
        size=payload.size,
        sha256=payload.sha256,
    )
    with Receiver(tmp_path / "in", "tok", decrypt_key=secret) as receiver:
        assert receiver.ca_file is not None
        if kind == "https":
            from connector.upload import UploadTarget, upload_payload

            upload_payload(
                payload, UploadTarget(receiver.url, "tok", receiver.ca_file), log
            )
        else:
            from connector.tus import TusTarget, upload_tus

            target = TusTarget(receiver.url, "tok", receiver.ca_file)
            upload_tus(payload, target, log, tmp_path / "state")

    assert (tmp_path / "in" / "decrypted" / "students.csv").read_bytes() == csv
