"""A one-off export over a date range, cut into chunks that resume after a crash.

Each chunk (a day, a week or a calendar month) renders the data set's template with
``start_date`` and ``end_date`` set to the chunk's first and last day, so neither
the database nor memory ever holds the whole range; its rows go through the same
field rules, validation and ``COUNT(*)`` check as the nightly extract, into a chunk
file in ``<state>/backfill/<data set>-<from>-<to>-<chunk>/``. A progress file there
records each finished chunk with its hash; a run that was stopped, killed or lost
its connection starts again at the first chunk not recorded (or whose file no
longer matches). When every chunk is done they are joined, under one header, into
``<data set>-<from>-<to>.csv`` in the backfill folder, under a temporary name
renamed into place at the end.

A backfill never reads or writes the nightly state: not the safety gate's store,
the pending exports or the output folder's exports. Sent (``send=True``), it goes
through the configured destination like a nightly export, with its manifest, but
records no gate baseline.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .config import Job
from .csvout import ExportWriter
from .database import open_source
from .errors import ConfigError, ExportError
from .pipeline import database_password, fill_export, job_params, render_all
from .report import new_run_id, write_json
from .templates import template_names

if TYPE_CHECKING:
    from .destinations import Prepared
    from .templates import Query
    from .transfer import Receipt

log = logging.getLogger(__name__)

ChunkSize = Literal["day", "week", "month"]
CHUNK_SIZES: tuple[ChunkSize, ...] = ("day", "week", "month")
RANGE_PARAMS = ("start_date", "end_date")
PROGRESS = "progress.json"


@dataclass(frozen=True)
class Chunk:
    index: int
    first: dt.date
    last: dt.date

    @property
    def file(self) -> str:
        return f"chunk-{self.index:04d}.csv"


@dataclass
class BackfillResult:
    """What a backfill wrote (and sent): counts and hashes, never values."""

    dataset: str
    path: Path
    chunks: int
    resumed_at: int = 0
    """The first chunk this process extracted (0: none had been done before)."""
    fetched: int = 0
    written: int = 0
    rejected: int = 0
    size: int = 0
    sha256: str = ""
    receipts: list[Receipt] = field(default_factory=list)


def chunk_ranges(first: dt.date, last: dt.date, size: ChunkSize) -> list[Chunk]:
    """Cut ``first``..``last`` (both included) into days, ISO weeks or months.

    A week runs Monday to Sunday and a month is a calendar month, so the first and
    last chunks may be shorter.
    """
    if last < first:
        raise ConfigError(f"--from {first} is after --to {last}; swap them")
    chunks: list[Chunk] = []
    start = first
    while start <= last:
        if size == "day":
            end = start
        elif size == "week":
            # Up to the Sunday, or the last day there is (9999-12-31 is a
            # common "no end" date).
            end = dt.date.fromordinal(
                min(start.toordinal() + 6 - start.weekday(), dt.date.max.toordinal())
            )
        else:
            end = start.replace(day=calendar.monthrange(start.year, start.month)[1])
        end = min(end, last)
        chunks.append(Chunk(len(chunks), start, end))
        if end == dt.date.max:
            break
        start = end + dt.timedelta(days=1)
    return chunks


def backfill_name(job: Job, dataset: str, first: dt.date, last: dt.date) -> str:
    """``attendance-2025-08-04-2026-06-05.csv`` for the data set's export name."""
    export = Path(job.export_name(dataset))
    return f"{export.stem}-{first.isoformat()}-{last.isoformat()}{export.suffix}"


def work_folder(
    job: Job, dataset: str, first: dt.date, last: dt.date, size: str
) -> Path:
    return job.state_folder / "backfill" / f"{dataset}-{first}-{last}-{size}"


