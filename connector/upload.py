"""Send a payload to the receiver over HTTPS and prove it arrived intact.

One ``PUT <destination.url><payload name>`` per attempt, streamed from the spool file,
with the payload's SHA-256 in ``Content-Digest`` (RFC 9530) and as ``Idempotency-Key``.
The receiver answers with the size and SHA-256 of what it stored; the upload counts
only when both equal the payload's.

Connection failures, timeouts, resets and 408/429/5xx answers are tried again with
exponential back-off and jitter (``Retry-After`` is honoured up to ``max_wait``).
A refused token, any other 4xx, and a certificate that fails verification stop at
once: repeating them cannot help. Every attempt appends one JSON line to the upload
log; the token never appears there or in messages.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from .errors import ConfigError, ExitCode, UploadError, VerificationError
from .https import (
    check_payload,
    check_upload_url,
    is_certificate_failure,
    redact,
    retry_after,
    ssl_context,
)
from .package import Payload
from .transfer import AttemptLog, Attempts, Receipt, RetryPolicy, one_line

__all__ = ["Receipt", "UploadTarget", "upload_payload"]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
VERIFIED_BY_RECEIVER = "receipt"
_RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class UploadTarget:
    """Where and how to upload: the ``destination`` settings.

    ``url`` must be https; payload names are appended to it (a missing final ``/``
    is added). ``ca_file`` replaces the system trust store when set. ``timeout``
    applies to connecting, and to each read and write. ``backoff`` is the first
    wait between attempts in seconds; waits double up to ``max_wait``.
    """

    url: str
    token: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    attempts: int = 5
    timeout: float = 30.0
    backoff: float = 2.0
    max_wait: float = 120.0
    deadline: float = 3600.0
    proxy: str | None = None
    """An HTTP(S) proxy URL; unset, the standard HTTPS_PROXY/NO_PROXY apply."""

    def __post_init__(self) -> None:
        check_upload_url(self.url)
        if not self.url.endswith("/"):
            object.__setattr__(self, "url", self.url + "/")
        if self.attempts < 1:
            raise ConfigError(
                f"destination.attempts must be 1 or more, not {self.attempts}"
            )
        if self.timeout <= 0 or self.backoff < 0 or self.max_wait < 0:
            raise ConfigError(
                "destination.timeout must be positive and destination.backoff "
                "and destination.max_wait not negative"
            )

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.attempts, self.backoff, self.max_wait, self.deadline)

    @property
    def origin(self) -> str:
        """``https://host:port`` of the receiver, for messages."""
        parts = urlsplit(self.url)
        port = parts.port or 443
        return f"https://{parts.hostname}:{port}"


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix."""

    def __init__(
        self,
        text: str,
        started: float,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(text)
        self.started = started
        self.retry_after = retry_after
        self.status = status
        self.cause = cause

    def log(self, log: AttemptLog, number: int, outcome: str) -> None:
        error = self.cause if self.cause is not None else str(self)
        log.write(number, outcome, self.started, status=self.status, error=error)


def upload_payload(
    payload: Payload,
    target: UploadTarget,
    log: AttemptLog | Path,
    *,
    run_id: str = "",
) -> Receipt:
    """Upload ``payload`` to ``target`` and verify the receiver's receipt.

    ``log`` is the attempt log, or the path of its file. Raises ``UploadError``
    when the receiver cannot be reached or refuses the upload (the payload stays
    in the spool), and ``VerificationError`` when the receiver reports other bytes
    than were sent.
    """
    check_payload(payload)
    context = ssl_context(target.ca_file)
    if isinstance(log, Path):
        log = AttemptLog(
            log,
            run_id=run_id,
            file=payload.path.name,
            destination=redact(target.url + quote(payload.path.name)),
            size=payload.size,
            sha256=payload.sha256,
        )
    timeout = httpx.Timeout(
        connect=target.timeout,
        read=target.timeout,
        write=target.timeout,
        pool=target.timeout,
    )
    attempts = Attempts(target.policy)
    with httpx.Client(
        verify=context, timeout=timeout, trust_env=True, proxy=target.proxy
    ) as client:
        while True:
            number = attempts.start()
            try:
                receipt = _attempt(client, payload, target, log, number)
                break
            except _Retryable as exc:
                wait = attempts.failed(exc.retry_after)
                exc.log(log, number, "retry" if wait is not None else "failed")
                if wait is None:
                    raise UploadError(
                        f"upload of {payload.path.name} could not reach "
                        f"{target.origin} after {number} attempts: {exc}; the "
                        f"payload is kept in {payload.path}; run `connector send` "
                        "to try again"
                    ) from exc
                time.sleep(wait)

    logger.info(
        "upload %s verified by %s: %d bytes, sha256 %s, attempt %d",
        receipt.name,
        target.origin,
        receipt.size,
        receipt.sha256,
        receipt.attempts,
    )
    return receipt


def _attempt(
    client: httpx.Client,
    payload: Payload,
    target: UploadTarget,
    log: AttemptLog,
    number: int,
) -> Receipt:
    """Make one PUT; return the verified receipt or raise."""
    started = time.monotonic()
    try:
        response = client.put(
            target.url + quote(payload.path.name),
            content=_file_chunks(payload.path),
            headers=_headers(payload, target),
        )
    except httpx.ConnectError as exc:
        if is_certificate_failure(exc):
            log.write(number, "failed", started, error=exc)
            raise UploadError(
                f"the TLS certificate of {target.origin} failed verification "
                f"({one_line(exc)}); check destination.ca_file, or the system "
                "trust store if it is unset",
                exit_code=ExitCode.FAILURE,
            ) from exc
        raise _retry(log, number, started, exc) from exc
    except httpx.TransportError as exc:
        raise _retry(log, number, started, exc) from exc

    status = response.status_code
    if status in (200, 201):
        return _verify(response, payload, log, number, started)

    if status in _RETRY_STATUSES:
        text = f"HTTP {status} {response.reason_phrase}"
        logger.warning("upload %s attempt %d: %s", payload.path.name, number, text)
        raise _Retryable(
            text, started, retry_after=retry_after(response), status=status
        )

    log.write(
        number,
        "failed",
        started,
        status=status,
        error=f"HTTP {status} {response.reason_phrase}",
    )
    if status in (401, 403):
        raise UploadError(
            f"{target.origin} refused the token (HTTP {status}); check "
            "destination.token_secret",
            exit_code=ExitCode.SECRETS_OR_AUTH,
        )
    raise UploadError(
        f"{target.origin} refused the upload of {payload.path.name} with HTTP "
        f"{status} {response.reason_phrase}; check destination.url; the payload "
        f"is kept in {payload.path}",
        exit_code=ExitCode.FAILURE,
    )


def _verify(
    response: httpx.Response,
    payload: Payload,
    log: AttemptLog,
    number: int,
    started: float,
) -> Receipt:
    """Compare the receiver's receipt with the payload."""
    status = response.status_code
    try:
        body = response.json()
        size, sha256 = int(body["size"]), str(body["sha256"]).lower()
    except (ValueError, KeyError, TypeError) as exc:
        log.write(number, "mismatch", started, status=status, error="no receipt")
        raise VerificationError(
            f"the receiver accepted {payload.path.name} (HTTP {status}) but sent "
            "no receipt with size and sha256; the upload cannot be verified"
        ) from exc

    if size != payload.size or sha256 != payload.sha256:
        log.write(
            number,
            "mismatch",
            started,
            sent=payload.size,
            status=status,
            error=f"receiver holds {size} bytes sha256 {sha256}",
        )
        raise VerificationError(
            f"the receiver stored {size} bytes with sha256 {sha256} for "
            f"{payload.path.name}, but {payload.size} bytes with sha256 "
            f"{payload.sha256} were sent; the payload is kept in {payload.path}; "
            "report this to the receiver before sending again"
        )

    log.write(
        number,
        "verified",
        started,
        sent=payload.size,
        status=status,
        verification=VERIFIED_BY_RECEIVER,
    )
    name = str(body.get("name") or payload.path.name)
    return Receipt(name, size, sha256, VERIFIED_BY_RECEIVER, number, "https")


def _retry(log: AttemptLog, number: int, started: float, exc: Exception) -> _Retryable:
    logger.warning("upload attempt %d: %s", number, one_line(exc))
    return _Retryable(one_line(exc), started, cause=exc)


def _headers(payload: Payload, target: UploadTarget) -> dict[str, str]:
    digest = base64.b64encode(bytes.fromhex(payload.sha256)).decode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(payload.size),
        "Content-Digest": f"sha-256=:{digest}:",
        "Idempotency-Key": payload.sha256,
    }
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    return headers


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk
