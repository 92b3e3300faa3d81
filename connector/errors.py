"""Every failure an operator can fix is a ``ConnectorError`` carrying an exit code.

The tree::

    ConnectorError                 exit 1 unless a leaf says otherwise
    ├── ConfigError                exit 2: the config file, a --param, a path
    ├── TemplateError              exit 2: a template cannot be read or rendered
    ├── SecretError                exit 3: a secret is missing or unreadable
    ├── ConnectError               exit 3 for refused logins, 1 otherwise
    ├── QueryError                 exit 1: the database refused or broke a query
    ├── ExportError                exit 1: a row or file could not be written
    │   └── PublishError           exit 1: every upload was verified (and is recorded
    │                              as sent), but the output folder could not take
    │                              the exports
    ├── SourceFileError            exit 1 (4 while it is being written): a source
    │                              file is missing, unreadable, old or changing
    ├── PackageError               exit 1: compressing or encrypting failed
    ├── UploadError                exit 4: the receiver could not be reached in time
    │   └── VerificationError      exit 5: the receiver holds other bytes than we sent
    ├── HeldError                  exit 6: the safety gate held the send
    ├── AlreadyDoneError           exit 7: this business date (or source file) was
    │                              already sent
    └── LockedError                exit 8: another run of this config is running

The library raises these and never prints or exits; ``connector.cli`` turns them into
one line on stderr and the exit code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .redact import redact


class ExitCode:
    """Process exit codes, documented in the README and ``connector --help``."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    SECRETS_OR_AUTH = 3
    RETRY_LATER = 4
    VERIFICATION_FAILED = 5
    HELD = 6
    ALREADY_DONE = 7
    LOCKED = 8
    INTERRUPTED = 130  # Ctrl-C (SIGINT), as a shell reports 128 + 2


class ConnectorError(Exception):
    """A failure the operator can act on; ``str()`` is a single line."""

    exit_code: int = ExitCode.FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        # One line, always: a driver message can carry newlines of its own. Never
        # a secret value, whatever a driver or library put in its text.
        super().__init__(" ".join(redact(message).split()))
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(ConnectorError):
    """The configuration file or a command-line value is wrong."""

    exit_code = ExitCode.USAGE


class TemplateError(ConnectorError):
    """A SQL template is missing, malformed or uses an undefined name."""

    exit_code = ExitCode.USAGE


class SecretError(ConnectorError):
    """A secret named in the configuration could not be found."""

    exit_code = ExitCode.SECRETS_OR_AUTH


class ConnectError(ConnectorError):
    """The database could not be reached or refused the login."""


class QueryError(ConnectorError):
    """The database refused or interrupted a query."""


class ExportError(ConnectorError):
    """A row could not be turned into a valid CSV record, or the file not written."""


class PublishError(ExportError):
    """Every upload was verified, then the exports could not be put into the
    output folder: the send itself is done and must be recorded as such."""


class SourceFileError(ConnectorError):
    """A data set's source file is missing, unreadable, too old or being written."""


class PackageError(ConnectorError):
    """A file could not be compressed or encrypted."""


class UploadError(ConnectorError):
    """The upload did not complete; the payload is kept for the next try."""

    exit_code = ExitCode.RETRY_LATER


class VerificationError(UploadError):
    """The receiver stored something other than what was sent."""

    exit_code = ExitCode.VERIFICATION_FAILED


class HeldError(ConnectorError):
    """The safety gate held a send: an empty export or too many rows gone."""

    exit_code = ExitCode.HELD


class AlreadyDoneError(ConnectorError):
    """The business date, or the very same source file, was already sent;
    ``--force`` sends it again."""

    exit_code = ExitCode.ALREADY_DONE


class LockedError(ConnectorError):
    """Another run of the same config holds the run lock."""

    exit_code = ExitCode.LOCKED


@contextlib.contextmanager
def writing(path: os.PathLike[str] | str) -> Iterator[None]:
    """An ``OSError`` raised while writing ``path`` names it.

    A failed ``write()``, ``flush()`` or ``fsync()`` (a full disk) names no file,
    and the one line the command line prints then could not say where.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise
