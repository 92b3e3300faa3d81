"""A small HTTPS receiver for payloads, for the demo and the tests.

It stands in for the hosted service and speaks the same protocol:

``PUT /files/<name>``
    Needs ``Authorization: Bearer <token>`` and ``Content-Length`` (411 without
    it). The body is streamed to a temporary file while its SHA-256 is computed,
    then renamed into place, replacing an older file of that name. The answer is
    201 with ``{"name": ..., "size": ..., "sha256": "<hex>"}`` describing the bytes
    *stored*. If ``Content-Digest: sha-256=:<base64>:`` is sent and does not match
    what arrived, the answer is 400 and nothing is kept.
``GET /files/<name>``
    The stored bytes. ``GET /files/<name>?meta`` answers the same JSON as the PUT,
    computed again from the file on disk. ``HEAD`` answers the GET headers only.

``OPTIONS /files/``, ``POST /files/``, ``HEAD`` and ``PATCH /files/tus/<id>``
    Resumable uploads with tus 1.0 (core, creation, and checksum with sha1 and
    sha256). ``POST`` needs ``Upload-Length`` and a ``filename`` in
    ``Upload-Metadata`` and answers ``Location: /files/tus/<id>``. Each ``PATCH``
    is appended to a partial file in ``.tus/``; a chunk that fails its
    ``Upload-Checksum`` is dropped (460), as is a checksummed chunk cut short. When
    the last byte arrives the partial file is hashed and renamed to ``<name>``,
    replacing an older file of that name, and the answer carries
    ``Upload-Sha256: <hex>`` with ``Upload-Offset``: the receipt for what was
    stored. Every later ``HEAD`` of the upload repeats it.

Names are one path segment of letters, digits, ``.``, ``_`` and ``-``, not starting
with a dot; anything else is 400. A wrong or missing token is 401.

For fault tests, ``Receiver.fail_next`` answers the next requests (of one method, if
given) with an error status, ``Receiver.corrupt_next`` stores other bytes than were
received, ``Receiver.damage_next`` damages the next tus chunk on arrival (so its
checksum fails) and ``Receiver.drop_next`` hangs up in the middle of the next
``PATCH``.

By hand::

    python -m connector.receiver --folder received --port 8443 --token-file token
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trustme

__all__ = ["Receiver", "main", "make_certificates"]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
# An error answer comes after reading the body, up to this size: closing a socket
# with unread data makes the kernel send a reset that can destroy the answer.
DRAIN_LIMIT = 64 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")
_PREFIX = "/files/"
_TUS_PREFIX = _PREFIX + "tus/"
_TUS_ID = re.compile(r"[0-9a-f]{32}")
TUS_VERSION = "1.0.0"
TUS_CHECKSUMS = ("sha1", "sha256")
# A PATCH waits this long for another PATCH of the same upload to end, then is 423.
TUS_LOCK_WAIT = 5.0


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """Make a throwaway CA and a certificate for 127.0.0.1 and localhost.

    Returns (CA certificate, server certificate chain, server private key), all
    PEM files in ``folder``. Clients trust the first one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")

    ca_path = folder / "ca.pem"
    chain_path = folder / "server-chain.pem"
    key_path = folder / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    chain_path.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(key_path))
    key_path.chmod(0o600)
    return ca_path, chain_path, key_path


