"""Turn an export into a payload: gzip it, then encrypt it to the receiver's key.

The payload is what leaves the district: ``<export name>.gz.pgp`` in the spool folder,
a binary OpenPGP message holding the gzip of the CSV (or ``.gz.age``, an age file, with
``destination.encryption = "age"``). The gzip header is fixed (no time, no file name),
so the same export always compresses to the same bytes; the encryption is randomised,
so each packaging gives other bytes. A payload therefore stays in the spool, with a
``.json`` record of what it holds, until it is verified: packaging the same export
for the same recipient again reuses it, so a retry or the next night resumes the same
bytes.

Which OpenPGP packet format Sequoia writes depends on the recipient's certificate, not
on us: a certificate that announces RFC 9580 support (feature bit "SEIPDv2", set on
every key Sequoia 2 generates, v4 ones included) gets a SEIPDv2 message, AES-256 in OCB
mode, which GnuPG 2.2 and 2.4 cannot read. A certificate made by GnuPG gets the classic
SEIPDv1 message with MDC, also AES-256. The format is logged for each payload.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pyrage
import pysequoia
from isal import igzip
from pysequoia.packet import PacketPile, Tag

from .errors import ExitCode, PackageError

__all__ = [
    "Payload",
    "Recipient",
    "load_recipient",
    "make_keypair",
    "package_export",
]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
PAYLOAD_SUFFIX = ".gz.pgp"
AGE_SUFFIX = ".gz.age"


@dataclass(frozen=True)
class Payload:
    """An encrypted export in the spool folder, with the hashes that identify it."""

    path: Path
    size: int
    sha256: str
    csv_name: str
    csv_size: int
    csv_sha256: str
    fingerprint: str
    format: str = "openpgp"

    @property
    def record(self) -> Path:
        """The spool's note of what this payload holds, beside it."""
        return self.path.with_name(self.path.name + ".json")

    def save(self) -> None:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".payload.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.record)

    def discard(self) -> None:
        """Remove the payload and its record (after a verified upload)."""
        self.path.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)


@dataclass(frozen=True)
class Recipient:
    """Who a payload is encrypted to: an OpenPGP certificate or an age key."""

    format: str
    fingerprint: str
    where: str
    cert: pysequoia.Cert | None = None
    age: pyrage.x25519.Recipient | None = None

    @property
    def suffix(self) -> str:
        return AGE_SUFFIX if self.format == "age" else PAYLOAD_SUFFIX

    @classmethod
    def openpgp(cls, path: Path, fingerprint: str | None = None) -> Recipient:
        """The certificate in ``path``, which must have ``fingerprint`` if given."""
        cert = load_recipient(path)
        if fingerprint is not None:
            want = "".join(fingerprint.split()).upper()
            if cert.fingerprint.upper() != want:
                raise PackageError(
                    f"recipient certificate {path} has fingerprint "
                    f"{cert.fingerprint.upper()}, not the {want} pinned in "
                    "destination.recipient_fingerprint; ask the receiver which "
                    "key is current before changing either",
                    exit_code=ExitCode.USAGE,
                )
        return cls("openpgp", cert.fingerprint, str(path), cert=cert)

    @classmethod
    def age_key(cls, public_key: str) -> Recipient:
        """An age X25519 public key (``age1...``)."""
        try:
            key = pyrage.x25519.Recipient.from_str(public_key.strip())
        except Exception:
            raise PackageError(
                "destination.age_recipient is not an age public key (it starts "
                "with age1); ask the receiver for theirs",
                exit_code=ExitCode.USAGE,
            ) from None
        return cls("age", public_key.strip(), "destination.age_recipient", age=key)


