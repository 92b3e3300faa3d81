"""What every destination shares: receipts, verification levels, the attempt log
and the retry policy.

A destination (``upload`` for a single HTTPS request, ``tus`` for resumable HTTPS,
``sftp``, ``folder``) takes a ``Payload`` from the spool and returns a ``Receipt``
saying how far the arrival was verified. Every attempt appends one JSON line to the
attempt log; no line ever holds a token, a password, a passphrase or an
Authorization header.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import ConfigError
from .redact import redact

logger = logging.getLogger(__name__)

LEVELS = ("none", "length", "chunks", "read-back", "receipt")
"""Verification levels, weakest first:

- ``length``: the destination reports holding as many bytes as were sent;
- ``chunks``: every chunk was accepted against its checksum, and the length matches;
- ``read-back``: the stored file was read back and hashed by the client;
- ``receipt``: the receiver itself reports the SHA-256 of what it stored.
"""


def level_rank(level: str) -> int:
    """Position of ``level`` in ``LEVELS`` (higher is stronger)."""
    return LEVELS.index(level)


@dataclass(frozen=True)
class Receipt:
    """What the destination confirmed holding after an upload."""

    name: str
    size: int
    sha256: str
    verified: str
    attempts: int
    destination: str = ""
    resumed_from: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again.

    ``attempts`` failures in a row end the upload; an attempt that moved the
    upload forward (the server's offset grew) resets that count. Waits grow from
    ``backoff`` seconds, doubling, with jitter, up to ``max_wait``; a server's
    ``Retry-After`` is honoured up to ``max_wait``. ``deadline`` seconds after the
    first attempt no new attempt starts.
    """

    attempts: int = 5
    backoff: float = 2.0
    max_wait: float = 120.0
    deadline: float = 3600.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0 or self.max_wait < 0:
            raise ConfigError(
                "destination.attempts must be 1 or more, destination.backoff and "
                "destination.max_wait not negative"
            )
        if self.deadline <= 0:
            raise ConfigError("destination.deadline must be positive")

    def wait(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_wait)
        exponential = self.backoff * 2.0 ** (failures - 1)
        return min(exponential + random.uniform(0, self.backoff), self.max_wait)


class Attempts:
    """Counts attempts for one payload under a ``RetryPolicy``.

    ``start()`` before each attempt; ``failed()`` after a retryable failure
    returns the wait before the next one, or ``None`` when the policy says stop;
    ``progressed()`` when an attempt moved the upload forward.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.number = 0
        self.failures = 0
        self._started = time.monotonic()

    def start(self) -> int:
        self.number += 1
        return self.number

    def progressed(self) -> None:
        self.failures = 0

    def failed(self, retry_after: float | None = None) -> float | None:
        self.failures += 1
        if self.failures >= self.policy.attempts:
            return None
        wait = self.policy.wait(self.failures, retry_after)
        elapsed = time.monotonic() - self._started
        if elapsed + wait >= self.policy.deadline:
            return None
        return wait

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() - self._started >= self.policy.deadline


class AttemptLog:
    """Appends one JSON line per attempt for one payload and destination."""

    def __init__(
        self,
        path: Path,
        *,
        run_id: str,
        file: str,
        destination: str,
        size: int,
        sha256: str,
    ) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the upload log folder {path.parent} "
                f"({exc.strerror}); check state.folder"
            ) from exc
        self.path = path
        self.common = {
            "run_id": run_id,
            "file": file,
            "destination": destination,
            "bytes": size,
            "sha256": sha256,
        }

    def write(
        self,
        attempt: int,
        outcome: str,
        started: float,
        *,
        offset: int = 0,
        sent: int = 0,
        status: int | None = None,
        error: str | BaseException | None = None,
        verification: str | None = None,
    ) -> None:
        """``outcome``: verified, retry, failed, mismatch, or resumed."""
        error_class = None
        if isinstance(error, BaseException):
            error_class = type(error).__name__
            error = one_line(error)
        elif status is not None and error is not None:
            error_class = f"HTTP {status}"
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **self.common,
            "attempt": attempt,
            "offset": offset,
            "sent": sent,
            "outcome": outcome,
            "status": status,
            "error_class": error_class,
            "error": error,
            "verification": verification,
            "duration_s": round(time.monotonic() - started, 3),
        }
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def one_line(exc: BaseException) -> str:
    """An exception as one short line: its class and message."""
    text = " ".join(redact(str(exc)).split()) or "no detail"
    return f"{type(exc).__name__}: {text}"[:300]
