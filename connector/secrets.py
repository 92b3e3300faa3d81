"""Look up, store and delete a secret (a database password, an upload token) by name.

The places, in order:

1. the config's ``[secrets] folder``: a file named after the secret;
2. ``$CREDENTIALS_DIRECTORY/<name>`` (systemd's ``LoadCredential=``);
3. the file named by ``CONNECTOR_SECRET_<NAME>_FILE``;
4. the environment variable ``CONNECTOR_SECRET_<NAME>`` (with a warning: any
   process of the same user can read another's environment);
5. the OS keyring (service ``connector``), only when its backend is a real store
   (Windows Credential Manager, macOS Keychain, Secret Service), never a
   plaintext, null or failing one.

``<NAME>`` is the secret's name upper-cased, with every other character than a letter
or digit turned into ``_`` (``sis-db`` -> ``CONNECTOR_SECRET_SIS_DB``). A secret file
must not be readable by other users. Values are never logged or shown: each value
read is remembered by ``connector.redact``, which masks it in every message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, SecretError
from .redact import remember

if TYPE_CHECKING:
    from .config import Job

log = logging.getLogger(__name__)

KEYRING_SERVICE = "connector"
SECRETS_FOLDER = "secrets"  # what connector init writes as [secrets] folder
_INSECURE_BACKENDS = ("fail", "null", "chainer", "plaintext", "alt")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_warned: set[str] = set()


def env_name(name: str) -> str:
    return "CONNECTOR_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def check_name(name: str) -> str:
    """A secret's name is also a file name: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"secret name {name!r} is not allowed: use letters, digits, '.', '_' "
            "and '-' (starting with a letter or digit), such as sis-db"
        )
    return name


@dataclass
class Lookup:
    """Where a secret was found (``where``), or every place looked (``looked``)."""

    name: str
    where: str | None = None
    looked: list[str] = field(default_factory=list)


def find_secret(name: str, *, folder: Path | None = None) -> tuple[str | None, Lookup]:
    """The value of ``name`` (``None`` if missing) and where it was found or looked."""
    check_name(name)
    lookup = Lookup(name)
    candidates: list[tuple[str, Path]] = []
    if folder is not None:
        candidates.append(("secrets folder", folder / name))
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        candidates.append(("systemd credentials", Path(credentials) / name))
    file_var = env_name(name) + "_FILE"
    if os.environ.get(file_var):
        candidates.append((file_var, Path(os.environ[file_var])))

    value: str | None = None
    for label, path in candidates:
        lookup.looked.append(f"{label} {path}")
        if path.is_file():
            value, lookup.where = _read_secret_file(name, path), f"{label} {path}"
            break

    var = env_name(name)
    if value is None:
        lookup.looked.append(f"environment variable {var}")
        if var in os.environ:
            value, lookup.where = os.environ[var], f"environment variable {var}"
            _warn_environment(name, var)

    if value is None:
        value = _from_keyring(name, lookup)

    if value is not None:
        remember(value)
    return value, lookup


def get_secret(
    name: str, *, folder: Path | None = None, config: Path | None = None
) -> str:
    """The value of the secret ``name``; ``SecretError`` listing every place looked."""
    value, lookup = find_secret(name, folder=folder)
    if value is None:
        raise SecretError(missing_message([lookup], folder=folder, config=config))
    return value


def named_secrets(job: Job) -> list[tuple[str, str]]:
    """Every secret the config names: ``(setting, secret name)`` pairs."""
    names: list[tuple[str, str | None]] = []
    if job.has_database:
        names.append(("source.password_secret", job.source.password_secret))
    destination = job.settings.destination
    if destination is not None:
        names.append(("destination.token_secret", destination.token_secret))
        names.append(("destination.passphrase_secret", destination.passphrase_secret))
    notify = job.settings.notify
    if notify.email is not None:
        names.append(("notify.email.password_secret", notify.email.password_secret))
    if notify.webhook is not None:
        names.append(("notify.webhook.token_secret", notify.webhook.token_secret))
    return [(setting, name) for setting, name in names if name is not None]


def require_secrets(job: Job) -> None:
    """Check that every secret the config names can be found, before any connection.

    Raises one ``SecretError`` naming every missing secret and every place looked.
    """
    missing = []
    for setting, name in named_secrets(job):
        value, lookup = find_secret(name, folder=job.secrets_folder)
        if value is None:
            missing.append(lookup)
        else:
            check_value(setting, name, value)
    if missing:
        raise SecretError(
            missing_message(missing, folder=job.secrets_folder, config=job.path)
        )