def load_recipient(path: Path) -> pysequoia.Cert:
    """Read the receiver's public OpenPGP certificate (armored or binary).

    Raises ``PackageError`` when the file is missing, is not a certificate, or holds
    a secret key (the receiver's secret key must never sit on the district's server).
    """
    if not path.is_file():
        raise PackageError(
            f"recipient certificate {path} does not exist; "
            "set destination.recipient_cert to the receiver's public key file",
            exit_code=ExitCode.USAGE,
        )

    try:
        cert = pysequoia.Cert.from_file(str(path))
    except Exception as exc:
        raise PackageError(
            f"recipient certificate {path} is not an OpenPGP public key "
            f"({_first_line(exc)}); "
            "ask the receiver for their public key in .asc or binary form",
            exit_code=ExitCode.USAGE,
        ) from None

    if _has_secret_material(path):
        raise PackageError(
            f"recipient certificate {path} contains a secret key; "
            "keep only the public certificate on this machine",
            exit_code=ExitCode.USAGE,
        )
    # Found now, before any extract: an expired, revoked or sign-only key.
    # Sequoia's encrypt looks at the subkeys only, so the certificate's own
    # expiry is checked here.
    expired = cert.expiration is not None and cert.expiration <= datetime.now(UTC)
    try:
        if expired:
            raise ValueError(f"expired on {cert.expiration:%Y-%m-%d}")
        pysequoia.encrypt(b"", recipients=[cert], armor=False)
    except Exception as exc:
        raise PackageError(
            f"recipient certificate {path} cannot be encrypted to "
            f"({_first_line(exc)}): it has no valid encryption key (expired, "
            "revoked or sign-only); ask the receiver for their current public key",
            exit_code=ExitCode.USAGE,
        ) from None
    return cert


def _first_line(exc: BaseException) -> str:
    """Sequoia's text can carry a whole Rust backtrace: keep its first line."""
    return (str(exc).strip().splitlines() or ["unreadable"])[0][:200]


def _has_secret_material(path: Path) -> bool:
    secret_tags = (Tag.SecretKey, Tag.SecretSubkey)
    return any(packet.tag in secret_tags for packet in PacketPile.from_file(str(path)))


def package_export(
    csv_path: Path,
    spool_dir: Path,
    recipient: Path | Recipient,
    *,
    compresslevel: int = 2,
) -> Payload:
    """Compress and encrypt one export into ``spool_dir/<name>.gz.pgp`` (or
    ``.gz.age``).

    Both steps stream in chunks. Work happens under temporary names in
    ``spool_dir``; the payload appears under its final name only when complete,
    replacing an older payload of the same export. A payload already in the spool
    for the same export bytes and the same recipient is reused as it is. On
    failure nothing is left behind and ``PackageError`` names the file and what to
    check.
    """
    if isinstance(recipient, Path):
        recipient = Recipient.openpgp(recipient)
    if not csv_path.is_file():
        raise PackageError(
            f"export {csv_path} does not exist; run the extract before packaging"
        )

    target = spool_dir / (csv_path.name + recipient.suffix)
    kept = _spooled(target, csv_path, recipient)
    if kept is not None:
        logger.info(
            "export %s: reusing the payload %s already in the spool (%d bytes, "
            "sha256 %s)",
            csv_path.name,
            target.name,
            kept.size,
            kept.sha256,
        )
        return kept
    try:
        spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise PackageError(
            f"cannot create spool folder {spool_dir}: {exc.strerror}; "
            "check state.folder and its permissions"
        ) from exc

    with _temp_path(spool_dir, csv_path.name + ".gz") as gz_tmp:
        csv_size, csv_sha256 = _gzip_file(csv_path, gz_tmp, compresslevel)
        with _temp_path(spool_dir, target.name) as out_tmp:
            if recipient.age is not None:
                _encrypt_age(gz_tmp, out_tmp, recipient.age)
                message_format = "age X25519"
            else:
                assert recipient.cert is not None
                _encrypt_file(gz_tmp, out_tmp, recipient.cert, Path(recipient.where))
                message_format = _describe_message(out_tmp)
            size, sha256 = _hash_file(out_tmp)
            os.replace(out_tmp, target)

    logger.info(
        "export %s packaged as %s: %d -> %d bytes, sha256 %s, for %s (%s)",
        csv_path.name,
        target.name,
        csv_size,
        size,
        sha256,
        recipient.fingerprint,
        message_format,
    )
    payload = Payload(
        path=target,
        size=size,
        sha256=sha256,
        csv_name=csv_path.name,
        csv_size=csv_size,
        csv_sha256=csv_sha256,
        fingerprint=recipient.fingerprint,
        format=recipient.format,
    )
    payload.save()
    return payload


