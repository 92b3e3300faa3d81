"""The run report: what each data set went through, as a table and as JSON.

Counts, file names, sizes, hashes, rule names, and for rejected rows and values left
empty the row number, ID and column. Never a field value other than the ID, and
never a secret. ``connector run`` and ``connector extract`` write it beside the
exports as ``run-report.json``, on failure too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .csvout import ExportResult
from .errors import writing

if TYPE_CHECKING:
    from .database import ServerInfo
    from .gate import Diff
    from .transfer import Receipt

REPORT_NAME = "run-report.json"


def new_run_id() -> str:
    """A sortable, unique name for one run: UTC time and a random suffix."""
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


@dataclass
class RunReport:
    """What a run did; see the module docstring for what it may hold."""

    command: str = "run"
    run_id: str = field(default_factory=new_run_id)
    started: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    outcome: str = "running"
    error: str | None = None
    server: ServerInfo | None = None
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per data set read from a file: its path, size, time, SHA-256 and layout."""
    exports: list[ExportResult] = field(default_factory=list)
    gate: list[Diff] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)

    def export(self, dataset: str) -> ExportResult | None:
        return next((e for e in self.exports if e.dataset == dataset), None)

    def as_dict(self) -> dict[str, Any]:
        gate = {d.dataset: d.as_dict() for d in self.gate}
        return {
            "run_id": self.run_id,
            "command": self.command,
            "tool_version": __version__,
            "started": self.started,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "outcome": self.outcome,
            "error": self.error,
            "server": None
            if self.server is None
            else {
                "dbms": self.server.dbms,
                "dbms_version": self.server.dbms_version,
                "driver": self.server.driver,
                "driver_version": self.server.driver_version,
            },
            "sources": self.sources,
            "datasets": {
                e.dataset: {
                    "file": e.path.name,
                    "fetched": e.fetched,
                    "written": e.written,
                    "rejected": e.rejected,
                    "expected": e.expected,
                    "size": e.size,
                    "sha256": e.sha256,
                    "fixed": sum(e.fixes.values()),
                    "fixes": dict(sorted(e.fixes.items())),
                    "warnings": dict(sorted(e.warnings.items())),
                    "rejections": dict(sorted(e.rejections.items())),
                    "rows": [n.as_dict() for n in e.notes],
                    "rows_left_out": e.notes_left_out,
                    "gate": gate.get(e.dataset),
                }
                for e in self.exports
            },
            "uploads": [
                {
                    "file": r.name,
                    "size": r.size,
                    "sha256": r.sha256,
                    "verified": r.verified,
                    "attempts": r.attempts,
                }
                for r in self.receipts
            ],
        }

    def write(self, folder: Path) -> Path:
        """Write ``run-report.json`` into ``folder`` atomically; returns its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT_NAME
        write_json(path, self.as_dict())
        return path

    def table(self) -> str:
        """The per-data-set counts as an aligned plain-text table."""
        gate = {d.dataset: d for d in self.gate}
        header = (
            "data set",
            "fetched",
            "written",
            "rejected",
            "expected",
            "fixed",
            "warnings",
            "gate",
        )
        lines = [header]
        for e in self.exports:
            diff = gate.get(e.dataset)
            if diff is None:
                verdict = "-"
            elif diff.held:
                verdict = "HELD"
            elif diff.baseline is None:
                verdict = "first send"
            else:
                verdict = f"ok +{diff.added} -{diff.removed} ~{diff.changed}"
            lines.append(
                (
                    e.dataset,
                    str(e.fetched),
                    str(e.written),
                    str(e.rejected),
                    "-" if e.expected is None else str(e.expected),
                    str(sum(e.fixes.values())),
                    str(sum(e.warnings.values())),
                    verdict,
                )
            )
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        return "\n".join(
            "  ".join(
                cell.ljust(w) if i in (0, 7) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in lines
        )


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically and durably, owner-only; a
    failure (a full disk) names ``path`` and leaves no temporary file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with writing(path), os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            # On disk before it takes the name: a power cut leaves the old
            # file or the new one, never an empty one.
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
