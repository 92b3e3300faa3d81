"""Send a payload to a tus 1.0 server over HTTPS, resuming where an attempt stopped.

The protocol (tus.io, version 1.0.0 with the *creation* and, when offered, the
*checksum* extension), step by step:

1. ``OPTIONS <url>`` tells which versions, extensions and checksum algorithms the
   server has. ``@uploadx/core`` leaves out ``Tus-Version``; that is tolerated.
2. ``POST <url>`` with ``Upload-Length`` and ``Upload-Metadata`` (the file name and
   the payload's SHA-256) creates an upload; its URL comes back in ``Location``,
   which may be relative. A URL that is not https on the same host and port is
   refused: ``@tus/server`` behind ``node:https`` answers ``http://`` unless it is
   set up for relative locations.
3. The upload URL is written to ``<state>/tus/<payload sha256>.json`` so that a
   later process sending the same payload resumes it: ``HEAD`` gives the server's
   ``Upload-Offset``, and ``PATCH`` requests send ``chunk_size`` bytes each from
   there, streamed from the spool file. A 404 or 410 there means the server dropped
   the upload, and a new one is created.
4. With the checksum extension each ``PATCH`` carries ``Upload-Checksum``; a 460
   answer means the chunk arrived damaged, and the next attempt starts again from
   the server's offset.

How far the arrival was proved is the receipt's ``verified`` level (see
``transfer.LEVELS``): ``receipt`` when the server reports the SHA-256 of what it
stored, either in an ``Upload-Sha256: <hex>`` header on the completing ``PATCH`` or
on ``HEAD`` (as ``connector.receiver`` does), or in a JSON body with top-level
``size`` and ``sha256``; ``read-back`` when ``read_back`` is set and ``GET`` on the
upload URL serves the whole file, which is hashed; ``chunks`` when every chunk went
with a checksum; ``length`` otherwise, from the final ``HEAD``.

Retries follow ``transfer.RetryPolicy``: connection errors, timeouts, resets, 408,
423, 429 and 5xx, and 409 or 460 answers to a ``PATCH``, are tried again; an attempt
that moved the server's offset forward resets the count of failures. A refused
token, other 4xx and a certificate that fails verification stop at once. Every
attempt appends one line to the attempt log; the token never appears there or in
messages.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx

from .errors import (
    ConfigError,
    ConnectorError,
    ExitCode,
    UploadError,
    VerificationError,
)
from .https import (
    check_payload,
    check_upload_url,
    is_certificate_failure,
    redact,
    retry_after,
    ssl_context,
    unreadable,
)
from .package import Payload
from .transfer import AttemptLog, Attempts, Receipt, RetryPolicy, one_line

__all__ = ["TusTarget", "upload_tus"]

logger = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
DESTINATION = "tus"
READ_SIZE = 1024 * 1024
# Strongest first: the spec makes sha1 the one every checksum server must know.
CHECKSUM_ALGORITHMS = ("sha256", "sha1")
_RETRY_STATUSES = frozenset({408, 423, 429}) | frozenset(range(500, 600))
_GONE = frozenset({404, 410})


@dataclass(frozen=True)
class TusTarget:
    """Where and how to upload with tus: the ``destination`` settings.

    ``url`` is the creation endpoint, https only. ``ca_file`` replaces the system
    trust store when set. ``timeout`` applies to connecting, and to each read and
    write. Each ``PATCH`` carries at most ``chunk_size`` bytes. With ``read_back``
    the finished upload is fetched again and hashed when the server serves it.
    """

    url: str
    token: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    timeout: float = 60.0
    chunk_size: int = 8 * 1024 * 1024
    policy: RetryPolicy = RetryPolicy()
    read_back: bool = False
    proxy: str | None = None
    """An HTTP(S) proxy URL; unset, the standard HTTPS_PROXY/NO_PROXY apply."""

    def __post_init__(self) -> None:
        check_upload_url(self.url)
        if self.timeout <= 0:
            raise ConfigError("destination.timeout must be positive")
        if self.chunk_size < 1:
            raise ConfigError(
                f"destination.chunk_size must be 1 or more, not {self.chunk_size}"
            )

    @property
    def origin(self) -> str:
        """``https://host:port`` of the server, for messages."""
        return _origin(self.url)


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix."""

    def __init__(
        self,
        text: str,
        *,
        status: int | None = None,
        error: BaseException | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.error = error
        self.retry_after = retry_after


class _Failed(Exception):
    """An attempt ended for good; ``error`` is what the caller raises."""

    def __init__(
        self,
        error: ConnectorError,
        *,
        status: int | None = None,
        detail: str | BaseException | None = None,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.status = status
        self.detail = detail if detail is not None else str(error)


@dataclass
class _Record:
    """What one attempt did, for its line in the attempt log."""

    offset: int = 0
    sent: int = 0
    status: int | None = None


@dataclass
class _Server:
    """What ``OPTIONS`` said about the server."""

    checksum: str | None
    max_size: int | None


def upload_tus(
    payload: Payload, target: TusTarget, log: AttemptLog, state_dir: Path
) -> Receipt:
    """Upload ``payload`` to the tus server at ``target``, resuming any earlier try.

    Raises ``UploadError`` when the server cannot be reached in time (exit 4: the
    payload and the resume state are kept) or refuses the upload, and
    ``VerificationError`` when the server reports other bytes than were sent.
    """
    check_payload(payload)
    context = ssl_context(target.ca_file)
    timeout = httpx.Timeout(
        connect=target.timeout,
        read=target.timeout,
        write=target.timeout,
        pool=target.timeout,
    )
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    attempts = Attempts(target.policy)

    with httpx.Client(
        verify=context, timeout=timeout, headers=headers, proxy=target.proxy
    ) as client:
        upload = _Upload(client, payload, target, state_dir)
        while True:
            number = attempts.start()
            started = time.monotonic()
            # Until the server answers, the attempt starts where the last one
            # left the upload; progress is measured against that.
            before = upload.confirmed
            record = _Record(offset=before)
            try:
                level = upload.attempt(record)
            except _Retryable as exc:
                if upload.moved_forward(before):
                    attempts.progressed()
                wait = attempts.failed(exc.retry_after)
                outcome = "retry" if wait is not None else "failed"
                log.write(
                    number,
                    outcome,
                    started,
                    offset=record.offset,
                    sent=record.sent,
                    status=exc.status,
                    error=exc.error or str(exc),
                )
                logger.warning(
                    "tus upload %s attempt %d: %s", payload.path.name, number, exc
                )
                if wait is None:
                    raise _out_of_attempts(upload, attempts, exc) from exc
                time.sleep(wait)
                continue
            except _Failed as exc:
                mismatch = isinstance(exc.error, VerificationError)
                log.write(
                    number,
                    "mismatch" if mismatch else "failed",
                    started,
                    offset=record.offset,
                    sent=record.sent,
                    status=exc.status,
                    error=exc.detail,
                )
                raise exc.error from exc.__cause__
            break

    log.write(
        number,
        "verified",
        started,
        offset=record.offset,
        sent=record.sent,
        status=record.status,
        verification=level,
    )
    upload.forget()
    logger.info(
        "tus upload %s verified by %s (%s): %d bytes, sha256 %s, attempt %d",
        payload.path.name,
        target.origin,
        level,
        payload.size,
        payload.sha256,
        number,
    )
    return Receipt(
        name=payload.path.name,
        size=payload.size,
        sha256=payload.sha256,
        verified=level,
        attempts=number,
        destination=DESTINATION,
        resumed_from=upload.resumed_from,
    )


class _Upload:
    """One payload on its way to one tus server, across attempts."""

    def __init__(
        self,
        client: httpx.Client,
        payload: Payload,
        target: TusTarget,
        state_dir: Path,
    ) -> None:
        self.client = client
        self.payload = payload
        self.target = target
        self.state_path = state_dir / "tus" / f"{payload.sha256}.json"
        self.server: _Server | None = None
        self.url: str | None = None
        # The highest offset the server confirmed for self.url.
        self.confirmed = 0
        # False once a byte of the upload went without a checksum.
        self.all_checksummed = False
        self.resumed_from = 0
        self._first = True
        self._state_checksum: str | None = None

    def attempt(self, record: _Record) -> str:
        """Run one attempt to the end; return the verification level reached."""
        if self.server is None:
            self.server = self._discover()
        offset, head = self._locate()
        record.offset = offset
        if self._first:
            self.resumed_from = offset
            self._first = False

        final: httpx.Response | None = None
        with self._open_payload() as source:
            try:
                while offset < self.payload.size:
                    final, offset = self._patch(source, offset, record)
            except OSError as exc:
                # httpx turns network OSErrors into its own exceptions: this
                # one comes from reading the spool file.
                raise _Failed(unreadable(self.payload, exc), detail=exc) from exc

        return self._verify(final if final is not None else head, record)

    def moved_forward(self, since: int) -> bool:
        """Whether the server confirmed more bytes than ``since``."""
        return self.url is not None and self.confirmed > since

    def forget(self) -> None:
        """Remove the resume state once the upload is verified."""
        self.state_path.unlink(missing_ok=True)

    # The protocol steps, in order.

    def _discover(self) -> _Server:
        response = self._send(
            "OPTIONS", self.target.url, "the OPTIONS request", tus=False
        )
        if response.status_code not in (200, 204):
            raise self._refused(response, "the OPTIONS request")

        versions = _header_list(response, "Tus-Version")
        if versions and TUS_VERSION not in versions:
            raise _Failed(
                UploadError(
                    f"{self.target.origin} speaks tus {', '.join(versions)}, not "
                    f"{TUS_VERSION}; check destination.url",
                    exit_code=ExitCode.FAILURE,
                ),
                status=response.status_code,
            )
        extensions = _header_list(response, "Tus-Extension")
        if "creation" not in extensions:
            raise _Failed(
                UploadError(
                    f"{self.target.origin} does not offer the tus creation extension "
                    f"(Tus-Extension: {', '.join(extensions) or 'none'}); check "
                    "destination.url",
                    exit_code=ExitCode.FAILURE,
                ),
                status=response.status_code,
            )

        offered = _header_list(response, "Tus-Checksum-Algorithm")
        checksum = None
        if "checksum" in extensions:
            checksum = next((a for a in CHECKSUM_ALGORITHMS if a in offered), None)
        max_size = _int_header(response, "Tus-Max-Size")
        if max_size is not None and self.payload.size > max_size:
            raise _Failed(
                UploadError(
                    f"{self.target.origin} takes uploads of at most {max_size} bytes "
                    f"(Tus-Max-Size); {self.payload.path.name} has "
                    f"{self.payload.size}; the payload is kept in {self.payload.path}",
                    exit_code=ExitCode.FAILURE,
                ),
                status=response.status_code,
            )
        logger.debug(
            "tus server %s: extensions %s, checksum %s",
            self.target.origin,
            ",".join(extensions),
            checksum,
        )
        return _Server(checksum=checksum, max_size=max_size)

    def _locate(self) -> tuple[int, httpx.Response | None]:
        """Find the upload to continue, or create one; return the server's offset."""
        if self.url is None:
            self.url = self._read_state()
            self.all_checksummed = self._state_checksum is not None
        if self.url is not None:
            head = self._head(self.url)
            if head is not None:
                offset = _required_int(head, "Upload-Offset", self.target.origin)
                length = _int_header(head, "Upload-Length")
                if length in (None, self.payload.size) and offset <= self.payload.size:
                    if offset > 0:
                        logger.info(
                            "tus upload %s resumed at offset %d of %d",
                            self.payload.path.name,
                            offset,
                            self.payload.size,
                        )
                    self.confirmed = max(self.confirmed, offset)
                    return offset, head
                logger.warning(
                    "tus upload %s: the server holds %s bytes of %s at %s, not this "
                    "payload; creating a new upload",
                    self.payload.path.name,
                    offset,
                    length,
                    redact(self.url),
                )
            else:
                logger.warning(
                    "tus upload %s: the server no longer has %s; creating a new upload",
                    self.payload.path.name,
                    redact(self.url),
                )
            self.url = None

        self.url = self._create()
        self.confirmed = 0
        return 0, None

    def _create(self) -> str:
        assert self.server is not None
        name = self.payload.path.name
        response = self._send(
            "POST",
            self.target.url,
            "the creation request",
            headers={
                "Upload-Length": str(self.payload.size),
                "Upload-Metadata": _metadata(filename=name, sha256=self.payload.sha256),
                "Content-Length": "0",
            },
        )
        if response.status_code != 201:
            raise self._refused(response, "the creation request")
        location = response.headers.get("Location")
        if not location:
            raise _Failed(
                UploadError(
                    f"{self.target.origin} created an upload without a Location "
                    "header; it does not speak tus; check destination.url",
                    exit_code=ExitCode.FAILURE,
                ),
                status=201,
            )

        url: str = urljoin(self.target.url, location)
        parts, endpoint = urlsplit(url), urlsplit(self.target.url)
        if parts.scheme != "https" or _origin(url) != _origin(self.target.url):
            raise _Failed(
                UploadError(
                    f"{self.target.origin} answered the upload URL {redact(url)!r}, "
                    f"which is not https on {endpoint.hostname}; the upload would "
                    "leave the encrypted connection; set the server to answer "
                    "relative or https locations (for @tus/server: relativeLocation "
                    "or respectForwardedHeaders behind a proxy)",
                    exit_code=ExitCode.FAILURE,
                ),
                status=201,
            )

        self.all_checksummed = self.server.checksum is not None
        self._write_state(url)
        logger.info(
            "tus upload %s created at %s: %d bytes",
            name,
            redact(url),
            self.payload.size,
        )
        return url

    def _head(self, url: str) -> httpx.Response | None:
        """``HEAD`` the upload; ``None`` when the server no longer has it."""
        response = self._send(
            "HEAD", url, "the HEAD request", headers={"Cache-Control": "no-store"}
        )
        if response.status_code in _GONE:
            return None
        if response.status_code not in (200, 204):
            raise self._refused(response, "the HEAD request")
        return response

    def _patch(
        self, source: BinaryIO, offset: int, record: _Record
    ) -> tuple[httpx.Response, int]:
        """Send one chunk from ``offset``; return the answer and the new offset."""
        assert self.url is not None and self.server is not None
        length = min(self.target.chunk_size, self.payload.size - offset)
        headers = {
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(length),
            "Upload-Offset": str(offset),
        }
        algorithm = self.server.checksum
        if algorithm is not None:
            digest = _chunk_digest(source, offset, length, algorithm)
            headers["Upload-Checksum"] = f"{algorithm} {digest}"
        else:
            self.all_checksummed = False

        response = self._send(
            "PATCH",
            self.url,
            "a PATCH request",
            headers=headers,
            content=_chunk_pieces(source, offset, length, record),
        )
        status = response.status_code
        record.status = status
        if status == 460:
            raise _Retryable(
                f"HTTP 460: the chunk at offset {offset} failed its {algorithm} "
                "checksum on arrival",
                status=status,
            )
        if status == 409:
            raise _Retryable(
                f"HTTP 409: the server's offset is not {offset}", status=status
            )
        if status in _GONE:
            self.forget()
            self.url = None
            raise _Retryable(
                f"HTTP {status}: the server dropped the upload", status=status
            )
        if status not in (200, 204):
            raise self._refused(response, "a PATCH request")

        new_offset = _required_int(response, "Upload-Offset", self.target.origin)
        if not offset < new_offset <= self.payload.size:
            raise _Retryable(
                f"the server answered offset {new_offset} after {length} bytes "
                f"sent at offset {offset}",
                status=status,
            )
        self.confirmed = max(self.confirmed, new_offset)
        logger.debug(
            "tus PATCH accepted for %s: offset %d of %d",
            self.payload.path.name,
            new_offset,
            self.payload.size,
        )
        return response, new_offset

    def _verify(self, final: httpx.Response | None, record: _Record) -> str:
        """Prove the arrival as strongly as the server allows; return the level."""
        assert self.url is not None
        if final is not None and record.status is None:
            record.status = final.status_code
        receipt = _receipt(final) if final is not None else None
        if receipt is None:
            head = final
            if final is None or final.request.method != "HEAD":
                head = self._head(self.url)
            if head is not None:
                self._check_complete(head)
                receipt = _receipt(head)
            else:
                # A server may move a finished upload away at once (a hook of
                # @tus/server can): the completing PATCH's offset is the last word.
                logger.info(
                    "tus upload %s: the server moved the finished upload away; "
                    "relying on the offset of the last PATCH",
                    self.payload.path.name,
                )

        if receipt is not None:
            self._compare(*receipt, how="reports")
            return "receipt"
        if self.target.read_back and self._read_back():
            return "read-back"
        return "chunks" if self.all_checksummed else "length"

    def _check_complete(self, head: httpx.Response) -> None:
        offset = _required_int(head, "Upload-Offset", self.target.origin)
        length = _int_header(head, "Upload-Length")
        if offset != self.payload.size or length not in (None, self.payload.size):
            raise _Retryable(
                f"the server holds {offset} bytes of {length} after completion, "
                f"not {self.payload.size}",
                status=head.status_code,
            )

    def _read_back(self) -> bool:
        """``GET`` the upload and hash it; ``False`` if the server does not serve it."""
        assert self.url is not None
        digest = hashlib.sha256()
        size = 0
        with self._transport_errors(), self.client.stream("GET", self.url) as response:
            # 401 or 403 here means downloads are not allowed, not a bad token:
            # the same token just wrote the upload.
            if response.status_code in _RETRY_STATUSES:
                raise self._refused(response, "the read-back GET")
            if response.status_code != 200:
                logger.info(
                    "tus upload %s: %s does not serve uploads back (HTTP %d)",
                    self.payload.path.name,
                    self.target.origin,
                    response.status_code,
                )
                return False
            for piece in response.iter_bytes(READ_SIZE):
                size += len(piece)
                if size > self.payload.size:
                    break
                digest.update(piece)

        if size != self.payload.size:
            logger.info(
                "tus upload %s: GET on the upload URL answered something else "
                "than the file (%s bytes); not read back",
                self.payload.path.name,
                f"over {self.payload.size}" if size > self.payload.size else size,
            )
            return False
        self._compare(size, digest.hexdigest(), how="served back")
        return True

    def _compare(self, size: int, sha256: str, *, how: str) -> None:
        if size == self.payload.size and sha256 == self.payload.sha256:
            return
        self.forget()
        raise _Failed(
            VerificationError(
                f"{self.target.origin} {how} {size} bytes with sha256 {sha256} for "
                f"{self.payload.path.name}, but {self.payload.size} bytes with sha256 "
                f"{self.payload.sha256} were sent; the payload is kept in "
                f"{self.payload.path}; report this to the receiver before sending "
                "again"
            ),
            detail=f"server {how} {size} bytes sha256 {sha256}",
        )

    # HTTP and error mapping.

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        tus: bool = True,
        headers: dict[str, str] | None = None,
        content: Iterator[bytes] | None = None,
    ) -> httpx.Response:
        """Make one request; raise for answers that no caller handles itself."""
        all_headers = {"Tus-Resumable": TUS_VERSION} if tus else {}
        all_headers |= headers or {}
        with self._transport_errors():
            response = self.client.request(
                method, url, headers=all_headers, content=content
            )
        status = response.status_code
        if status in (401, 403) or status in _RETRY_STATUSES:
            raise self._refused(response, what)
        return response

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError as exc:
            if is_certificate_failure(exc):
                raise _Failed(
                    UploadError(
                        f"the TLS certificate of {self.target.origin} failed "
                        f"verification ({one_line(exc)}); check destination.ca_file, "
                        "or the system trust store if it is unset",
                        exit_code=ExitCode.FAILURE,
                    ),
                    detail=exc,
                ) from exc
            raise _Retryable(one_line(exc), error=exc) from exc
        except httpx.TransportError as exc:
            raise _Retryable(one_line(exc), error=exc) from exc

    def _refused(self, response: httpx.Response, what: str) -> Exception:
        """The error for an answer that ends the attempt."""
        status = response.status_code
        text = f"HTTP {status} {response.reason_phrase}".strip()
        if status in _RETRY_STATUSES:
            return _Retryable(
                f"{what} answered {text}",
                status=status,
                retry_after=retry_after(response),
            )
        if status in (401, 403):
            error = UploadError(
                f"{self.target.origin} refused the token ({text}); check "
                "destination.token_secret",
                exit_code=ExitCode.SECRETS_OR_AUTH,
            )
        else:
            error = UploadError(
                f"{self.target.origin} refused {what} for {self.payload.path.name} "
                f"with {text}; check destination.url; the payload is kept in "
                f"{self.payload.path}",
                exit_code=ExitCode.FAILURE,
            )
        return _Failed(error, status=status, detail=text)

    # The resume state and the payload file.

    def _read_state(self) -> str | None:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            url, endpoint, size = state["upload_url"], state["endpoint"], state["size"]
            checksum = state.get("checksum")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "tus resume state %s is unreadable (%s); starting a new upload",
                self.state_path,
                one_line(exc),
            )
            return None
        if endpoint != self.target.url or size != self.payload.size:
            logger.info(
                "tus resume state %s is for %s; starting a new upload at %s",
                self.state_path,
                redact(str(endpoint)),
                self.target.origin,
            )
            return None
        self._state_checksum = checksum if isinstance(checksum, str) else None
        return str(url)

    def _write_state(self, url: str) -> None:
        assert self.server is not None
        self._state_checksum = self.server.checksum
        state = {
            "upload_url": url,
            "endpoint": self.target.url,
            "file": self.payload.path.name,
            "size": self.payload.size,
            "sha256": self.payload.sha256,
            "checksum": self.server.checksum,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        folder = self.state_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, raw = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(state, f, indent=2)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(raw, self.state_path)
            finally:
                Path(raw).unlink(missing_ok=True)
        except OSError as exc:
            raise _Failed(
                UploadError(
                    f"cannot write the tus resume state {self.state_path} "
                    f"({exc.strerror}); check state.folder",
                    exit_code=ExitCode.FAILURE,
                ),
                detail=exc,
            ) from exc

    @contextlib.contextmanager
    def _open_payload(self) -> Iterator[BinaryIO]:
        try:
            f = self.payload.path.open("rb")
        except OSError as exc:
            raise _Failed(unreadable(self.payload, exc), detail=exc) from exc
        with f:
            yield f

    def kept_state(self) -> str:
        """Words for messages naming the resume state, if there is one."""
        if self.state_path.exists():
            return f" and the resume state in {self.state_path}"
        return ""


def _chunk_digest(source: BinaryIO, offset: int, length: int, algorithm: str) -> str:
    """The base64 digest of ``length`` bytes at ``offset``, read in pieces."""
    digest = hashlib.new(algorithm)
    source.seek(offset)
    remaining = length
    while remaining:
        piece = source.read(min(READ_SIZE, remaining))
        if not piece:
            raise OSError(f"the file ended {remaining} bytes early")
        digest.update(piece)
        remaining -= len(piece)
    return base64.b64encode(digest.digest()).decode()


def _chunk_pieces(
    source: BinaryIO, offset: int, length: int, record: _Record
) -> Iterator[bytes]:
    """Yield ``length`` bytes from ``offset``, counting them in ``record.sent``."""
    source.seek(offset)
    remaining = length
    while remaining:
        piece = source.read(min(READ_SIZE, remaining))
        if not piece:
            raise OSError(f"the file ended {remaining} bytes early")
        remaining -= len(piece)
        record.sent += len(piece)
        yield piece


def _receipt(response: httpx.Response) -> tuple[int, str] | None:
    """The size and SHA-256 the server reports storing, if it reports them."""
    header = response.headers.get("Upload-Sha256")
    if header:
        size = _int_header(response, "Upload-Offset")
        if size is not None:
            return size, header.strip().lower()
    if response.request.method == "HEAD" or not response.headers.get(
        "Content-Type", ""
    ).startswith("application/json"):
        return None
    try:
        body: Any = response.json()
        # Only top-level fields: @uploadx/core echoes our own metadata (with the
        # sha256 we claimed) in a nested object, which proves nothing.
        return int(body["size"]), str(body["sha256"]).lower()
    except (ValueError, KeyError, TypeError):
        return None


def _metadata(**values: str) -> str:
    """``Upload-Metadata``: ``key base64(value)`` pairs, comma-separated."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in values.items()
    )


def _header_list(response: httpx.Response, name: str) -> list[str]:
    value = response.headers.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()]


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _required_int(response: httpx.Response, name: str, origin: str) -> int:
    value = _int_header(response, name)
    if value is None:
        raise _Failed(
            UploadError(
                f"{origin} answered {response.request.method} without a valid "
                f"{name} header; it does not speak tus; check destination.url",
                exit_code=ExitCode.FAILURE,
            ),
            status=response.status_code,
        )
    return value


def _out_of_attempts(
    upload: _Upload, attempts: Attempts, last: _Retryable
) -> UploadError:
    payload = upload.payload
    if attempts.failures >= attempts.policy.attempts:
        when = f"after {attempts.number} attempts"
    else:
        when = f"by destination.deadline ({attempts.policy.deadline:g} s)"
    return UploadError(
        f"tus upload of {payload.path.name} to {upload.target.origin} did not "
        f"complete {when}: {last}; the payload is kept in {payload.path}"
        f"{upload.kept_state()}; run `connector send` to resume",
        exit_code=ExitCode.RETRY_LATER,
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{parts.hostname}:{parts.port or default}"
