"""Send a payload to an SFTP server, logging in with a key pair only.

The server's host key is pinned, from a ``known_hosts`` file or as a ``SHA256:``
fingerprint; an unknown or changed key stops the upload at once, since trusting a
key on first use would hand student records to whoever answers. Login is by public
key only: no password, no keyboard-interactive, no agent, no other key files.

The payload is written to ``.<name>.part`` in the remote folder, resuming from
what an earlier attempt left there, then renamed to ``<name>``. Drop boxes that
forbid renaming or looking at a file after upload get ``rename = false``: the
payload is then written straight to its final name, from the start each time, and
only reading it back can verify the arrival. Connection failures, resets and
timeouts are tried again under the ``RetryPolicy``; every attempt appends one line
to the attempt log. The passphrase of the key never appears there or in messages.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from paramiko.hostkeys import InvalidHostKey
from paramiko.ssh_exception import IncompatiblePeer

from .errors import ConfigError, ExitCode, UploadError, VerificationError
from .package import Payload
from .transfer import AttemptLog, Attempts, Receipt, RetryPolicy, one_line

__all__ = ["SftpTarget", "check_host_key", "upload_sftp"]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
DESTINATION = "sftp"
# Reads go through a fresh file handle per window of this many bytes (see
# _remote_chunks).
_READ_WINDOW = 4 * 1024 * 1024
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}=?")
# Failures another attempt may fix: the network, the server going away, timeouts.
# Host key and login failures are turned into UploadError before they get here.
_TRANSIENT = (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError)


@dataclass(frozen=True)
class SftpTarget:
    """Where and how to upload over SFTP: the ``destination`` settings.

    ``key_file`` is a private key (ed25519, ECDSA or RSA) in OpenSSH or PEM
    format, protected by ``passphrase`` if set. Exactly one of ``known_hosts`` and
    ``host_key_fingerprint`` pins the server's key. ``folder`` is relative to the
    login folder unless it starts with ``/``. ``timeout`` applies to connecting,
    the handshake, the login and each read or write.
    """

    host: str
    port: int = 22
    user: str = ""
    key_file: Path = Path()
    passphrase: str | None = field(default=None, repr=False)
    known_hosts: Path | None = None
    host_key_fingerprint: str | None = None
    folder: str = "."
    rename: bool = True
    read_back: bool = False
    timeout: float = 60.0
    policy: RetryPolicy = RetryPolicy()

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("destination.host must name the SFTP server")
        if not 0 < self.port < 65536:
            raise ConfigError(
                f"destination.port must be between 1 and 65535, not {self.port}"
            )
        if not self.user:
            raise ConfigError(
                "destination.user must name the account on the SFTP server"
            )
        if self.key_file == Path():
            raise ConfigError(
                "destination.key_file must name the private key to log in with; "
                "SFTP uploads never use a password"
            )
        if (self.known_hosts is None) == (self.host_key_fingerprint is None):
            raise ConfigError(
                "set exactly one of destination.known_hosts and "
                "destination.host_key_fingerprint: the server's key is never "
                "trusted on first use"
            )
        if self.host_key_fingerprint is not None:
            fingerprint = self.host_key_fingerprint.strip()
            if not _FINGERPRINT.fullmatch(fingerprint):
                raise ConfigError(
                    "destination.host_key_fingerprint must look like "
                    "'SHA256:' and 43 base64 characters, as `ssh-keygen -l -f "
                    f"<host key>.pub` prints it, not {fingerprint!r}"
                )
            object.__setattr__(self, "host_key_fingerprint", fingerprint.rstrip("="))
        if not self.folder:
            raise ConfigError("destination.remote_folder must not be empty")
        if self.timeout <= 0:
            raise ConfigError("destination.timeout must be positive")

    @property
    def origin(self) -> str:
        """``sftp://user@host:port`` of the server, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sftp://{self.user}@{host}:{self.port}"

    def remote_path(self, name: str) -> str:
        return name if self.folder == "." else posixpath.join(self.folder, name)


@dataclass
class _Progress:
    """Where one attempt started in the part file and how much it sent."""

    offset: int = 0
    sent: int = 0


