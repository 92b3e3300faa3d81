"""Look up a secret (a database password, an upload token) by name.

The places, in order:

1. the config's ``[secrets] folder``: a file named after the secret;
2. ``$CREDENTIALS_DIRECTORY/<name>`` (systemd's ``LoadCredential=``);
3. the file named by ``CONNECTOR_SECRET_<NAME>_FILE``;
4. the environment variable ``CONNECTOR_SECRET_<NAME>``;
5. the OS keyring (service ``connector``), only when its backend is a real store.

``<NAME>`` is the secret's name upper-cased, with every other character than a letter
or digit turned into ``_`` (``sis-db`` -> ``CONNECTOR_SECRET_SIS_DB``). A secret file
must not be readable by other users. Values are never logged or shown.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from .errors import SecretError

log = logging.getLogger(__name__)

KEYRING_SERVICE = "connector"
_INSECURE_BACKENDS = ("fail", "null", "chainer", "plaintext", "alt")


def env_name(name: str) -> str:
    return "CONNECTOR_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def get_secret(name: str, *, folder: Path | None = None) -> str:
    """The value of the secret ``name``; ``SecretError`` listing every place looked."""
    looked: list[str] = []

    candidates: list[tuple[str, Path]] = []
    if folder is not None:
        candidates.append(("secrets folder", folder / name))
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        candidates.append(("systemd credentials", Path(credentials) / name))
    file_var = env_name(name) + "_FILE"
    if os.environ.get(file_var):
        candidates.append((file_var, Path(os.environ[file_var])))

    for label, path in candidates:
        looked.append(f"{label} {path}")
        if path.is_file():
            return _read_secret_file(name, path)

    var = env_name(name)
    looked.append(f"environment {var}")
    if var in os.environ:
        return os.environ[var]

    value = _from_keyring(name, looked)
    if value is not None:
        return value

    raise SecretError(
        f"secret {name!r} not found; looked in: {'; '.join(looked)}. Put it in a "
        f"file only you can read and set {file_var}, or store it with the OS keyring"
    )


def _read_secret_file(name: str, path: Path) -> str:
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"secret file {path} for {name!r} can be read by other users; "
            f"run: chmod 600 {path}"
        )
    try:
        value = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"secret file {path} cannot be read: {exc}") from None
    # A trailing newline is an editor's habit, never part of a password.
    return value.rstrip("\r\n")


def _from_keyring(name: str, looked: list[str]) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        looked.append("OS keyring (keyring not installed)")
        return None

    backend = keyring.get_keyring()
    module = type(backend).__module__.lower()
    if any(part in module for part in _INSECURE_BACKENDS):
        looked.append(f"OS keyring (skipped: backend {type(backend).__name__})")
        return None
    looked.append(f"OS keyring service {KEYRING_SERVICE!r} ({type(backend).__name__})")
    try:
        return keyring.get_password(KEYRING_SERVICE, name)
    except KeyringError as exc:
        log.debug("keyring lookup failed: %s", type(exc).__name__)
        return None
