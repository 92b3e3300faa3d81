"""The nightly run's logs: a rotating human log file and the JSON-lines event log.

Both live in ``[log] folder`` (default: the platform's user log folder, e.g.
``~/.local/state/connector/log`` on Linux, ``%LOCALAPPDATA%\\connector\\Logs`` on
Windows), owner-only, UTF-8 whatever the locale:

- ``connector.log``: the same lines as stderr, with a timestamp, rotated at
  ``[log] max_bytes`` with ``[log] backups`` old files kept;
- ``events.jsonl``: one JSON object a line per stage event (run start and end,
  data set extracted with its counts, the gate's verdict, upload verified), with
  the run ID. Counts, names, sizes and hashes; never a row value or a secret.

Every command that reads the database or the exports or talks to the receiver
(``run``, ``test``, ``extract``, ``send``, ``backfill``) writes both, under its own
run ID: ``start`` and ``end`` bracket it with a ``run_start`` and a ``run_end``
event naming the command, and put its start and its outcome (with the error line
the user saw) in ``connector.log``.

Every line written passes through ``connector.redact``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import logging.handlers
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .redact import redact

if TYPE_CHECKING:
    from .config import Job

LOG_NAME = "connector.log"
EVENTS_NAME = "events.jsonl"
HUMAN_FORMAT = "%(levelname)s %(name)s: %(message)s"

log = logging.getLogger(__name__)
_events = logging.getLogger("connector.events")
_events.propagate = False
_events.setLevel(logging.INFO)
# A command's start and outcome: for connector.log only, as stderr has its own
# `error:` line.
_outcome = logging.getLogger("connector.outcome")
_outcome.propagate = False
_outcome.setLevel(logging.INFO)


class RedactingFormatter(logging.Formatter):
    """A formatter whose output never holds a remembered secret value."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _JsonLines(logging.Formatter):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "run_id": self.run_id,
            "event": record.getMessage(),
            **getattr(record, "event_fields", {}),
        }
        return redact(json.dumps(data, default=str))


def emit(event: str, **fields: Any) -> None:
    """Write one event to the JSON-lines log of the current run, if one is open."""
    _events.info(event, extra={"event_fields": fields})


def start(command: str, job: Job, **fields: Any) -> None:
    """A command begins: its ``run_start`` event and a line in the log file."""
    from . import __version__

    emit(
        "run_start",
        command=command,
        config=str(job.path),
        pid=os.getpid(),
        tool_version=__version__,
        **fields,
    )
    _outcome.info("connector %s started with %s", command, job.path)


def end(command: str, **fields: Any) -> None:
    """A command ends: its ``run_end`` event (``fields``: ``outcome``,
    ``exit_code``, ``error`` and counts) and its outcome in the log file."""
    emit("run_end", command=command, **fields)
    code, error = fields.get("exit_code", 0), fields.get("error")
    _outcome.log(
        logging.ERROR if code else logging.INFO,
        "connector %s %s (exit %s)%s",
        command,
        fields.get("outcome"),
        code,
        f": {error}" if error else "",
    )


def _owner_only_file(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.close(fd)


@contextlib.contextmanager
def run_logs(job: Job, run_id: str) -> Iterator[Path | None]:
    """Add the log file and the event log for one run; yields the log folder.

    A folder that cannot be written is a warning on stderr, never a failed run.
    """
    folder = job.log_folder
    handlers: list[tuple[logging.Logger, logging.Handler]] = []
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings = job.settings.log
        for name in (LOG_NAME, EVENTS_NAME):
            _owner_only_file(folder / name)
        human = logging.handlers.RotatingFileHandler(
            folder / LOG_NAME,
            maxBytes=settings.max_bytes,
            backupCount=settings.backups,
            encoding="utf-8",
            errors="backslashreplace",
        )
        human.setFormatter(
            RedactingFormatter("%(asctime)s " + HUMAN_FORMAT + f" [{run_id}]")
        )
        events = logging.handlers.RotatingFileHandler(
            folder / EVENTS_NAME,
            maxBytes=settings.max_bytes,
            backupCount=settings.backups,
            encoding="utf-8",
        )
        events.setFormatter(_JsonLines(run_id))
    except OSError as exc:
        log.warning(
            "no log file this run: cannot write in %s (%s); set [log] folder",
            folder,
            exc.strerror or exc,
        )
        yield None
        return
    handlers = [
        (logging.getLogger("connector"), human),
        (_outcome, human),
        (_events, events),
    ]
    for logger, handler in handlers:
        logger.addHandler(handler)
    try:
        yield folder
    finally:
        for logger, handler in handlers:
            logger.removeHandler(handler)
            handler.close()
