"""The nightly run around the pipeline: one at a time, once per business date.

``run_nightly`` is what ``connector run`` does:

1. take the run lock, ``<state>/run.lock``: an operating-system file lock
   (``filelock``: ``flock`` on Unix, a Windows file lock) held for the whole
   run and released by the system when the process ends, even by ``kill -9``, so a
   crashed run never leaves it stuck. A second run exits at once (exit 8) naming
   the lock file and the PID holding it (from ``run.lock.owner``);
2. stop (exit 7) if this business date was sent already (``<state>/sent-dates.json``)
   unless forced. The business date is today in ``source.time_zone``, or in the
   machine's local time without it;
3. check that every secret the config names can be found (exit 3), before any
   connection;
4. ``pipeline.run``: extract, gate, send and verify, publish;
5. record the business date after a verified send, even when the output folder
   could not then take the exports (``PublishError``: exit 1, nothing left
   pending); write the heartbeat file after a good run;
6. write the run's events and notify of a failure or a held send when configured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .config import Job
from .errors import (
    AlreadyDoneError,
    ConnectorError,
    ExitCode,
    HeldError,
    LockedError,
    PublishError,
)
from .logs import end, start
from .redact import redact
from .report import RunReport, write_json

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
SENT_NAME = "sent-dates.json"
PENDING_DATE_NAME = "pending-date.json"
# Enough for a school year and the summer; older dates are dropped.
KEEP_DATES = 400


@contextlib.contextmanager
def run_lock(job: Job, run_id: str) -> Iterator[Path]:
    """Hold the state folder's run lock; ``LockedError`` at once if another has it."""
    import filelock

    folder = job.state_folder
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    owner = folder / (LOCK_NAME + ".owner")
    lock = filelock.FileLock(path, timeout=0, mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockedError(
            f"another run holds the lock {path}{_holder(owner)}; nothing was done. "
            "Let it finish (a run that crashed or was killed frees the lock by "
            "itself)"
        ) from None
    try:
        _write_json(
            owner,
            {
                "pid": os.getpid(),
                "run_id": run_id,
                "since": _now(),
                "host": socket.gethostname(),
            },
        )
        yield path
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


def _holder(owner: Path) -> str:
    try:
        data = json.loads(owner.read_text(encoding="utf-8"))
        pid, run_id, since = int(data["pid"]), data["run_id"], data["since"]
    except (OSError, ValueError, KeyError, TypeError):
        return " (the PID holding it is not known)"
    return f", held by PID {pid} (run {run_id}, since {since})"


def business_date(job: Job, now: dt.datetime | None = None) -> dt.date:
    """Today in ``source.time_zone``, or in local time when it is not set."""
    now = now or dt.datetime.now(dt.UTC)
    zone = job.zone
    return (now.astimezone(zone) if zone else now.astimezone()).date()


def sent_dates(job: Job) -> dict[str, Any]:
    """The business dates sent, each with its run ID and time."""
    try:
        data = json.loads((job.state_folder / SENT_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConnectorError(
            f"{job.state_folder / SENT_NAME} cannot be read ({exc}); move it away "
            "to start the record of sent business dates again"
        ) from None
    return data if isinstance(data, dict) else {}


def record_sent(job: Job, date: dt.date, report: RunReport) -> None:
    """Record that ``date`` was sent and verified by ``report``'s run."""
    dates = sent_dates(job)
    dates[date.isoformat()] = {
        "run_id": report.run_id,
        "sent": _now(),
        "uploads": len(report.receipts),
    }
    kept = dict(sorted(dates.items())[-KEEP_DATES:])
    _write_json(job.state_folder / SENT_NAME, kept)


def record_pending_sent(
    job: Job, report: RunReport, *, heartbeat: bool = True
) -> dt.date | None:
    """After ``connector send`` of what a run left pending: record its date (and
    write the heartbeat, unless the send did not end well)."""
    marker = job.state_folder / PENDING_DATE_NAME
    try:
        date = dt.date.fromisoformat(json.loads(marker.read_text())["business_date"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    record_sent(job, date, report)
    if heartbeat:
        write_heartbeat(job, date, report)
    marker.unlink(missing_ok=True)
    return date


def write_heartbeat(job: Job, date: dt.date, report: RunReport) -> Path:
    """The file monitoring tools read: the last good run, its date and counts."""
    path = job.heartbeat_path
    _write_json(
        path,
        {
            "last_good_run": _now(),
            "run_id": report.run_id,
            "business_date": date.isoformat(),
            "config": str(job.path),
            "host": socket.gethostname(),
            "tool_version": __version__,
            "datasets": _counts(report),
            "uploads": len(report.receipts),
        },
    )
    return path


@dataclass
class Outcome:
    """How a nightly run ended, for the summary, the event log and notices."""

    report: RunReport
    business_date: dt.date | None
    outcome: str
    exit_code: int
    error: str | None
    seconds: float
    failure: ConnectorError | None = None

    def summary(self) -> str:
        """One line for stdout."""
        date = self.business_date.isoformat() if self.business_date else "-"
        rows = ", ".join(
            f"{name} {c['written']} rows" for name, c in _counts(self.report).items()
        )
        parts = [
            f"run {self.report.run_id}: {self.outcome} (exit {self.exit_code})",
            f"business date {date}",
            rows or "no exports",
            f"{len(self.report.receipts)} uploads verified",
            f"{self.seconds:.1f} s",
        ]
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "error": self.error,
            "run_id": self.report.run_id,
            "business_date": self.business_date.isoformat()
            if self.business_date
            else None,
            "host": socket.gethostname(),
            "tool_version": __version__,
            "datasets": _counts(self.report),
            "uploads": len(self.report.receipts),
            "seconds": round(self.seconds, 1),
        }


def run_nightly(
    job: Job,
    *,
    params: Mapping[str, Any] | None = None,
    report: RunReport | None = None,
    accept_change: bool = False,
    force: bool = False,
    wait: float | None = None,
) -> Outcome:
    """Run the nightly job once; see the module docstring. ``force`` and ``wait``
    also go to ``pipeline.run`` (a file source's age and repetition).

    A ``ConnectorError`` ends the run and is returned as ``Outcome.failure``
    (after the events and the notices); anything else is raised.
    """
    from .notify import notify
    from .pipeline import run as run_pipeline
    from .secrets import require_secrets

    report = report if report is not None else RunReport(command="run")
    started = time.monotonic()
    date: dt.date | None = None
    outcome: Outcome | None = None
    try:
        with run_lock(job, report.run_id):
            date = business_date(job)
            start(
                "run",
                job,
                business_date=date.isoformat(),
                force=force,
                accept_change=accept_change,
            )
            log.debug("run %s: business date %s", report.run_id, date)
            error: BaseException | None = None
            try:
                _check_not_sent(job, date, force)
                require_secrets(job)
                unpublished: PublishError | None = None
                try:
                    run_pipeline(
                        job,
                        params=params,
                        report=report,
                        accept_change=accept_change,
                        force=force,
                        wait=wait,
                    )
                except PublishError as exc:  # sent and verified all the same
                    unpublished = exc
                record_sent(job, date, report)
                (job.state_folder / PENDING_DATE_NAME).unlink(missing_ok=True)
                if unpublished is not None:
                    raise unpublished
                write_heartbeat(job, date, report)
            except BaseException as exc:
                error = exc
                _mark_pending(job, date, report)
                if isinstance(exc, OSError) and exc.filename is not None:
                    log.error("%s: %s", exc.filename, exc.strerror or exc)
                elif not isinstance(exc, ConnectorError) and isinstance(exc, Exception):
                    log.error("unexpected %s: %s", type(exc).__name__, redact(str(exc)))
                raise
            finally:
                outcome = outcome_of(report, date, error, time.monotonic() - started)
                end("run", **outcome.as_dict())
    except BaseException as exc:
        if outcome is None:
            outcome = outcome_of(report, date, exc, time.monotonic() - started)
        notify(job, outcome)
        if isinstance(exc, ConnectorError):
            outcome.failure = exc
            return outcome
        raise
    assert outcome is not None
    notify(job, outcome)
    return outcome


def _mark_pending(job: Job, date: dt.date, report: RunReport) -> None:
    """Note the business date of exports a run left pending, for `connector send`."""
    from .pipeline import pending_exports

    if pending_exports(job):
        with contextlib.suppress(OSError):
            _write_json(
                job.state_folder / PENDING_DATE_NAME,
                {"business_date": date.isoformat(), "run_id": report.run_id},
            )


def _check_not_sent(job: Job, date: dt.date, force: bool) -> None:
    done = sent_dates(job).get(date.isoformat())
    if done is None:
        return
    if force:
        log.warning(
            "business date %s was sent already (run %s); sending again: --force",
            date,
            done.get("run_id"),
        )
        return
    raise AlreadyDoneError(
        f"business date {date} was sent already by run {done.get('run_id')} at "
        f"{done.get('sent')} (recorded in {job.state_folder / SENT_NAME}); nothing "
        "was done. `connector run --force` sends it again"
    )


def outcome_of(
    report: RunReport,
    date: dt.date | None,
    error: BaseException | None,
    seconds: float,
) -> Outcome:
    """How a run (or another command, by ``report.command``) ended with ``error``."""
    if error is None:
        done = "sent" if report.command == "run" else report.outcome
        return Outcome(report, date, done, ExitCode.OK, None, seconds)
    if isinstance(error, ConnectorError):
        code, text = error.exit_code, str(error)
    else:
        code = ExitCode.FAILURE
        text = f"unexpected {type(error).__name__}: {redact(str(error))}"
        text = " ".join(text.split())
    if isinstance(error, HeldError):
        name = "held"
    elif isinstance(error, AlreadyDoneError | LockedError):
        name = "skipped"
    else:
        name = "failed"
    return Outcome(report, date, name, code, text, seconds)


def _counts(report: RunReport) -> dict[str, dict[str, int]]:
    return {
        e.dataset: {"fetched": e.fetched, "written": e.written, "rejected": e.rejected}
        for e in report.exports
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically, owner-only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_json(path, data)
