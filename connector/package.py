"""Turn an export into a payload: gzip it, then encrypt it to the receiver's key.

The payload is what leaves the district: ``<export name>.gz.pgp`` in the spool folder,
a binary OpenPGP message holding the gzip of the CSV. The gzip header is fixed (no
time, no file name), so the same export always compresses to the same bytes; the
encryption is randomised, so the payload differs on every run.

Which OpenPGP packet format Sequoia writes depends on the recipient's certificate, not
on us: a certificate that announces RFC 9580 support (feature bit "SEIPDv2", set on
every key Sequoia 2 generates, v4 ones included) gets a SEIPDv2 message, AES-256 in OCB
mode, which GnuPG 2.2 and 2.4 cannot read. A certificate made by GnuPG gets the classic
SEIPDv1 message with MDC, also AES-256. The format is logged for each payload.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pysequoia
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pysequoia.packet import PacketPile, Tag

from .errors import PackageError

__all__ = ["Payload", "load_recipient", "make_keypair", "package_export"]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
PAYLOAD_SUFFIX = ".gz.pgp"


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


def load_recipient(path: Path) -> pysequoia.Cert:
    """Read the receiver's public OpenPGP certificate (armored or binary).

    Raises ``PackageError`` when the file is missing, is not a certificate, or holds
    a secret key (the receiver's secret key must never sit on the district's server).
    """
    if not path.is_file():
        raise PackageError(
            f"recipient certificate {path} does not exist; "
            "set destination.recipient_cert to the receiver's public key file"
        )

    try:
        cert = pysequoia.Cert.from_file(str(path))
    except Exception as exc:
        raise PackageError(
            f"recipient certificate {path} is not an OpenPGP public key ({exc}); "
            "ask the receiver for their public key in .asc or binary form"
        ) from exc

    if _has_secret_material(path):
        raise PackageError(
            f"recipient certificate {path} contains a secret key; "
            "keep only the public certificate on this machine"
        )
    return cert


def _has_secret_material(path: Path) -> bool:
    secret_tags = (Tag.SecretKey, Tag.SecretSubkey)
    return any(packet.tag in secret_tags for packet in PacketPile.from_file(str(path)))


def package_export(
    csv_path: Path,
    spool_dir: Path,
    recipient_cert: Path,
    *,
    compresslevel: int = 6,
) -> Payload:
    """Compress and encrypt one export into ``spool_dir/<name>.gz.pgp``.

    Both steps stream in chunks. Work happens under temporary names in
    ``spool_dir``; the payload appears under its final name only when complete,
    replacing an older payload of the same export. On failure nothing is left
    behind and ``PackageError`` names the file and what to check.
    """
    cert = load_recipient(recipient_cert)
    if not csv_path.is_file():
        raise PackageError(
            f"export {csv_path} does not exist; run the extract before packaging"
        )

    target = spool_dir / (csv_path.name + PAYLOAD_SUFFIX)
    try:
        spool_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackageError(
            f"cannot create spool folder {spool_dir}: {exc.strerror}; "
            "check state.folder and its permissions"
        ) from exc

    with _temp_path(spool_dir, csv_path.name + ".gz") as gz_tmp:
        csv_size, csv_sha256 = _gzip_file(csv_path, gz_tmp, compresslevel)
        with _temp_path(spool_dir, target.name) as pgp_tmp:
            _encrypt_file(gz_tmp, pgp_tmp, cert, recipient_cert)
            size, sha256 = _hash_file(pgp_tmp)
            message_format = _describe_message(pgp_tmp)
            os.replace(pgp_tmp, target)

    logger.info(
        "export %s packaged as %s: %d -> %d bytes, sha256 %s, for %s (%s)",
        csv_path.name,
        target.name,
        csv_size,
        size,
        sha256,
        cert.fingerprint,
        message_format,
    )
    return Payload(
        path=target,
        size=size,
        sha256=sha256,
        csv_name=csv_path.name,
        csv_size=csv_size,
        csv_sha256=csv_sha256,
        fingerprint=cert.fingerprint,
    )


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
            with gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=raw,
                mtime=0,
                compresslevel=compresslevel,
            ) as gz:
                for chunk in _chunks(src):
                    digest.update(chunk)
                    size += len(chunk)
                    gz.write(chunk)
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
            f"cannot encrypt to the certificate in {where} ({exc}); check that it "
            "has a valid encryption subkey (not expired or revoked)"
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


# --- A little OpenPGP packet reading, enough to name the message format and to make
# --- demo keys that GnuPG 2.2 can use (RFC 4880 section 4.2, RFC 9580 section 5.13).

_TAG_PKESK = 1
_TAG_SIGNATURE = 2
_TAG_SECRET_KEY = 5
_TAG_USER_ID = 13
_TAG_SEIPD = 18
_SIG_POSITIVE_CERT = 0x13
_SIG_DIRECT_KEY = 0x1F
_SUBPACKET_FEATURES = 30
_FEATURE_SEIPDV1 = 0x01
_ALGO_EDDSA_LEGACY = 22
_HASHES = {8: "sha256", 10: "sha512"}
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


def _packets(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split binary OpenPGP data into (tag, raw packet, body)."""
    stream = io.BytesIO(data)
    packets: list[tuple[int, bytes, bytes]] = []
    while True:
        start = stream.tell()
        header = _read_header(stream)
        if header is None:
            return packets
        tag, length = header
        if length < 0:
            raise ValueError("partial lengths are not expected in a key")
        body = stream.read(length)
        packets.append((tag, data[start : stream.tell()], body))


