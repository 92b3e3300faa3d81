"""Where payloads go: one interface over the configured destination.

``[destination] kind`` picks one of:

- ``https``: one PUT per attempt with ``Content-Digest``; verified by the
  receiver's SHA-256 receipt (``connector.upload``);
- ``tus``: resumable HTTPS, tus 1.0; a cut upload resumes from the server's offset,
  also in the next process (``connector.tus``);
- ``sftp``: key-pair login only, host key pinned; temporary name, resume, rename
  (``connector.sftp``);
- ``folder``: a local or network folder; temporary name, then rename, then read
  back.

``deliver`` sends one payload, writes the attempt log and checks that the
verification level reached is at least the configured minimum.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import ConfigError, UploadError, VerificationError
from .package import Payload, Recipient
from .secrets import check_value, get_secret
from .transfer import AttemptLog, Attempts, Receipt, RetryPolicy, level_rank

if TYPE_CHECKING:
    from .config import Job

logger = logging.getLogger(__name__)

DEFAULT_LEVEL = {
    "https": "receipt",
    "tus": "length",
    "sftp": "length",
    "folder": "read-back",
}
CHUNK = 1024 * 1024


class Destination(Protocol):
    kind: str
    where: str
    """Where payloads go, for logs and messages: no secret, no credentials."""

    def send(self, payload: Payload, log: AttemptLog) -> Receipt: ...


@dataclass(frozen=True)
class Prepared:
    """The destination, the encryption recipient and the rules of a job's sends."""

    destination: Destination
    recipient: Recipient
    min_level: str
    manifest: bool


def prepare(job: Job) -> Prepared:
    """Check the destination settings, look up its secrets, load the recipient key.

    Done before any extract, so a missing secret or a bad key costs no database
    time.
    """
    settings = job.settings.destination
    if settings is None:
        raise ConfigError(f"{job.path}: [destination] is missing; nothing to send to")
    if settings.encryption == "age":
        assert settings.age_recipient is not None
        recipient = Recipient.age_key(settings.age_recipient)
    else:
        assert settings.recipient_cert is not None
        recipient = Recipient.openpgp(
            job.resolve(settings.recipient_cert), settings.recipient_fingerprint
        )
    policy = RetryPolicy(
        settings.attempts, settings.backoff, settings.max_wait, settings.deadline
    )
    destination = _open(job, policy)
    return Prepared(
        destination=destination,
        recipient=recipient,
        min_level=settings.min_verification or DEFAULT_LEVEL[settings.kind],
        manifest=settings.manifest,
    )


def _open(job: Job, policy: RetryPolicy) -> Destination:
    settings = job.settings.destination
    assert settings is not None

    def secret(name: str | None) -> str | None:
        return None if name is None else get_secret(name, folder=job.secrets_folder)

    def token() -> str | None:
        value = secret(settings.token_secret)
        if value is not None:
            check_value("destination.token_secret", settings.token_secret or "", value)
        return value

    ca_file = job.destination_path(settings.ca_file)
    if settings.kind == "https":
        from .upload import UploadTarget

        assert settings.url is not None
        return HttpsPut(
            UploadTarget(
                url=settings.url,
                token=token(),
                ca_file=ca_file,
                attempts=settings.attempts,
                timeout=settings.timeout,
                backoff=settings.backoff,
                max_wait=settings.max_wait,
                deadline=settings.deadline,
                proxy=settings.proxy,
            )
        )
    if settings.kind == "tus":
        from .tus import TusTarget

        assert settings.url is not None
        return Tus(
            TusTarget(
                url=settings.url,
                token=token(),
                ca_file=ca_file,
                timeout=settings.timeout,
                chunk_size=settings.chunk_size,
                policy=policy,
                read_back=settings.read_back,
                proxy=settings.proxy,
            ),
            job.state_folder,
        )
    if settings.kind == "sftp":
        from .sftp import SftpTarget

        assert settings.host is not None and settings.key_file is not None
        return Sftp(
            SftpTarget(
                host=settings.host,
                port=settings.port,
                user=settings.user or "",
                key_file=job.resolve(settings.key_file),
                passphrase=secret(settings.passphrase_secret),
                known_hosts=job.destination_path(settings.known_hosts),
                host_key_fingerprint=settings.host_key_fingerprint,
                folder=settings.remote_folder,
                rename=settings.rename,
                read_back=settings.read_back,
                timeout=settings.timeout,
                policy=policy,
            )
        )
    assert settings.path is not None
    return Folder(job.resolve(settings.path), policy)