def backfill(
    job: Job,
    dataset: str,
    first: dt.date,
    last: dt.date,
    *,
    chunk: ChunkSize = "week",
    folder: Path | None = None,
    send: bool = False,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> BackfillResult:
    """Export ``dataset`` from ``first`` to ``last`` in chunks; see the module doc.
    ``run_id`` names the send in the upload log (default: a new one).

    Raises ``ConfigError`` when the data set is not enabled or its template does
    not use ``start_date`` and ``end_date``, and what the extract or the send
    raise; the finished chunks are kept for the next try.
    """
    if dataset not in job.datasets:
        raise ConfigError(
            f"data set {dataset!r} is not enabled in {job.path}; enabled: "
            f"{', '.join(job.datasets)}"
        )
    template = job.template_path(dataset)
    missing = [p for p in RANGE_PARAMS if p not in template_names(template)]
    if missing:
        raise ConfigError(
            f"data set {dataset}: the template {template} does not use "
            f"{' and '.join(missing)}, so it cannot be cut into date ranges; "
            "backfill a data set whose template filters on start_date and end_date"
        )
    chunks = chunk_ranges(first, last, chunk)
    if params and set(params) & set(RANGE_PARAMS):
        raise ConfigError(
            "--param start_date / end_date: the backfill sets them per chunk; "
            "give the range with --from and --to"
        )
    base = job_params(job, params, [dataset])
    queries = [
        render_all(job, [dataset], {**base, "start_date": c.first, "end_date": c.last})[
            dataset
        ]
        for c in chunks
    ]
    prepared = None
    if send:
        from .destinations import prepare

        prepared = prepare(job)  # a missing secret or key costs no database time

    work = work_folder(job, dataset, first, last, chunk)
    fingerprint = _fingerprint(job, dataset, base, chunk)
    done = _load_progress(work, fingerprint)
    result = BackfillResult(
        dataset=dataset,
        path=(folder or job.output_folder / "backfill")
        / backfill_name(job, dataset, first, last),
        chunks=len(chunks),
    )
    start = _first_unfinished(work, chunks, done)
    result.resumed_at = start
    if start < len(chunks):
        if start:
            log.info(
                "backfill %s: resuming at chunk %d of %d (%s)",
                dataset,
                start + 1,
                len(chunks),
                chunks[start].first,
            )
        done = done[:start]
        _extract_chunks(job, dataset, work, chunks[start:], queries, done, fingerprint)
    for entry in done:
        result.fetched += entry["fetched"]
        result.written += entry["written"]
        result.rejected += entry["rejected"]

    result.size, result.sha256 = _join(work, chunks, result.path)
    log.info(
        "backfill %s written: %s, %d rows, %d bytes, sha256 %s",
        dataset,
        result.path.name,
        result.written,
        result.size,
        result.sha256[:16],
    )
    if prepared is not None:
        result.receipts = _send(job, prepared, result, run_id or new_run_id())
    shutil.rmtree(work, ignore_errors=True)
    return result


def _extract_chunks(
    job: Job,
    dataset: str,
    work: Path,
    chunks: list[Chunk],
    queries: list[Query],
    done: list[dict[str, Any]],
    fingerprint: str,
) -> None:
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in work.glob(".chunk-*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)
    shape = job.dataset(dataset)
    with open_source(job.source, database_password(job)) as source:
        for chunk in chunks:
            writer = ExportWriter(
                shape, work / chunk.file, policy=job.policy(dataset), zone=job.zone
            )
            try:
                fill_export(job, writer, source, queries[chunk.index])
                found = writer.finish()
            except BaseException:
                writer.discard()
                raise
            writer.commit()
            done.append(
                {
                    "first": chunk.first.isoformat(),
                    "last": chunk.last.isoformat(),
                    "file": chunk.file,
                    "fetched": found.fetched,
                    "written": found.written,
                    "rejected": found.rejected,
                    "sha256": found.sha256,
                }
            )
            _save_progress(work, fingerprint, done)
            log.info(
                "backfill %s: chunk %d of %d (%s to %s): %d rows",
                dataset,
                chunk.index + 1,
                chunks[-1].index + 1,
                chunk.first,
                chunk.last,
                found.written,
            )


def _fingerprint(job: Job, dataset: str, params: Mapping[str, Any], chunk: str) -> str:
    """What the finished chunks depend on: a change starts the backfill over."""
    digest = hashlib.sha256(job.template_path(dataset).read_bytes())
    fixed = {k: v for k, v in params.items() if k not in RANGE_PARAMS}
    digest.update(json.dumps(fixed, sort_keys=True, default=str).encode())
    digest.update(repr(job.dataset(dataset)).encode())
    digest.update(repr(job.policy(dataset)).encode())
    digest.update(f"{chunk} {job.source.time_zone}".encode())
    return digest.hexdigest()


def _load_progress(work: Path, fingerprint: str) -> list[dict[str, Any]]:
    try:
        data = json.loads((work / PROGRESS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        log.warning("backfill progress in %s is unreadable: starting over", work)
        return []
    if data.get("fingerprint") != fingerprint:
        log.warning(
            "the template, parameters or data set rules changed since the backfill "
            "in %s began: starting over",
            work,
        )
        return []
    return list(data.get("done", []))


def _save_progress(work: Path, fingerprint: str, done: list[dict[str, Any]]) -> None:
    # Owner-only and atomic, as every state file. A progress file cut short by
    # a power cut is unreadable and starts the backfill over; one naming a
    # chunk whose file did not reach the disk fails its hash and redoes it.
    write_json(work / PROGRESS, {"fingerprint": fingerprint, "done": done})


def _first_unfinished(
    work: Path, chunks: list[Chunk], done: list[dict[str, Any]]
) -> int:
    """The first chunk not recorded, or whose file is not what was recorded."""
    for chunk, entry in zip(chunks, done, strict=False):
        path = work / chunk.file
        if (
            entry.get("first") != chunk.first.isoformat()
            or entry.get("last") != chunk.last.isoformat()
            or not path.is_file()
            or _sha256(path) != entry.get("sha256")
        ):
            return chunk.index
    return min(len(done), len(chunks))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _join(work: Path, chunks: list[Chunk], target: Path) -> tuple[int, str]:
    """One header, then every chunk's records, renamed into ``target`` at the end."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        with part.open("wb") as out:
            os.chmod(part, 0o600)  # student records: the owner only
            for chunk in chunks:
                with (work / chunk.file).open("rb") as f:
                    header = f.readline()
                    if chunk.index == 0:
                        out.write(header)
                        digest.update(header)
                        size += len(header)
                    while block := f.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        size += len(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, target)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise ExportError(
            f"cannot write the backfill {target}: {exc.strerror or exc}; check "
            "the folder and the free space, then run the backfill again (the "
            "finished chunks are kept)"
        ) from exc
    return size, digest.hexdigest()


def _send(
    job: Job, prepared: Prepared, result: BackfillResult, run_id: str
) -> list[Receipt]:
    """Package, upload and verify the backfill and its manifest; no gate baseline."""
    from .destinations import deliver
    from .package import package_export
    from .pipeline import write_manifest

    payload = package_export(result.path, job.spool_folder, prepared.recipient)
    receipt = deliver(prepared, payload, job.upload_log, run_id)
    if prepared.manifest:
        manifest = write_manifest(payload, result.written, run_id)
        deliver(prepared, manifest, job.upload_log, run_id)
        manifest.discard()
    payload.discard()
    return [receipt]