def upload_sftp(payload: Payload, target: SftpTarget, log: AttemptLog) -> Receipt:
    """Upload ``payload`` to ``target`` and check what the server holds.

    Raises ``UploadError`` when the server cannot be reached in time (exit 4; the
    part already sent is resumed next time), when its host key is not the pinned
    one (exit 1) or when it refuses the key (exit 3), and ``VerificationError``
    when the stored file differs from the payload.
    """
    _check_payload(payload)
    pin = _HostKeyPin.load(target)
    key = _load_key(target)
    attempts = Attempts(target.policy)

    while True:
        number = attempts.start()
        started = time.monotonic()
        progress = _Progress()
        try:
            receipt = _attempt(payload, target, pin, key, progress, number)
            break
        except UploadError as exc:
            outcome = "mismatch" if isinstance(exc, VerificationError) else "failed"
            log.write(
                number,
                outcome,
                started,
                offset=progress.offset,
                sent=progress.sent,
                error=exc.__cause__ or exc,
            )
            raise
        except _TRANSIENT as exc:
            if progress.sent:
                attempts.progressed()
            wait = attempts.failed()
            log.write(
                number,
                "retry" if wait is not None else "failed",
                started,
                offset=progress.offset,
                sent=progress.sent,
                error=exc,
            )
            logger.warning(
                "upload %s attempt %d: %s", payload.path.name, number, one_line(exc)
            )
            if wait is None:
                kept = (
                    "resumes the part on the server" if target.rename else "starts over"
                )
                raise UploadError(
                    f"upload of {payload.path.name} could not reach {target.origin} "
                    f"after {number} attempts: {one_line(exc)}; the payload is kept "
                    f"in {payload.path}; run `connector send` to try again (it "
                    f"{kept})"
                ) from exc
            time.sleep(wait)

    log.write(
        number,
        "verified",
        started,
        offset=progress.offset,
        sent=progress.sent,
        verification=receipt.verified,
    )
    logger.info(
        "upload %s stored on %s in %s: %d bytes, sha256 %s, verified by %s, attempt %d",
        receipt.name,
        target.origin,
        target.folder,
        receipt.size,
        receipt.sha256,
        receipt.verified,
        receipt.attempts,
    )
    return receipt