def _spooled(target: Path, csv_path: Path, recipient: Recipient) -> Payload | None:
    """The payload in the spool for these export bytes and this recipient, if any."""
    record = target.with_name(target.name + ".json")
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        kept = Payload(**{**data, "path": Path(data["path"])})
        size = target.stat().st_size
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if (
        kept.path != target
        or size != kept.size
        or kept.fingerprint != recipient.fingerprint
        or kept.format != recipient.format
    ):
        return None
    csv_size, csv_sha256 = _hash_file(csv_path)
    if (csv_size, csv_sha256) != (kept.csv_size, kept.csv_sha256):
        return None
    return kept


@contextlib.contextmanager
def _temp_path(folder: Path, name: str) -> Iterator[Path]:
    """Yield a fresh temporary file name in ``folder``; remove it afterwards if left."""
    fd, raw = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    path = Path(raw)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _gzip_file(source: Path, target: Path, compresslevel: int) -> tuple[int, str]:
    """Gzip ``source`` into ``target``; return the size and SHA-256 of the source."""
    digest = hashlib.sha256()
    size = 0
    try:
        with source.open("rb") as src, target.open("wb") as raw:
            # filename="" and mtime=0 keep the header free of run-specific values;
            # without filename= GzipFile would copy the temp file's name into it.
            # ISA-L's gzip: level 2 compresses as well as zlib's level 1 and about
            # 20 times faster than zlib's default (README: Performance).
            with igzip.GzipFile(  # type: ignore[no-untyped-call]
                filename="",
                mode="wb",
                fileobj=raw,
                mtime=0,
                compresslevel=compresslevel,
            ) as gz:
                for chunk in _chunks(src):
                    digest.update(chunk)
                    size += len(chunk)
                    gz.write(chunk)  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise PackageError(
            f"cannot compress {source} into {target.parent}: {exc.strerror or exc}; "
            "check the disk space and permissions of the spool folder"
        ) from exc
    return size, digest.hexdigest()


def _encrypt_file(
    source: Path, target: Path, cert: pysequoia.Cert, where: Path
) -> None:
    try:
        pysequoia.encrypt_file(source, target, recipients=[cert], armor=False)
    except Exception as exc:
        raise PackageError(
            f"cannot encrypt to the certificate in {where} ({_first_line(exc)}); "
            "check that it "
            "has a valid encryption subkey (not expired or revoked)"
        ) from exc


def _encrypt_age(source: Path, target: Path, key: pyrage.x25519.Recipient) -> None:
    try:
        with source.open("rb") as src, target.open("wb") as out:
            pyrage.encrypt_io(src, out, [key])
    except Exception as exc:
        raise PackageError(
            f"cannot encrypt with age into {target.parent}: {exc}; check the "
            "spool folder's disk space"
        ) from exc


def _hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for chunk in _chunks(f):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_SIZE):
        yield chunk


# Packet headers only (RFC 4880 section 4.2), enough to log which encrypted-data
# format a payload uses: GnuPG 2.2 and 2.4 cannot read SEIPDv2 (RFC 9580 5.13).

_TAG_PKESK = 1
_TAG_SEIPD = 18
_SYMMETRIC = {7: "AES-128", 8: "AES-192", 9: "AES-256"}