def deliver(
    prepared: Prepared, payload: Payload, log_path: Path, run_id: str
) -> Receipt:
    """Send one payload and check the verification level reached."""
    destination = prepared.destination
    log = AttemptLog(
        log_path,
        run_id=run_id,
        file=payload.path.name,
        destination=destination.where,
        size=payload.size,
        sha256=payload.sha256,
    )
    receipt = destination.send(payload, log)
    if level_rank(receipt.verified) < level_rank(prepared.min_level):
        raise VerificationError(
            f"{payload.path.name} reached {destination.where} but was verified "
            f"only to level {receipt.verified!r}, below destination."
            f"min_verification {prepared.min_level!r}; the payload is kept in "
            f"{payload.path}. Lower the minimum only if the receiver cannot do better"
        )
    return receipt


class HttpsPut:
    kind = "https"

    def __init__(self, target: object) -> None:
        from .https import redact
        from .upload import UploadTarget

        assert isinstance(target, UploadTarget)
        self.target = target
        self.where = redact(target.url)

    def send(self, payload: Payload, log: AttemptLog) -> Receipt:
        from .upload import upload_payload

        return upload_payload(payload, self.target, log)


class Tus:
    kind = "tus"

    def __init__(self, target: object, state_folder: Path) -> None:
        from .https import redact
        from .tus import TusTarget

        assert isinstance(target, TusTarget)
        self.target = target
        self.state_folder = state_folder
        self.where = redact(target.url)

    def send(self, payload: Payload, log: AttemptLog) -> Receipt:
        from .tus import upload_tus

        return upload_tus(payload, self.target, log, self.state_folder)


class Sftp:
    kind = "sftp"

    def __init__(self, target: object) -> None:
        from .sftp import SftpTarget

        assert isinstance(target, SftpTarget)
        self.target = target
        self.where = f"sftp://{target.user}@{target.host}:{target.port}/{target.folder}"

    def send(self, payload: Payload, log: AttemptLog) -> Receipt:
        from .sftp import upload_sftp

        return upload_sftp(payload, self.target, log)


class Folder:
    """A local or network folder: copy under a temporary name, rename, read back."""

    kind = "folder"

    def __init__(self, path: Path, policy: RetryPolicy) -> None:
        self.path = path
        self.policy = policy
        self.where = str(path)

    def send(self, payload: Payload, log: AttemptLog) -> Receipt:
        attempts = Attempts(self.policy)
        final = self.path / payload.path.name
        part = self.path / f".{payload.path.name}.part"
        while True:
            number = attempts.start()
            started = time.monotonic()
            try:
                self._copy(payload.path, part)
                os.replace(part, final)
                size, sha256 = _hash(final)
            except OSError as exc:
                wait = attempts.failed()
                log.write(
                    number,
                    "retry" if wait is not None else "failed",
                    started,
                    error=exc,
                )
                if wait is None:
                    raise UploadError(
                        f"cannot write {payload.path.name} into {self.path} "
                        f"({exc.strerror or exc}); check that the folder exists "
                        "and is writable; the payload is kept in "
                        f"{payload.path}"
                    ) from exc
                time.sleep(wait)
                continue
            if (size, sha256) != (payload.size, payload.sha256):
                log.write(number, "mismatch", started, sent=payload.size)
                raise VerificationError(
                    f"{final} holds {size} bytes with sha256 {sha256} after the "
                    f"copy, not the {payload.size} bytes with sha256 "
                    f"{payload.sha256} sent; check the share's health"
                )
            log.write(
                number,
                "verified",
                started,
                sent=payload.size,
                verification="read-back",
            )
            return Receipt(
                payload.path.name, size, sha256, "read-back", number, "folder"
            )

    @staticmethod
    def _copy(source: Path, part: Path) -> None:
        if not part.parent.is_dir():
            raise FileNotFoundError(2, "no such folder", str(part.parent))
        with source.open("rb") as src, part.open("wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())


def _hash(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
