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

Names are one path segment of letters, digits, ``.``, ``_`` and ``-``, not starting
with a dot; anything else is 400. A wrong or missing token is 401.

For fault tests, ``Receiver.fail_next`` answers the next requests with an error
status and ``Receiver.corrupt_next`` stores other bytes than were received.

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
        self.retry_after: str | None = None
        self.corrupt_count = 0

    def take_failure(self) -> tuple[int, str | None] | None:
        with self.lock:
            if self.fail_count <= 0:
                return None
            self.fail_count -= 1
            return self.fail_status, self.retry_after

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
        self.faults = _Faults()

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
        self._serve(with_body=False)

    def _admit(self) -> str | None:
        """Check faults, the token and the name; answer and return None if refused."""
        failure = self.server.faults.take_failure()
        if failure is not None:
            status, retry_after = failure
            self._discard_body()
            headers = {"Retry-After": retry_after} if retry_after else {}
            self._answer(status, {"error": "injected failure"}, headers)
            return None

        supplied = self.headers.get("Authorization", "")
        wanted = f"Bearer {self.server.token}"
        if not hmac.compare_digest(supplied.encode(), wanted.encode()):
            self._discard_body()
            self._answer(
                HTTPStatus.UNAUTHORIZED,
                {"error": "missing or wrong bearer token"},
                {"WWW-Authenticate": "Bearer"},
            )
            return None

        parts = urlsplit(self.path)
        name = unquote(parts.path[len(_PREFIX) :])
        if not parts.path.startswith(_PREFIX) or not _NAME.fullmatch(name):
            self._discard_body()
            self._answer(HTTPStatus.BAD_REQUEST, {"error": "bad file name"})
            return None
        return name

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
    ) -> None:
        self.folder = folder
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
        self, count: int = 1, status: int = 503, *, retry_after: str | None = None
    ) -> None:
        """Answer the next ``count`` requests with ``status`` before anything else."""
        faults = self._running().faults
        with faults.lock:
            faults.fail_count = count
            faults.fail_status = status
            faults.retry_after = retry_after

    def corrupt_next(self, count: int = 1) -> None:
        """Store the next ``count`` uploads with their first byte flipped."""
        faults = self._running().faults
        with faults.lock:
            faults.corrupt_count = count

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
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        token = args.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        parser.error(f"cannot read --token-file {args.token_file}: {exc.strerror}")
    if not token:
        parser.error(f"--token-file {args.token_file} is empty")

    receiver = Receiver(args.folder, token, args.port).start()
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