def check_host_key(target: SftpTarget) -> str:
    """Connect, check the server's host key against the pin, and hang up.

    Returns the offered key's type and fingerprint. Raises ``ConfigError`` for an
    unusable pin, ``UploadError`` when the key is not the pinned one, and
    ``OSError`` / ``paramiko.SSHException`` when the server cannot be reached.
    No login is attempted.
    """
    pin = _HostKeyPin.load(target)
    sock = socket.create_connection((target.host, target.port), target.timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = target.timeout
        transport.handshake_timeout = target.timeout
        pin.prefer_pinned_types(transport)
        transport.start_client(timeout=target.timeout)
        if not transport.initial_kex_done:
            raise TimeoutError(
                f"no SSH handshake with {target.origin} within {target.timeout} s"
            )
        offered = transport.get_remote_server_key()
        pin.check(offered, target)
    finally:
        transport.close()
    return f"{offered.get_name()} {offered.fingerprint}"


def _attempt(
    payload: Payload,
    target: SftpTarget,
    pin: _HostKeyPin,
    key: paramiko.PKey,
    progress: _Progress,
    number: int,
) -> Receipt:
    """Connect, log in, send and verify once; return the receipt or raise."""
    name = payload.path.name
    final = target.remote_path(name)
    transport, sftp = _connect(target, pin, key)
    try:
        if not target.rename:
            _send(sftp, payload, final, 0, progress)
            level = "none"
            if target.read_back:
                level = _read_back(sftp, final, payload, target)
            return _receipt(payload, level, number, 0)

        part = target.remote_path(f".{name}.part")
        offset = _resume_offset(sftp, part, payload, target)
        if offset:
            logger.info(
                "upload %s resumes at byte %d of %d", name, offset, payload.size
            )
        _send(sftp, payload, part, offset, progress)
        _check_length(sftp, part, payload, target)
        level = "length"
        if target.read_back:
            level = _read_back(sftp, part, payload, target)
        _rename(sftp, part, final, target)
        _check_length(sftp, final, payload, target)
        return _receipt(payload, level, number, offset)
    except (FileNotFoundError, PermissionError) as exc:
        # paramiko gives SFTP refusals no file name; local errors have one.
        if exc.filename is not None or not transport.is_active():
            raise
        raise UploadError(
            f"{target.origin} refused access in destination.remote_folder "
            f"{target.folder!r} ({one_line(exc)}); check that the folder exists "
            "and that the account may write there",
            exit_code=ExitCode.FAILURE,
        ) from exc
    finally:
        sftp.close()
        transport.close()


def _receipt(payload: Payload, level: str, number: int, offset: int) -> Receipt:
    return Receipt(
        name=payload.path.name,
        size=payload.size,
        sha256=payload.sha256,
        verified=level,
        attempts=number,
        destination=DESTINATION,
        resumed_from=offset,
    )


def _connect(
    target: SftpTarget, pin: _HostKeyPin, key: paramiko.PKey
) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    """Open an SSH session, check the host key, log in and start SFTP."""
    sock = socket.create_connection((target.host, target.port), target.timeout)
    try:
        transport = paramiko.Transport(sock)
    except BaseException:
        sock.close()
        raise

    try:
        transport.banner_timeout = target.timeout
        transport.handshake_timeout = target.timeout
        transport.auth_timeout = target.timeout
        transport.channel_timeout = target.timeout
        pin.prefer_pinned_types(transport)
        try:
            transport.start_client(timeout=target.timeout)
        except IncompatiblePeer as exc:
            raise UploadError(
                f"{target.origin} and the connector share no SSH algorithms "
                f"({one_line(exc)}); if destination.known_hosts pins the server, "
                "it must hold a key type the server still offers",
                exit_code=ExitCode.FAILURE,
            ) from exc
        # start_client returns quietly when its timeout runs out.
        if not transport.initial_kex_done:
            raise TimeoutError(
                f"no SSH handshake with {target.origin} within {target.timeout} s"
            )
        pin.check(transport.get_remote_server_key(), target)
        _log_in(transport, key, target)
        sftp = paramiko.SFTPClient.from_transport(transport)
        channel = sftp.get_channel() if sftp is not None else None
        if sftp is None or channel is None:
            raise paramiko.SSHException(f"{target.origin} opened no SFTP session")
        channel.settimeout(target.timeout)
    except BaseException:
        transport.close()
        raise
    return transport, sftp


def _log_in(
    transport: paramiko.Transport, key: paramiko.PKey, target: SftpTarget
) -> None:
    """Authenticate with the key pair, and nothing else."""
    try:
        remaining = transport.auth_publickey(target.user, key)
    except paramiko.BadAuthenticationType as exc:
        offered = ", ".join(exc.allowed_types) or "nothing"
        raise UploadError(
            f"{target.origin} does not accept key-pair login for {target.user} (it "
            f"offers: {offered}); the connector logs in only with the key pair in "
            "destination.key_file, never with a password; ask the service to "
            "enable public-key login for this account",
            exit_code=ExitCode.SECRETS_OR_AUTH,
        ) from exc
    except paramiko.AuthenticationException as exc:
        # paramiko reports a dropped connection or a slow server as a failed
        # login too; only a live session that said no is a refusal.
        if not transport.is_active() or "timeout" in str(exc).lower():
            raise
        raise UploadError(
            f"{target.origin} refused the key in destination.key_file "
            f"{target.key_file} ({key.get_name()} {key.fingerprint}) for "
            f"{target.user}; check that its public key is in the account's "
            "authorized_keys",
            exit_code=ExitCode.SECRETS_OR_AUTH,
        ) from exc

    if remaining:
        raise UploadError(
            f"{target.origin} accepted the key in destination.key_file for "
            f"{target.user} but asks for more ({', '.join(remaining)}); the "
            "connector logs in only with a key pair; ask the service for "
            "key-only login",
            exit_code=ExitCode.SECRETS_OR_AUTH,
        )


@dataclass(frozen=True)
class _HostKeyPin:
    """The host keys ``known_hosts`` lists for the server, or one fingerprint."""

    keys: tuple[paramiko.PKey, ...]
    fingerprint: str | None
    setting: str

    @classmethod
    def load(cls, target: SftpTarget) -> _HostKeyPin:
        if target.known_hosts is None:
            assert target.host_key_fingerprint is not None
            setting = "destination.host_key_fingerprint"
            return cls((), target.host_key_fingerprint, setting)

        path = target.known_hosts
        try:
            known = paramiko.HostKeys(str(path))
        except (OSError, UnicodeDecodeError, InvalidHostKey) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "malformed line"
            raise ConfigError(
                f"destination.known_hosts {path} cannot be read ({reason}); "
                "check the path, or write the line with `ssh-keyscan`"
            ) from exc
        # OpenSSH writes non-standard ports as [host]:port.
        name = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
        entries = known.lookup(name)
        if not entries:
            raise ConfigError(
                f"destination.known_hosts {path} has no key for {name}; add the "
                f"line from `ssh-keyscan -p {target.port} {target.host}` after "
                "checking its fingerprint with the service"
            )
        return cls(tuple(entries.values()), None, f"destination.known_hosts {path}")

    def prefer_pinned_types(self, transport: paramiko.Transport) -> None:
        """Ask the server for a key of a pinned type, if it has several."""
        wanted: list[str] = []
        for key in self.keys:
            name = key.get_name()
            # An RSA key signs with SHA-2 on the wire; "ssh-rsa" names SHA-1.
            types = ["rsa-sha2-512", "rsa-sha2-256"] if name == "ssh-rsa" else [name]
            wanted.extend(t for t in types if t not in wanted)
        options = transport.get_security_options()
        usable = [t for t in wanted if t in options.key_types]
        if usable:
            options.key_types = usable

    def check(self, offered: paramiko.PKey, target: SftpTarget) -> None:
        if self.fingerprint is not None:
            if offered.fingerprint == self.fingerprint:
                return
            expected = self.fingerprint
        else:
            if any(key.asbytes() == offered.asbytes() for key in self.keys):
                return
            expected = ", ".join(f"{k.get_name()} {k.fingerprint}" for k in self.keys)
        raise UploadError(
            f"the host key of {target.host}:{target.port} is not the pinned one: "
            f"the server offered {offered.get_name()} {offered.fingerprint}, "
            f"{self.setting} expects {expected}; nothing was sent. If the service "
            "changed its key, confirm the new fingerprint with them before "
            f"updating {self.setting.split()[0]}",
            exit_code=ExitCode.FAILURE,
        )


def _load_key(target: SftpTarget) -> paramiko.PKey:
    """Read the private key in ``key_file``, unlocking it with the passphrase."""
    path = target.key_file
    hint = "; check destination.key_file and destination.passphrase_secret"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UploadError(
            f"destination.key_file {path} cannot be read ({exc.strerror})" + hint,
            exit_code=ExitCode.SECRETS_OR_AUTH,
        ) from exc

    passphrase = target.passphrase.encode() if target.passphrase else None
    loaded: PrivateKeyTypes
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            loaded = serialization.load_ssh_private_key(data, passphrase)
        else:
            loaded = serialization.load_pem_private_key(data, passphrase)
    except TypeError as exc:
        # cryptography's words for a missing or needless passphrase.
        reason = "it is protected" if passphrase is None else "it is not protected"
        raise UploadError(
            f"destination.key_file {path} cannot be unlocked: {reason}, but a "
            f"passphrase was {'not ' if passphrase is None else ''}given" + hint,
            exit_code=ExitCode.SECRETS_OR_AUTH,
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UploadError(
            f"destination.key_file {path} is not a private key that this "
            "passphrase unlocks (a wrong passphrase, a public key, or a damaged "
            "file)" + hint,
            exit_code=ExitCode.SECRETS_OR_AUTH,
        ) from exc

    key_class: type[paramiko.PKey]
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    elif isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    else:
        raise UploadError(
            f"destination.key_file {path} holds a {type(loaded).__name__} key; "
            "use an ed25519, ECDSA or RSA key",
            exit_code=ExitCode.SECRETS_OR_AUTH,
        )
    # Hand paramiko the unlocked key in memory: it runs the slow passphrase
    # derivation only once, and all three key types load the same way.
    unlocked = loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return key_class.from_private_key(io.StringIO(unlocked.decode("ascii")))


def _resume_offset(
    sftp: paramiko.SFTPClient, part: str, payload: Payload, target: SftpTarget
) -> int:
    """Bytes of ``part`` that can be kept: 0 unless its end matches the payload."""
    try:
        size = sftp.stat(part).st_size or 0
    except FileNotFoundError:
        return 0
    if size == 0 or size > payload.size:
        return 0

    # Compare the last chunk: cheap, and catches a part from another payload of
    # the same name (each encryption gives different bytes).
    length = min(size, CHUNK_SIZE)
    theirs = hashlib.sha256()
    try:
        for chunk in _remote_chunks(sftp, part, size - length, size):
            theirs.update(chunk)
    except PermissionError:
        return 0
    with payload.path.open("rb") as local:
        local.seek(size - length)
        ours = hashlib.sha256(local.read(length))
    if theirs.digest() != ours.digest():
        logger.warning(
            "upload %s: the part on %s is from other bytes; starting over",
            payload.path.name,
            target.origin,
        )
        return 0
    return size


def _send(
    sftp: paramiko.SFTPClient,
    payload: Payload,
    remote_path: str,
    offset: int,
    progress: _Progress,
) -> None:
    """Write the payload from ``offset`` on, appending to what is there."""
    progress.offset = offset
    with payload.path.open("rb") as local:
        remote = sftp.open(remote_path, "a" if offset else "w", bufsize=0)
        try:
            if remote.tell() != offset:
                raise paramiko.SFTPError(
                    f"{remote_path} changed size on the server during the upload"
                )
            # Pipelining sends writes without waiting for each answer; close()
            # waits for them all and raises the first error.
            remote.set_pipelined(True)
            local.seek(offset)
            while chunk := local.read(CHUNK_SIZE):
                remote.write(chunk)
                progress.sent += len(chunk)
            remote.close()
        except BaseException:
            _abandon(remote)
            raise


def _abandon(remote: paramiko.SFTPFile) -> None:
    """Close a remote file after a failure without waiting for lost answers.

    A pipelined file would wait on close for answers a broken connection never
    brings, and try again, raising, when garbage collected.
    """
    remote.set_pipelined(False)
    try:
        remote.close()
    except _TRANSIENT:
        pass


def _check_length(
    sftp: paramiko.SFTPClient, remote_path: str, payload: Payload, target: SftpTarget
) -> None:
    size = sftp.stat(remote_path).st_size
    if size == payload.size:
        return
    _remove_quietly(sftp, remote_path)
    raise VerificationError(
        f"{target.origin} holds {size} bytes in {remote_path} after "
        f"{payload.size} bytes of {payload.path.name} were sent; it was removed; "
        f"the payload is kept in {payload.path}; run `connector send` to try again"
    )


def _read_back(
    sftp: paramiko.SFTPClient, remote_path: str, payload: Payload, target: SftpTarget
) -> str:
    """Stream the stored file back and compare its SHA-256 with the payload's."""
    digest = hashlib.sha256()
    size = 0
    # One byte past the end shows a file longer than the payload.
    for chunk in _remote_chunks(sftp, remote_path, 0, payload.size + 1):
        digest.update(chunk)
        size += len(chunk)

    sha256 = digest.hexdigest()
    if size == payload.size and sha256 == payload.sha256:
        return "read-back"
    _remove_quietly(sftp, remote_path)
    raise VerificationError(
        f"{target.origin} holds {size} bytes with sha256 {sha256} in {remote_path}, "
        f"but {payload.size} bytes with sha256 {payload.sha256} were sent; it was "
        f"removed; the payload is kept in {payload.path}; report this to the "
        "service before sending again"
    )


def _rename(
    sftp: paramiko.SFTPClient, part: str, final: str, target: SftpTarget
) -> None:
    """Give the part its final name, replacing an older file of that name."""
    try:
        sftp.posix_rename(part, final)
        return
    except PermissionError:
        raise
    except OSError as exc:
        # Servers without the posix-rename extension refuse to rename onto an
        # existing file: remove it first.
        logger.debug("posix-rename refused by %s: %s", target.origin, one_line(exc))
    try:
        sftp.remove(final)
    except FileNotFoundError:
        pass
    sftp.rename(part, final)


def _remove_quietly(sftp: paramiko.SFTPClient, remote_path: str) -> None:
    try:
        sftp.remove(remote_path)
    except OSError as exc:
        logger.warning("cannot remove %s: %s", remote_path, one_line(exc))


def _remote_chunks(
    sftp: paramiko.SFTPClient, remote_path: str, start: int, end: int
) -> Iterator[bytes]:
    """Read bytes ``start`` to ``end`` of a remote file, or up to its end."""
    position = start
    while position < end:
        stop = min(position + _READ_WINDOW, end)
        # Read-ahead keeps many requests in flight, which a long link needs.
        # paramiko's can lose track of its requests when limited, then buffer
        # every later answer (a race around max_concurrent_requests): asking
        # for one window per handle and closing it bounds what it holds.
        with sftp.open(remote_path, "r") as remote:
            remote.seek(position)
            remote.prefetch(stop)
            while position < stop:
                chunk = remote.read(min(CHUNK_SIZE, stop - position))
                if not chunk:
                    return
                position += len(chunk)
                yield chunk


def _check_payload(payload: Payload) -> None:
    try:
        size = payload.path.stat().st_size
    except OSError as exc:
        raise UploadError(
            f"payload {payload.path} cannot be read ({exc.strerror}); "
            "package the export again",
            exit_code=ExitCode.FAILURE,
        ) from exc
    if size != payload.size:
        raise UploadError(
            f"payload {payload.path} has {size} bytes, not the {payload.size} "
            "recorded when it was packaged; package the export again",
            exit_code=ExitCode.FAILURE,
        )