# RFC 6750's b64token: what a bearer token may hold in an Authorization header.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
TOKEN_SETTINGS = ("destination.token_secret", "notify.webhook.token_secret")


def check_value(setting: str, name: str, value: str) -> None:
    """A found secret must be usable where ``setting`` puts it.

    A bearer token must fit in a header as it is: a stray space, a second line
    or a non-ASCII character would make the HTTP library refuse it, and its
    error would show the value.
    """
    if setting in TOKEN_SETTINGS and not _TOKEN.fullmatch(value):
        raise SecretError(
            f"secret {name!r} ({setting}) is empty or holds spaces, line breaks or "
            "other characters a bearer token cannot have; store the token alone, "
            "on one line"
        )


def missing_message(
    lookups: list[Lookup], *, folder: Path | None, config: Path | None
) -> str:
    """The error for missing secrets: each place looked, then this platform's fix."""
    parts = [
        f"secret {lookup.name!r} not found; looked in: {'; '.join(lookup.looked)}"
        for lookup in lookups
    ]
    return ". ".join(parts) + ". " + platform_fix(lookups[0].name, folder, config)


def platform_fix(name: str, folder: Path | None, config: Path | None) -> str:
    """How to provide the secret ``name`` on this operating system."""
    option = f" -c {config}" if config is not None else ""
    command = f"`connector secrets set {name}{option}`"
    settings = config or "the config"
    where = (
        f"{folder}"
        if folder is not None
        else f"a [secrets] folder (set one in {settings})"
    )
    if sys.platform == "win32":
        return (
            f"To fix: run {command} logged on as the account the scheduled task "
            "runs as (it stores the secret in that account's Windows Credential "
            f"Manager), or put it in a file in {where} that only that account can "
            "read"
        )
    if sys.platform == "darwin":
        return (
            f"To fix: run {command} as the user the job runs as (macOS Keychain), "
            f"or put it in a file in {where} with mode 0600"
        )
    if folder is None:
        stored = (
            "(into the OS keyring; where there is none, as on a server, first add "
            f'the lines `[secrets]` and `folder = "{SECRETS_FOLDER}"` to {settings}: '
            "it then keeps a file with mode 0600 there)"
        )
        file = f"a file named by {env_name(name)}_FILE"
        # What `connector schedule` writes without a folder: systemd's store.
        credential = f"`LoadCredential={name}` (systemd reads /etc/credstore/{name})"
    else:
        stored = f"(into the OS keyring, else a file with mode 0600 in {folder})"
        file = f"a file in {folder} (or one named by {env_name(name)}_FILE)"
        credential = f"`LoadCredential={name}:{folder / name}`"
    return (
        f"To fix: run {command} as the account the job runs as {stored}; or put "
        f"it in {file} with mode 0600, owned by that account; or, if a systemd "
        f"unit runs the job, add {credential} to its [Service] section "
        "(connector schedule writes these lines)"
    )


def store_secret(
    name: str, value: str, *, folder: Path | None, config: Path | None = None
) -> str:
    """Store ``value`` as the secret ``name``; returns where it went.

    Into the OS keyring when its backend is a real store, else into ``folder`` as
    an owner-only file; a missing ``folder`` is made first, mode 0700. A file
    already in ``folder`` is replaced there, since the lookup reads the folder
    first. With neither a keyring nor a folder it is a
    ``ConfigError`` (exit 2) saying to set ``[secrets] folder`` in ``config``.
    """
    check_name(name)
    if not value:
        raise SecretError(f"secret {name!r}: the value is empty; nothing was stored")
    remember(value)
    if folder is not None and make_secrets_folder(folder):
        # Made even when the keyring takes the secret: the config names it.
        log.info("made the secrets folder %s (mode 0700)", folder)
    if folder is not None and (folder / name).is_file():
        return _write_secret_file(folder, name, value)
    backend = real_keyring()
    if backend is not None:
        from keyring.errors import KeyringError

        try:
            backend.set_password(KEYRING_SERVICE, name, value)
        except KeyringError as exc:
            raise SecretError(
                f"the OS keyring ({type(backend).__name__}) refused to store "
                f"{name!r} ({type(exc).__name__}); nothing was stored"
            ) from None
        return f"OS keyring service {KEYRING_SERVICE!r} ({type(backend).__name__})"
    if folder is None:
        # The config lacks a setting: a configuration error, not a missing secret.
        raise ConfigError(
            f"cannot store {name!r}: this session has no usable OS keyring (the "
            f"backend is {_backend_name()}, as on a server without a desktop "
            f"session) and {config or 'the config'} has no [secrets] folder to keep "
            f'it in; add the lines `[secrets]` and `folder = "{SECRETS_FOLDER}"` '
            "to it (a folder beside the config, only for the account the job runs "
            "as) and run this again; nothing was stored"
        )
    return _write_secret_file(folder, name, value)


