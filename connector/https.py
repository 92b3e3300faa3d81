"""What the HTTPS destinations share: TLS, URLs, ``Retry-After`` and payload checks."""

from __future__ import annotations

import email.utils
import ssl
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .errors import ConfigError, ExitCode, UploadError
from .package import Payload
from .transfer import one_line


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify against ``ca_file`` if given, else the operating system's trust store."""
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"destination.ca_file {ca_file} is not a readable PEM "
            f"certificate file ({one_line(exc)})"
        ) from exc


def is_certificate_failure(exc: BaseException) -> bool:
    """Whether a connection failed because the server's certificate did not verify."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def redact(url: str) -> str:
    """Drop credentials, query and fragment from a URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_upload_url(url: str) -> None:
    """An upload URL is https, names a host and carries no credentials."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(
            f"destination.url must be an https:// URL, got {redact(url)!r}; "
            "uploads are never sent unencrypted"
        )
    if parts.username or parts.password:
        raise ConfigError(
            "destination.url must not carry credentials; "
            "put the token in destination.token_secret"
        )


def retry_after(response: httpx.Response) -> float | None:
    """Read ``Retry-After`` as seconds, from a number or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def unreadable(payload: Payload, exc: OSError) -> UploadError:
    return UploadError(
        f"payload {payload.path} cannot be read ({exc.strerror or exc}); "
        "package the export again",
        exit_code=ExitCode.FAILURE,
    )


def check_payload(payload: Payload) -> None:
    """The spooled payload is still there and still its recorded size."""
    try:
        size = payload.path.stat().st_size
    except OSError as exc:
        raise unreadable(payload, exc) from exc
    if size != payload.size:
        raise UploadError(
            f"payload {payload.path} has {size} bytes, not the {payload.size} "
            "recorded when it was packaged; package the export again",
            exit_code=ExitCode.FAILURE,
        )