def _read_header(f: BinaryIO) -> tuple[int, int] | None:
    """Read one packet header; return (tag, body length) or None at the end."""
    first = f.read(1)
    if not first:
        return None
    ctb = first[0]
    if ctb & 0xC0 == 0xC0:  # new format
        tag = ctb & 0x3F
        b0 = f.read(1)[0]
        if b0 < 192:
            return tag, b0
        if b0 < 224:
            return tag, ((b0 - 192) << 8) + f.read(1)[0] + 192
        if b0 == 255:
            return tag, int(struct.unpack(">I", f.read(4))[0])
        return tag, -1  # partial body length: only the data packet uses it
    if ctb & 0x80:  # old format
        tag = (ctb >> 2) & 0x0F
        width = {0: 1, 1: 2, 2: 4}.get(ctb & 0x03)
        if width is None:
            return tag, -1
        return tag, int.from_bytes(f.read(width), "big")
    raise ValueError("not an OpenPGP packet")


def _describe_message(path: Path) -> str:
    """Name the encryption container of an OpenPGP message without decrypting it."""
    try:
        with path.open("rb") as f:
            while (header := _read_header(f)) is not None:
                tag, length = header
                if tag == _TAG_SEIPD:
                    version = f.read(1)[0]
                    if version == 1:
                        return "SEIPDv1 with MDC, readable by GnuPG"
                    algo = _SYMMETRIC.get(f.read(1)[0], "unknown cipher")
                    return f"SEIPDv2 {algo} AEAD, not readable by GnuPG 2.2/2.4"
                if tag != _TAG_PKESK or length < 0:
                    break
                f.seek(length, os.SEEK_CUR)
    except (OSError, ValueError, IndexError):
        pass
    return "unrecognised OpenPGP layout"


def make_keypair(
    folder: Path, user_id: str = "Connector demo <demo@example.invalid>"
) -> tuple[Path, Path]:
    """Make a throwaway key pair for the demo; return (public, secret) file paths.

    The public certificate goes armored to ``recipient.asc``, the unprotected secret
    key to ``recipient-secret.asc`` (mode 0600). GnuPG makes the key when ``gpg`` is
    installed, as a receiver would, so payloads use the format GnuPG 2.2 reads;
    otherwise pysequoia makes it, and its keys ask for the newer AEAD format that
    only current OpenPGP tools read. Never use either for real data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    public_path = folder / "recipient.asc"
    secret_path = folder / "recipient-secret.asc"
    if shutil.which("gpg"):
        public, secret = _gnupg_keypair(user_id)
    else:
        tsk = pysequoia.Tsk.generate(user_id, profile=pysequoia.Profile.RFC4880)
        public, secret = str(tsk.extract_certificate()), str(tsk)
    public_path.write_text(public, encoding="ascii")
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret)
    logger.debug("demo key pair written to %s", folder)
    return public_path, secret_path


def _gnupg_keypair(user_id: str) -> tuple[str, str]:
    """A new unprotected key pair from GnuPG in a throwaway home folder."""
    with tempfile.TemporaryDirectory(prefix="connector-gnupg-") as home:
        env = {**os.environ, "GNUPGHOME": home}

        def gpg(*args: str) -> str:
            result = subprocess.run(
                ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", *args],
                env=env,
                capture_output=True,
                check=False,
            )
            if result.returncode != 0:
                raise PackageError(
                    "gpg could not make the demo key pair: "
                    + result.stderr.decode("utf-8", "replace").strip()
                )
            return result.stdout.decode("ascii")

        gpg(
            "--passphrase",
            "",
            "--quick-gen-key",
            user_id,
            "default",
            "default",
            "never",
        )
        public = gpg("--armor", "--export", user_id)
        secret = gpg("--passphrase", "", "--armor", "--export-secret-keys", user_id)
        # gpg-agent was started for this home folder; stop it before it is removed.
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
    return public, secret