def make_secrets_folder(folder: Path) -> bool:
    """Create ``folder`` owner-only (0700) unless it is there; ``True`` if made.

    Only the last folder is made: a missing parent is more likely a wrong path.
    """
    if folder.is_dir():
        return False
    try:
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)  # whatever the umask
    except OSError as exc:
        raise ConfigError(
            f"cannot create the secrets folder {folder}: "
            f"{exc.strerror or type(exc).__name__}; it must be a folder, and its "
            "parent must exist and be writable by this account"
        ) from None
    return True


def delete_secret(name: str, *, folder: Path | None) -> list[str]:
    """Delete the secret ``name`` from the secrets folder and the OS keyring."""
    check_name(name)
    deleted = []
    if folder is not None and (folder / name).is_file():
        (folder / name).unlink()
        deleted.append(f"secrets folder {folder / name}")
    backend = real_keyring()
    if backend is not None:
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            backend.delete_password(KEYRING_SERVICE, name)
            deleted.append(f"OS keyring service {KEYRING_SERVICE!r}")
        except PasswordDeleteError:
            pass
        except KeyringError as exc:
            raise SecretError(
                f"the OS keyring refused to delete {name!r} ({type(exc).__name__})"
            ) from None
    return deleted


def real_keyring() -> Any | None:
    """The keyring backend if it is a real store, else ``None``."""
    try:
        import keyring
    except ImportError:
        return None
    backend = keyring.get_keyring()
    module = type(backend).__module__.lower()
    if any(part in module for part in _INSECURE_BACKENDS):
        return None
    return backend


def _backend_name() -> str:
    try:
        import keyring
    except ImportError:
        return "none (keyring not installed)"
    return type(keyring.get_keyring()).__name__


def _warn_environment(name: str, var: str) -> None:
    if var in _warned:
        return
    _warned.add(var)
    log.warning(
        "secret %r comes from the environment variable %s, which other processes "
        "of this account can read; prefer a file with mode 0600 or the OS keyring "
        "(README: Secrets)",
        name,
        var,
    )


def _read_secret_file(name: str, path: Path) -> str:
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"secret file {path} for {name!r} can be read by other users; "
            f"run: chmod 600 {path}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SecretError(
            f"secret file {path} cannot be read ({exc.strerror or 'error'}); check "
            "that the account the job runs as owns it"
        ) from None
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        # The exception's text would quote a byte of the secret.
        raise SecretError(
            f"secret file {path} is not UTF-8 text; write it again"
        ) from None
    # A trailing newline is an editor's habit, never part of a password.
    return value.rstrip("\r\n")


def _write_secret_file(folder: Path, name: str, value: str) -> str:
    """Write ``folder/name`` owner-only, atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(value)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return f"secrets folder {folder / name} (mode 0600)"


def _from_keyring(name: str, lookup: Lookup) -> str | None:
    try:
        import keyring  # noqa: F401 - only to know whether it is installed
        from keyring.errors import KeyringError
    except ImportError:
        lookup.looked.append("OS keyring (keyring not installed)")
        return None

    backend = real_keyring()
    if backend is None:
        lookup.looked.append(f"OS keyring (skipped: backend {_backend_name()})")
        return None
    label = f"OS keyring service {KEYRING_SERVICE!r} ({type(backend).__name__})"
    lookup.looked.append(label)
    try:
        value = backend.get_password(KEYRING_SERVICE, name)
    except KeyringError as exc:
        log.debug("keyring lookup failed: %s", type(exc).__name__)
        return None
    if value is not None:
        lookup.where = label
    return value if isinstance(value, str) else None