class _Faults:
    """Failures to inject into the next requests, shared by all handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fail_count = 0
        self.fail_status = 503
        self.fail_method: str | None = None
        self.retry_after: str | None = None
        self.corrupt_count = 0
        self.damage_count = 0
        self.drop_count = 0
        self.drop_every = 0
        self.drop_budget = 0

    def take_failure(self, method: str) -> tuple[int, str | None] | None:
        with self.lock:
            if self.fail_count <= 0:
                return None
            if self.fail_method is not None and self.fail_method != method:
                return None
            self.fail_count -= 1
            return self.fail_status, self.retry_after

    def take_damage(self) -> bool:
        with self.lock:
            if self.damage_count <= 0:
                return False
            self.damage_count -= 1
            return True

    def take_drop(self, length: int) -> int | None:
        """How many bytes of a ``length``-byte PATCH to read before hanging up."""
        with self.lock:
            if self.drop_count <= 0:
                return None
            if self.drop_budget >= length:
                self.drop_budget -= length
                return None
            budget, self.drop_budget = self.drop_budget, self.drop_every
            self.drop_count -= 1
            return budget

    def take_corruption(self) -> bool:
        with self.lock:
            if self.corrupt_count <= 0:
                return False
            self.corrupt_count -= 1
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        context: ssl.SSLContext,
        folder: Path,
        token: str,
    ) -> None:
        super().__init__(address, _Handler)
        self.context = context
        self.folder = folder
        self.token = token
        self.decrypt_key: Path | None = None
        self.faults = _Faults()
        self.tus_guard = threading.Lock()
        self.tus_locks: dict[str, threading.Lock] = {}

    def tus_lock(self, upload_id: str) -> threading.Lock:
        """The lock that keeps two requests from writing one upload at once."""
        with self.tus_guard:
            return self.tus_locks.setdefault(upload_id, threading.Lock())

    def get_request(self) -> tuple[socket.socket, Any]:
        # The handshake runs in the handler thread (on first read), so a client
        # that connects and stalls cannot block the accept loop.
        sock, address = super().get_request()
        tls = self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return tls, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that rejects our certificate or hangs up is routine here.
        exc = sys.exc_info()[1]
        logger.debug("connection from %s ended: %r", client_address, exc)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_PUT(self) -> None:
        name = self._admit()
        if name is None:
            return

        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._answer(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length needed"})
            self.close_connection = True
            return
        try:
            expected = _parse_content_digest(self.headers.get("Content-Digest"))
        except ValueError as exc:
            self._discard_body()
            self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return

        self._store(name, int(length_header), expected)

    def do_GET(self) -> None:
        self._serve(with_body=True)

    def do_HEAD(self) -> None:
        if urlsplit(self.path).path.startswith(_TUS_PREFIX):
            self._tus_head()
        else:
            self._serve(with_body=False)

    def do_OPTIONS(self) -> None:
        if not self._authorised():
            return
        self._discard_body()
        self._tus_reply(
            HTTPStatus.NO_CONTENT,
            {
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": "creation,checksum",
                "Tus-Checksum-Algorithm": ",".join(TUS_CHECKSUMS),
            },
        )

    def do_POST(self) -> None:
        if not self._authorised():
            return
        if urlsplit(self.path).path != _PREFIX:
            self._discard_body()
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"POST only to {_PREFIX}"})
            return
        self._tus_create()

    def do_PATCH(self) -> None:
        if not self._authorised():
            return
        self._tus_patch()

    def _admit(self) -> str | None:
        """Check faults, the token and the name; answer and return None if refused."""
        if not self._authorised():
            return None

        parts = urlsplit(self.path)
        name = unquote(parts.path[len(_PREFIX) :])
        if not parts.path.startswith(_PREFIX) or not _NAME.fullmatch(name):
            self._discard_body()
            self._answer(HTTPStatus.BAD_REQUEST, {"error": "bad file name"})
            return None
        return name

    def _authorised(self) -> bool:
        """Check faults and the token; answer and return False if refused."""
        failure = self.server.faults.take_failure(self.command)
        if failure is not None:
            status, retry_after = failure
            self._discard_body()
            headers = {"Retry-After": retry_after} if retry_after else {}
            self._answer(status, {"error": "injected failure"}, headers)
            return False

        supplied = self.headers.get("Authorization", "")
        wanted = f"Bearer {self.server.token}"
        if not hmac.compare_digest(supplied.encode(), wanted.encode()):
            self._discard_body()
            self._answer(
                HTTPStatus.UNAUTHORIZED,
                {"error": "missing or wrong bearer token"},
                {"WWW-Authenticate": "Bearer"},
            )
            return False
        return True

    def _store(self, name: str, length: int, expected: bytes | None) -> None:
        folder = self.server.folder
        corrupt = self.server.faults.take_corruption()
        received = hashlib.sha256()
        stored = hashlib.sha256()
        fd, raw = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        temp = Path(raw)
        try:
            with os.fdopen(fd, "wb") as out:
                remaining = length
                while remaining:
                    chunk = self.rfile.read(min(CHUNK_SIZE, remaining))
                    if not chunk:
                        raise ConnectionError(f"body ended {remaining} bytes early")
                    remaining -= len(chunk)
                    received.update(chunk)
                    if corrupt:
                        chunk, corrupt = bytes([chunk[0] ^ 0xFF]) + chunk[1:], False
                    stored.update(chunk)
                    out.write(chunk)

            if expected is not None and not hmac.compare_digest(
                expected, received.digest()
            ):
                self._answer(
                    HTTPStatus.BAD_REQUEST, {"error": "Content-Digest does not match"}
                )
                return
            os.replace(temp, folder / name)
        except (OSError, ConnectionError) as exc:
            logger.warning("upload of %s abandoned: %s", name, exc)
            self.close_connection = True
            return
        finally:
            temp.unlink(missing_ok=True)

        receipt = {"name": name, "size": length, "sha256": stored.hexdigest()}
        logger.info("stored %s: %d bytes, sha256 %s", name, length, receipt["sha256"])
        _decrypt(self.server.decrypt_key, folder / name)
        self._answer(HTTPStatus.CREATED, receipt)

    def _serve(self, with_body: bool) -> None:
        name = self._admit()
        if name is None:
            return
        path = self.server.folder / name
        if not path.is_file():
            self._answer(HTTPStatus.NOT_FOUND, {"error": "no such file"})
            return

        if "meta" in parse_qs(urlsplit(self.path).query, keep_blank_values=True):
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    digest.update(chunk)
            meta = {"name": name, "size": path.stat().st_size}
            self._answer(HTTPStatus.OK, meta | {"sha256": digest.hexdigest()})
            return

        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        if with_body:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    self.wfile.write(chunk)

    def _tus_create(self) -> None:
        """``POST``: make an upload and answer its URL."""
        if not self._tus_version_ok():
            return
        length = self.headers.get("Upload-Length", "")
        try:
            metadata = _parse_tus_metadata(self.headers.get("Upload-Metadata", ""))
        except ValueError as exc:
            self._discard_body()
            self._tus_error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        name = metadata.get("filename", "")
        self._discard_body()
        if not length.isdigit():
            self._tus_error(HTTPStatus.BAD_REQUEST, "Upload-Length needed")
            return
        if not _NAME.fullmatch(name):
            self._tus_error(HTTPStatus.BAD_REQUEST, "a valid filename in metadata")
            return

        upload = _TusUpload(self.server.folder, secrets.token_hex(16))
        upload.begin(name, int(length))
        if int(length) == 0:
            upload.complete()
            _decrypt(self.server.decrypt_key, self.server.folder / upload.name)
        logger.info("tus upload %s created for %s: %s bytes", upload.id, name, length)
        self._tus_reply(
            HTTPStatus.CREATED, {"Location": _TUS_PREFIX + upload.id}, length=True
        )

    def _tus_head(self) -> None:
        """``HEAD``: the upload's offset and length, and its receipt once complete."""
        if not self._authorised():
            return
        upload = self._tus_upload()
        if upload is None:
            return
        self._tus_reply(HTTPStatus.OK, upload.headers() | {"Cache-Control": "no-store"})

    def _tus_patch(self) -> None:
        """``PATCH``: append one chunk at the upload's offset."""
        if not self._tus_version_ok():
            return
        upload = self._tus_upload()
        if upload is None:
            return
        content_type = self.headers.get("Content-Type", "")
        offset = self.headers.get("Upload-Offset", "")
        length = self.headers.get("Content-Length", "")
        if content_type.split(";")[0].strip() != "application/offset+octet-stream":
            self._discard_body()
            self._tus_error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/offset+octet-stream",
            )
            return
        if not offset.isdigit() or not length.isdigit():
            self._discard_body()
            self._tus_error(HTTPStatus.BAD_REQUEST, "Upload-Offset and Content-Length")
            return
        try:
            checksum = _parse_tus_checksum(self.headers.get("Upload-Checksum"))
        except ValueError as exc:
            self._discard_body()
            self._tus_error(HTTPStatus.BAD_REQUEST, str(exc))
            return

        lock = self.server.tus_lock(upload.id)
        if not lock.acquire(timeout=TUS_LOCK_WAIT):
            self._discard_body()
            self._tus_error(HTTPStatus.LOCKED, "another PATCH is writing this upload")
            return
        try:
            self._tus_append(upload, int(offset), int(length), checksum)
        finally:
            lock.release()

    def _tus_append(
        self,
        upload: _TusUpload,
        offset: int,
        length: int,
        checksum: tuple[str, bytes] | None,
    ) -> None:
        state = upload.load()
        if state is None:
            self._discard_body()
            self._tus_error(HTTPStatus.NOT_FOUND, "no such upload")
            return
        if offset != upload.offset(state):
            self._discard_body()
            self._tus_error(HTTPStatus.CONFLICT, f"offset is {upload.offset(state)}")
            return
        if offset + length > state["length"]:
            self._discard_body()
            self._tus_error(HTTPStatus.BAD_REQUEST, "chunk goes past Upload-Length")
            return

        faults = self.server.faults
        damage, corrupt = faults.take_damage(), faults.take_corruption()
        drop_after = faults.take_drop(length)
        received = hashlib.new(checksum[0]) if checksum else None
        with upload.part.open("r+b") as out:
            out.seek(offset)
            remaining = length
            while remaining:
                size = min(CHUNK_SIZE, remaining)
                if drop_after is not None:
                    size = min(size, max(drop_after - (length - remaining), 0))
                chunk = self.rfile.read(size) if size else b""
                if not chunk:
                    break
                remaining -= len(chunk)
                if damage:
                    chunk, damage = bytes([chunk[0] ^ 0xFF]) + chunk[1:], False
                if received is not None:
                    received.update(chunk)
                if corrupt:
                    chunk, corrupt = bytes([chunk[0] ^ 0xFF]) + chunk[1:], False
                out.write(chunk)

            if remaining:
                # Cut short, by the client or by drop_next: keep the bytes that
                # arrived unless a checksum was promised for the whole chunk.
                if received is not None:
                    out.truncate(offset)
                logger.warning("tus upload %s: PATCH ended early", upload.id)
                self.close_connection = True
                return
            if received is not None and checksum is not None:
                if not hmac.compare_digest(received.digest(), checksum[1]):
                    out.truncate(offset)
                    self._tus_error(460, "checksum mismatch")
                    return

        if offset + length == state["length"]:
            upload.complete()
            _decrypt(self.server.decrypt_key, self.server.folder / upload.name)
        self._tus_reply(HTTPStatus.NO_CONTENT, upload.headers(offset_only=True))

    def _tus_upload(self) -> _TusUpload | None:
        """The upload named by the path, or None after answering 404."""
        upload_id = urlsplit(self.path).path[len(_TUS_PREFIX) :]
        upload = _TusUpload(self.server.folder, upload_id)
        if (
            not urlsplit(self.path).path.startswith(_TUS_PREFIX)
            or not _TUS_ID.fullmatch(upload_id)
            or upload.load() is None
        ):
            self._discard_body()
            self._tus_error(HTTPStatus.NOT_FOUND, "no such upload")
            return None
        return upload

    def _tus_version_ok(self) -> bool:
        if self.headers.get("Tus-Resumable") == TUS_VERSION:
            return True
        self._discard_body()
        self._answer(
            HTTPStatus.PRECONDITION_FAILED,
            {"error": f"Tus-Resumable {TUS_VERSION} needed"},
            {"Tus-Version": TUS_VERSION, "Tus-Resumable": TUS_VERSION},
        )
        return False

    def _tus_reply(
        self, status: int, headers: dict[str, str], *, length: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Tus-Resumable", TUS_VERSION)
        for key, value in headers.items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", "0")
        self.end_headers()

    def _tus_error(self, status: int, text: str) -> None:
        self._answer(status, {"error": text}, {"Tus-Resumable": TUS_VERSION})

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length", "0")
        remaining = int(length) if length.isdigit() else 0
        if remaining > DRAIN_LIMIT:
            self.close_connection = True
            return
        while remaining:
            chunk = self.rfile.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)

    def _answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _TusUpload:
    """One tus upload on disk: ``.tus/<id>.json`` and the partial ``.tus/<id>.part``.

    The state file holds the name, the length and, once complete, the SHA-256 of
    the stored file; until then the offset is the size of the partial file.
    """

    def __init__(self, folder: Path, upload_id: str) -> None:
        self.folder = folder
        self.id = upload_id
        self.part = folder / ".tus" / f"{upload_id}.part"
        self.meta = folder / ".tus" / f"{upload_id}.json"

    def begin(self, name: str, length: int) -> None:
        self.part.parent.mkdir(exist_ok=True)
        self.part.touch()
        self._save({"name": name, "length": length, "sha256": None})

    @property
    def name(self) -> str:
        state = self.load()
        assert state is not None
        return str(state["name"])

    def load(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state

    def offset(self, state: dict[str, Any]) -> int:
        if state["sha256"] is not None:
            return int(state["length"])
        try:
            return self.part.stat().st_size
        except OSError:
            return 0

    def complete(self) -> None:
        """Hash the partial file, rename it into place and record the receipt."""
        state = self.load()
        assert state is not None
        digest = hashlib.sha256()
        with self.part.open("rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                digest.update(chunk)
        os.replace(self.part, self.folder / state["name"])
        self._save(state | {"sha256": digest.hexdigest()})
        logger.info(
            "stored %s by tus: %d bytes, sha256 %s",
            state["name"],
            state["length"],
            digest.hexdigest(),
        )

    def headers(self, *, offset_only: bool = False) -> dict[str, str]:
        state = self.load()
        assert state is not None
        headers = {"Upload-Offset": str(self.offset(state))}
        if not offset_only:
            headers["Upload-Length"] = str(state["length"])
        if state["sha256"] is not None:
            headers["Upload-Sha256"] = state["sha256"]
        return headers

    def _save(self, state: dict[str, Any]) -> None:
        fd, raw = tempfile.mkstemp(dir=self.meta.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(raw, self.meta)


def _parse_tus_metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64(value)`` pairs."""
    metadata = {}
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        if not key:
            continue
        try:
            metadata[key] = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"Upload-Metadata {key} is not base64 UTF-8") from exc
    return metadata


def _parse_tus_checksum(header: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``, if given."""
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in TUS_CHECKSUMS:
        raise ValueError(f"checksum algorithm {algorithm!r} is not supported")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except binascii.Error as exc:
        raise ValueError("Upload-Checksum is not base64") from exc
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise ValueError("Upload-Checksum has the wrong length")
    return algorithm, digest


def _parse_content_digest(header: str | None) -> bytes | None:
    """Return the SHA-256 from a ``Content-Digest`` header (RFC 9530), if any."""
    if header is None:
        return None
    for member in header.split(","):
        key, _, value = member.strip().partition("=")
        if key.strip().lower() != "sha-256":
            continue
        value = value.strip()
        if len(value) < 2 or value[0] != ":" or value[-1] != ":":
            raise ValueError("Content-Digest sha-256 must be :base64:")
        try:
            digest = base64.b64decode(value[1:-1], validate=True)
        except binascii.Error as exc:
            raise ValueError("Content-Digest sha-256 is not base64") from exc
        if len(digest) != 32:
            raise ValueError("Content-Digest sha-256 has the wrong length")
        return digest
    return None


def _decrypt(key: Path | None, payload: Path) -> None:
    """With a secret key, decrypt and unzip a stored payload into ``decrypted/``.

    As the service would on its side: the CSV appears under its own name, written
    to a temporary file first. Failures are logged, never fatal to the upload.
    """
    if key is None or not payload.name.endswith(".gz.pgp"):
        return
    import gzip

    import pysequoia

    target = payload.parent / "decrypted" / payload.name.removesuffix(".gz.pgp")
    target.parent.mkdir(mode=0o700, exist_ok=True)
    gz = target.with_name(f".{target.name}.gz.tmp")
    temp = target.with_name(f".{target.name}.tmp")
    try:
        secret = pysequoia.Tsk.from_file(str(key))
        pysequoia.decrypt_file(payload, gz, decryptor=secret.decryptor(None))
        with gzip.open(gz, "rb") as src, temp.open("wb") as out:
            shutil.copyfileobj(src, out, CHUNK_SIZE)
        os.replace(temp, target)
        logger.info("decrypted %s into %s", payload.name, target)
    except Exception as exc:  # noqa: BLE001 - the upload itself succeeded
        logger.warning("could not decrypt %s: %s", payload.name, exc)
    finally:
        gz.unlink(missing_ok=True)
        temp.unlink(missing_ok=True)


class Receiver:
    """The receiver, run in a background thread of this process.

    >>> with Receiver(folder, token="s3cret") as receiver:  # doctest: +SKIP
    ...     upload to receiver.url, trusting receiver.ca_file

    Certificates are made in ``folder/.tls`` unless ``tls_dir`` is given.
    """

    def __init__(
        self,
        folder: Path,
        token: str,
        port: int = 0,
        *,
        tls_dir: Path | None = None,
        decrypt_key: Path | None = None,
    ) -> None:
        self.folder = folder
        self.decrypt_key = decrypt_key
        self._token = token
        self._port = port
        self._tls_dir = tls_dir if tls_dir is not None else folder / ".tls"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.ca_file: Path | None = None

    def __repr__(self) -> str:
        return f"<Receiver folder={str(self.folder)!r} port={self._port}>"

    def start(self) -> Receiver:
        """Listen on 127.0.0.1 and serve in a daemon thread; return once listening."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ca_file, chain, key = make_certificates(self._tls_dir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain, key)

        self._server = _Server(
            ("127.0.0.1", self._port), context, self.folder, self._token
        )
        self._server.decrypt_key = self.decrypt_key
        self._port = self._server.server_address[1]
        self.ca_file = ca_file
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"receiver-{self._port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("receiver listening on %s, storing in %s", self.url, self.folder)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The upload URL, ``https://127.0.0.1:PORT/files/``."""
        return f"https://127.0.0.1:{self._port}{_PREFIX}"

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: str | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` before anything else.

        With ``method`` (``"PATCH"``, say) only requests of that method count.
        """
        faults = self._running().faults
        with faults.lock:
            faults.fail_count = count
            faults.fail_status = status
            faults.fail_method = method
            faults.retry_after = retry_after

    def corrupt_next(self, count: int = 1) -> None:
        """Store the next ``count`` uploads (or tus chunks) with a byte flipped.

        The flip happens after any checksum of the chunk was checked, as a failing
        disk would do it: only the receipt can tell.
        """
        faults = self._running().faults
        with faults.lock:
            faults.corrupt_count = count

    def damage_next(self, count: int = 1) -> None:
        """Flip a byte of the next ``count`` tus chunks as they arrive.

        A chunk sent with ``Upload-Checksum`` then fails it and is answered 460.
        """
        faults = self._running().faults
        with faults.lock:
            faults.damage_count = count

    def drop_next(self, after: int, count: int = 1) -> None:
        """Hang up in a tus ``PATCH`` once ``after`` more body bytes were read.

        Bytes are counted across ``PATCH`` requests, so a drop can fall in the
        middle of any chunk; this happens ``count`` times, ``after`` bytes apart.
        """
        faults = self._running().faults
        with faults.lock:
            faults.drop_count = count
            faults.drop_every = faults.drop_budget = after

    def _running(self) -> _Server:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return self._server

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the receiver in the foreground until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m connector.receiver",
        description="Reference HTTPS receiver for connector payloads (loopback only).",
    )
    parser.add_argument("--folder", type=Path, required=True, help="storage folder")
    parser.add_argument("--port", type=int, default=8443, help="TCP port on 127.0.0.1")
    parser.add_argument(
        "--token-file", type=Path, required=True, help="file holding the bearer token"
    )
    parser.add_argument(
        "--decrypt-key",
        type=Path,
        help="the receiver's OpenPGP secret key: each stored .gz.pgp payload is "
        "also decrypted and unzipped into FOLDER/decrypted/",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        token = args.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        parser.error(f"cannot read --token-file {args.token_file}: {exc.strerror}")
    if not token:
        parser.error(f"--token-file {args.token_file} is empty")

    receiver = Receiver(
        args.folder, token, args.port, decrypt_key=args.decrypt_key
    ).start()
    sys.stderr.write(
        f"receiver URL: {receiver.url}\nCA certificate: {receiver.ca_file}\n"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