def _new_packet(tag: int, body: bytes) -> bytes:
    return bytes([0xC0 | tag, 0xFF]) + struct.pack(">I", len(body)) + body


def _mpi(value: bytes) -> bytes:
    stripped = value.lstrip(b"\0")
    return struct.pack(">H", int.from_bytes(stripped, "big").bit_length()) + stripped


def _split_secret_key(body: bytes) -> tuple[bytes, Ed25519PrivateKey]:
    """Split an unprotected v4 EdDSA secret key packet into public body and key."""
    if body[0] != 4 or body[5] != _ALGO_EDDSA_LEGACY:
        raise ValueError("expected a v4 Ed25519 primary key")
    oid_end = 7 + body[6]
    point_bits = struct.unpack(">H", body[oid_end : oid_end + 2])[0]
    public_end = oid_end + 2 + (point_bits + 7) // 8
    if body[public_end] != 0:
        raise ValueError("the generated secret key is unexpectedly protected")
    secret_bits = struct.unpack(">H", body[public_end + 1 : public_end + 3])[0]
    secret = body[public_end + 3 : public_end + 3 + (secret_bits + 7) // 8]
    key = Ed25519PrivateKey.from_private_bytes(secret.rjust(32, b"\0"))
    return body[:public_end], key


def _resign_without_seipdv2(
    sig_body: bytes, signed_prefix: bytes, key: Ed25519PrivateKey
) -> bytes:
    """Re-make a v4 self-signature with the features subpacket set to SEIPDv1 only."""
    sig_type, hash_algo = sig_body[1], sig_body[3]
    hashed_len = struct.unpack(">H", sig_body[4:6])[0]
    hashed = bytearray(sig_body[6 : 6 + hashed_len])
    rest = sig_body[6 + hashed_len :]
    unhashed = rest[: 2 + struct.unpack(">H", rest[:2])[0]]

    pos = 0
    while pos < len(hashed):
        first = hashed[pos]
        if first < 192:
            size, pos = first, pos + 1
        elif first < 255:
            size, pos = ((first - 192) << 8) + hashed[pos + 1] + 192, pos + 2
        else:
            size, pos = struct.unpack(">I", hashed[pos + 1 : pos + 5])[0], pos + 5
        if hashed[pos] & 0x7F == _SUBPACKET_FEATURES:
            hashed[pos + 1] = _FEATURE_SEIPDV1
        pos += size

    head = bytes([4, sig_type, _ALGO_EDDSA_LEGACY, hash_algo]) + struct.pack(
        ">H", hashed_len
    )
    signed_part = head + bytes(hashed)
    trailer = b"\x04\xff" + struct.pack(">I", len(signed_part))
    digest = hashlib.new(_HASHES[hash_algo], signed_prefix + signed_part + trailer)
    signature = key.sign(digest.digest())
    return (
        signed_part
        + unhashed
        + digest.digest()[:2]
        + _mpi(signature[:32])
        + _mpi(signature[32:])
    )


def _gnupg_compatible(tsk_bytes: bytes) -> bytes:
    """Clear the SEIPDv2 feature bit in a freshly generated key's self-signatures.

    Sequoia writes a SEIPDv2 message to any certificate that announces it, and
    GnuPG 2.2/2.4 cannot read those; a demo key standing in for a GnuPG receiver
    must announce SEIPDv1 only. Both Sequoia and GnuPG check the new signatures.
    """
    packets = _packets(tsk_bytes)
    if not packets or packets[0][0] != _TAG_SECRET_KEY:
        raise ValueError("expected a secret primary key first")
    public_body, key = _split_secret_key(packets[0][2])
    key_prefix = b"\x99" + struct.pack(">H", len(public_body)) + public_body

    out = []
    user_id: bytes | None = None
    in_primary_part = True
    for tag, raw, body in packets:
        if tag == _TAG_USER_ID:
            user_id = body
        elif tag not in (_TAG_SIGNATURE, _TAG_SECRET_KEY, _TAG_USER_ID):
            in_primary_part = False  # subkeys and their bindings stay as they are
        if tag == _TAG_SIGNATURE and in_primary_part:
            if body[1] == _SIG_DIRECT_KEY:
                raw = _new_packet(tag, _resign_without_seipdv2(body, key_prefix, key))
            elif body[1] == _SIG_POSITIVE_CERT and user_id is not None:
                prefix = key_prefix + b"\xb4" + struct.pack(">I", len(user_id))
                raw = _new_packet(
                    tag, _resign_without_seipdv2(body, prefix + user_id, key)
                )
        out.append(raw)
    return b"".join(out)


def make_keypair(
    folder: Path, user_id: str = "Connector demo <demo@example.invalid>"
) -> tuple[Path, Path]:
    """Make a throwaway v4 key pair for demos and tests; return (public, secret).

    The public certificate is written armored to ``recipient.asc``, the unprotected
    secret key to ``recipient-secret.asc`` (``gpg --import`` accepts it). The key
    announces SEIPDv1 only, so payloads encrypted to it decrypt with GnuPG 2.2.
    Never use it for real data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    generated = pysequoia.Tsk.generate(
        user_id, profile=pysequoia.Profile.RFC4880, cipher_suite=None
    )
    tsk = pysequoia.Tsk.from_bytes(_gnupg_compatible(bytes(generated)))

    public_path = folder / "recipient.asc"
    secret_path = folder / "recipient-secret.asc"
    public_path.write_text(str(tsk.extract_certificate()), encoding="ascii")
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(str(tsk))
    logger.debug(
        "demo key pair %s written to %s", tsk.extract_certificate().fingerprint, folder
    )
    return public_path, secret_path
