"""The job's stages joined: extract the data sets, then package, upload and verify.

``extract`` writes every enabled data set or none: each export goes to a temporary
file and all are renamed into place only when every query has succeeded. ``run``
extracts into the pending folder, sends, and moves the exports into the output
folder only once every upload is verified, so the output folder always holds the
last exports the receiver confirmed, or, when it cannot take them all (a file
made read-only or held open), every one it held before: the send is done all the
same (``PublishError``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Job
from .csvout import ExportResult, ExportWriter, check_export, column_order
from .database import Batches, Source, open_source, param_style
from .errors import (
    ConfigError,
    ConnectorError,
    ExportError,
    HeldError,
    PublishError,
)
from .logs import emit
from .redact import redact
from .report import RunReport, write_json
from .secrets import get_secret
from .templates import Query, render_query, template_names, typed_like

if TYPE_CHECKING:
    from .destinations import Prepared
    from .gate import Diff, StateStore
    from .package import Payload
    from .transfer import Receipt

log = logging.getLogger(__name__)

# In the state folder: exports a verified send could not replace, see _publish.
UNPUBLISHED_NAME = "unpublished.json"
# Data sets whose empty result means something broke, never "nobody today".
_MUST_HAVE_ROWS = ("students", "staff")


def job_params(
    job: Job, overrides: Mapping[str, Any] | None = None, names: Iterable[str] = ()
) -> dict[str, Any]:
    """The config's [params] with ``--param`` overrides, each of which a template
    among ``names`` must use: a misspelt override would silently widen the export.
    """
    if overrides:
        names = [n for n in names if job.file_source(n) is None]
        used = set().union(*(template_names(job.template_path(n)) for n in names))
        unused = sorted(set(overrides) - used)
        if unused:
            raise ConfigError(
                f"--param {', '.join(unused)}: no template uses it; the templates "
                f"use: {', '.join(sorted(used)) or 'nothing'}"
            )
    params: dict[str, Any] = dict(job.settings.params)
    for name, value in (overrides or {}).items():
        params[name] = (
            typed_like(name, value, params[name]) if name in params else value
        )
    first, last = params.get("start_date"), params.get("end_date")
    if isinstance(first, dt.date) and isinstance(last, dt.date) and first > last:
        where = (
            "--param"
            if {"start_date", "end_date"} & set(overrides or {})
            else (f"[params] in {job.path}")
        )
        raise ConfigError(
            f"{where}: start_date {first} is after end_date {last}, a range that "
            "selects nothing; swap them"
        )
    return params


def render_all(
    job: Job, names: Iterable[str], params: Mapping[str, Any]
) -> dict[str, Query]:
    """Render every template before connecting, so a typo costs no database time.

    Data sets read from a file have no template and are left out.
    """
    names = [n for n in names if job.file_source(n) is None]
    if not names:
        return {}
    style = param_style(job.source)
    return {
        name: render_query(job.template_path(name), params, style=style)
        for name in names
    }


def selected(job: Job, names: Iterable[str] | None) -> list[str]:
    enabled = job.datasets
    if not names:
        return list(enabled)
    chosen = list(names)
    for name in chosen:
        if name not in enabled:
            raise ConfigError(
                f"data set {name!r} is not enabled in {job.path}; "
                f"enabled: {', '.join(enabled)}"
            )
    if "students" not in chosen and {"staff", "attendance"} & set(chosen):
        log.warning(
            "students are not extracted in this run: staff IDs and attendance "
            "student IDs are not checked against them"
        )
    # Students first, so the others can be checked against them.
    return [name for name in enabled if name in chosen]


def database_password(job: Job) -> str | None:
    name = job.source.password_secret
    return None if name is None else get_secret(name, folder=job.secrets_folder)


def extract(
    job: Job,
    *,
    names: Iterable[str] | None = None,
    params: Mapping[str, Any] | None = None,
    folder: Path | None = None,
    report: RunReport | None = None,
    allow_empty: bool = False,
) -> list[ExportResult]:
    """Write the exports of ``names`` (default: every enabled data set) to ``folder``.

    All or nothing: on any error no file in ``folder`` changes. Students come
    first, so staff IDs and attendance student IDs are checked against them. Each
    data set's rows are counted with ``COUNT(*)`` over its template, in the same
    transaction, and must all be accounted for as written or rejected.
    ``allow_empty`` lets an empty students or staff result through (the safety
    gate judges it instead).
    """
    report = report if report is not None else RunReport(command="extract")
    chosen = selected(job, names)
    queries = render_all(job, chosen, job_params(job, params, chosen))
    target = folder or job.output_folder
    writers: dict[str, ExportWriter] = {}
    try:
        with _database(job, queries, report) as source:
            for name in chosen:
                students = writers.get("students")
                writer = ExportWriter(
                    job.dataset(name),
                    target / job.export_name(name),
                    policy=job.policy(name),
                    zone=job.zone,
                    student_ids=students.ids
                    if name == "attendance" and students
                    else None,
                    clashing_ids=students.ids if name == "staff" and students else None,
                )
                writers[name] = writer
                report.exports.append(writer.result)
                if name in queries:
                    assert source is not None
                    fill_export(job, writer, source, queries[name])
                else:
                    _fill_file(job, writer, report)
                result = writer.finish()
                log.info(
                    "data set %s: %d rows fetched, %d written, %d rejected",
                    name,
                    result.fetched,
                    result.written,
                    result.rejected,
                )
                emit(
                    "dataset_extracted",
                    dataset=name,
                    fetched=result.fetched,
                    written=result.written,
                    rejected=result.rejected,
                    expected=result.expected,
                    fixed=sum(result.fixes.values()),
                    warnings=sum(result.warnings.values()),
                )
                if not allow_empty:
                    check_not_empty(job, name, result.written, result.fetched)
    except BaseException:
        for writer in writers.values():
            writer.discard()
        raise
    results = _commit_all(list(writers.values()))
    if target == job.output_folder:
        _drop_superseded(job, results)
    return results


def _commit_all(writers: list[ExportWriter]) -> list[ExportResult]:
    """Move every export into place, or none (see ``_replace_all``)."""
    failed = _replace_all(
        [(w.path, functools.partial(w.commit, announce=False)) for w in writers]
    )
    if failed is not None:
        path, exc = failed
        for writer in writers:
            writer.result.in_place = False  # put back: none of them is there
            writer.discard()
        raise ExportError(
            f"cannot replace {path} ({exc.strerror or exc}); no export was "
            "changed. Close any program holding it open, check that this "
            f"account may write it and {path.parent}, and run again"
        ) from exc
    for writer in writers:
        writer.announce()
    return [writer.result for writer in writers]


def _replace_all(
    moves: list[tuple[Path, Callable[[], object]]],
) -> tuple[Path, OSError] | None:
    """Make each move (which puts a new file at its path): all of them, or none.

    Each earlier file is kept under a second name (a hard link, else a copy)
    while the new one replaces it, and put back if a later one cannot be
    replaced (made read-only or immutable, a folder in its place, or held open
    by another program on Windows): the folder never mixes tonight's exports
    with yesterday's, and each name always holds a whole file. Returns the path
    that could not be replaced and why, once the earlier files are back.
    """
    done: list[tuple[Path, Path | None]] = []
    for path, move in moves:
        kept: Path | None = None
        try:
            if path.exists():
                kept = path.with_name(f".{path.name}.{os.getpid()}.old")
                kept.unlink(missing_ok=True)
                try:
                    os.link(path, kept)
                except OSError:
                    shutil.copy2(path, kept)
            move()
        except OSError as exc:
            if kept is not None:  # its name still holds the earlier file
                kept.unlink(missing_ok=True)
            for earlier, old in reversed(done):
                if old is not None:
                    os.replace(old, earlier)
                else:  # nothing was there before it
                    earlier.unlink(missing_ok=True)
            return path, exc
        done.append((path, kept))
    for _, kept in done:
        if kept is not None:
            with contextlib.suppress(OSError):
                kept.unlink()
    return None


def _drop_superseded(job: Job, results: list[ExportResult]) -> None:
    """Newer exports in the output folder supersede a held run's pending ones,
    which ``connector send`` would otherwise send in their place."""
    old = [job.pending_folder / r.path.name for r in results]
    gone = [p for p in old if p.is_file()]
    for path in gone:
        path.unlink()
    if gone:
        log.info(
            "pending exports superseded by this extract, removed: %s",
            ", ".join(str(p) for p in gone),
        )


@contextlib.contextmanager
def _database(
    job: Job, queries: Mapping[str, Query], report: RunReport
) -> Iterator[Source | None]:
    """The database connection, when a data set runs a template."""
    if not queries:
        yield None
        return
    with open_source(job.source, database_password(job)) as source:
        report.server = source.describe()
        yield source


def _fill_file(job: Job, writer: ExportWriter, report: RunReport) -> None:
    """Read, clean and write one data set from its file, every record accounted
    for; the file was looked at already when ``report.sources`` has it."""
    from .files import FileInfo, open_file_source

    name = writer.dataset.name
    known = report.sources.get(name)
    info = (
        FileInfo(Path(known["path"]), known["size"], known["mtime_ns"], known["sha256"])
        if known
        else None
    )
    with open_file_source(job, name, info=info, settle=info is None) as source:
        report.sources[name] = {
            **source.info.as_dict(),
            "mtime_ns": source.info.mtime_ns,
            "layout": source.layout.as_dict(),
        }
        expected = source.count()
        columns, batches = source.stream(None, job.batch_size)
        with contextlib.closing(batches):
            order = column_order(writer.dataset, columns)
            for batch in batches:
                writer.write_batch(order, batch)
    check_accounted(writer.result, expected)


def check_not_empty(job: Job, name: str, rows: int, fetched: int = 0) -> None:
    """An empty students or staff result means something broke: stop, unless the
    data set's ``allow_empty`` says an empty one is expected (as ``run`` does).
    ``fetched`` rows that were all rejected are said to be so."""
    _, allow_empty = job.gate_limits(name)
    if rows or name not in _MUST_HAVE_ROWS or allow_empty:
        return
    if fetched:
        raise ExportError(
            f"data set {name}: all {fetched} rows fetched were rejected; nothing "
            "was written. The run report names each row and the rule it broke"
        )
    if job.file_source(name) is not None:
        raise ExportError(
            f"data set {name}: {job.file_path(name)} holds no records; nothing "
            "was written. Check the file and file_source.header_row"
        )
    raise ExportError(
        f"data set {name}: the query returned no rows; nothing was written. "
        f"Check the template {job.template_path(name)} and its parameters "
        "(school year, dates)"
    )


def fill_export(job: Job, writer: ExportWriter, source: Source, query: Query) -> None:
    """Count, fetch, clean and write one data set; every row must be accounted for."""
    expected = source.count(query) if job.source.count_rows else None
    query = dataclasses.replace(query, key=writer.dataset.key_columns)
    columns, batches = source.stream(query, job.source.batch_size)
    columns, batches = map_result(job, writer.dataset.name, columns, batches)
    # Close the cursor now, while its connection is still open.
    with contextlib.closing(batches):
        order = column_order(writer.dataset, columns)
        for batch in batches:
            writer.write_batch(order, batch)
    check_accounted(writer.result, expected)


def map_result(
    job: Job, name: str, columns: list[str], batches: Batches
) -> tuple[list[str], Batches]:
    """A template's result renamed by ``[datasets.X.map]``, when there is one."""
    entries = job.column_map(name)
    if not entries:
        return columns, batches
    from .mapping import resolve

    plan = resolve(
        f"the query from {job.template_path(name)}",
        job.dataset(name),
        columns,
        entries,
        strict=False,
    )

    def mapped() -> Batches:
        with contextlib.closing(batches):
            for batch in batches:
                yield plan.apply(batch)

    return plan.names, mapped()


def check_accounted(result: ExportResult, expected: int | None) -> None:
    """Rows fetched = written + rejected, and fetched = the template's COUNT(*)."""
    result.expected = expected
    if result.fetched != result.written + result.rejected:
        raise ExportError(
            f"data set {result.dataset}: {result.fetched} rows fetched but "
            f"{result.written} written and {result.rejected} rejected (a bug: "
            "please report it); nothing was written or sent"
        )
    if expected is not None and expected != result.fetched:
        raise ExportError(
            f"data set {result.dataset}: COUNT(*) over the template gives "
            f"{expected} rows but {result.fetched} were fetched; nothing was "
            "written or sent. The driver or the connection lost rows (or the "
            "data changed under a driver without repeatable read): run again, "
            "and see drivers.md if it repeats"
        )


def send(
    job: Job,
    exports: Iterable[Path],
    report: RunReport | None = None,
    *,
    prepared: Prepared | None = None,
    accept_change: bool = False,
    trusted: Iterable[Path] = (),
) -> list[Receipt]:
    """Gate, package, upload and verify each export; returns the receipts.

    Each export must be one of the job's data sets (by file name). The safety gate
    compares all of them with the last verified send first: if any is held and
    ``accept_change`` is false, nothing is sent and ``HeldError`` is raised. Each
    payload is followed by its manifest (unless ``destination.manifest = false``).
    Each verified upload becomes its data set's new baseline; the payload leaves
    the spool only then. An export not among ``trusted`` (written by this process)
    is first checked as strictly as the writer makes it (``check_export``), so a
    file edited by hand is never sent as it is.
    """
    from .destinations import deliver, prepare
    from .gate import StateStore
    from .package import package_export

    report = report if report is not None else RunReport(command="send")
    prepared = prepared if prepared is not None else prepare(job)
    named = _name_exports(job, exports)
    written_here = set(trusted)
    for name, path in named:
        if path not in written_here:
            check_export(job.dataset(name), path)
    receipts = []
    with StateStore(job.state_store) as store:
        diffs = gate(job, store, named, report, accept_change=accept_change)
        for (name, path), diff in zip(named, diffs, strict=True):
            payload = package_export(path, job.spool_folder, prepared.recipient)
            receipt = deliver(prepared, payload, job.upload_log, report.run_id)
            # Counted at once: a later step that fails (the manifest, the
            # gate's record) must not make the summary say it never arrived.
            receipts.append(receipt)
            report.receipts.append(receipt)
            emit(
                "upload_verified",
                dataset=name,
                file=receipt.name,
                size=receipt.size,
                sha256=receipt.sha256,
                verified=receipt.verified,
                attempts=receipt.attempts,
            )
            if prepared.manifest:
                manifest = write_manifest(payload, diff.rows, report.run_id)
                deliver(prepared, manifest, job.upload_log, report.run_id)
                manifest.discard()
            payload.discard()
            store.record(job.dataset(name), path, run_id=report.run_id)
    return receipts


def write_manifest(payload: Payload, rows: int, run_id: str) -> Payload:
    """The manifest that travels after a payload: what it holds, never values."""
    from . import __version__
    from .package import Payload

    path = payload.path.with_name(payload.csv_name + ".manifest.json")
    data = {
        "payload": payload.path.name,
        "payload_size": payload.size,
        "payload_sha256": payload.sha256,
        "format": f"{payload.format}+gzip",
        "key_fingerprint": payload.fingerprint,
        "file": payload.csv_name,
        "file_size": payload.csv_size,
        "file_sha256": payload.csv_sha256,
        "rows": rows,
        "tool_version": __version__,
        "run_id": run_id,
    }
    body = (json.dumps(data, indent=2) + "\n").encode("ascii")
    path.write_bytes(body)
    return Payload(
        path=path,
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        csv_name=payload.csv_name,
        csv_size=payload.csv_size,
        csv_sha256=payload.csv_sha256,
        fingerprint=payload.fingerprint,
        format="manifest",
    )


def _name_exports(job: Job, exports: Iterable[Path]) -> list[tuple[str, Path]]:
    by_file = {job.export_name(name): name for name in job.datasets}
    named = []
    for path in exports:
        if path.is_dir():
            raise ExportError(
                f"export {path} is a folder, not a file; give the export's file"
            )
        if not path.is_file():
            raise ExportError(f"export {path} does not exist; run `connector extract`")
        name = by_file.get(path.name)
        if name is None:
            raise ConfigError(
                f"{path} is not an export of this job; the data sets enabled in "
                f"{job.path} are written as {', '.join(sorted(by_file))}"
            )
        named.append((name, path))
    return named


def gate(
    job: Job,
    store: StateStore,
    named: list[tuple[str, Path]],
    report: RunReport,
    *,
    accept_change: bool = False,
) -> list[Diff]:
    """Compare each export with the last verified send and write the diff reports.

    Raises ``HeldError`` when a data set is held and ``accept_change`` is false.
    """
    diffs = []
    for name, path in named:
        dataset = job.dataset(name)
        max_drop, allow_empty = job.gate_limits(name)
        diff = store.compare(dataset, path, max_drop=max_drop, allow_empty=allow_empty)
        if diff.baseline is None and not diff.held and _sent_before(job, path.name):
            diff.held = True
            diff.reason = (
                f"no baseline in {job.state_store} although {job.upload_log} shows "
                "earlier verified sends (was the state store lost or moved?)"
            )
        diffs.append(diff)
        report.gate.append(diff)
        emit(
            "gate_verdict",
            dataset=name,
            verdict="held"
            if diff.held
            else "first send"
            if diff.baseline is None
            else "ok",
            rows=diff.rows,
            ids=diff.ids,
            added=diff.added,
            removed=diff.removed,
            changed=diff.changed,
            accepted=diff.held and accept_change,
        )
        diff_path = store.write_diff(dataset, path, job.output_folder / diff_name(name))
        if diff.held:
            log.warning("data set %s held: %s (see %s)", name, diff.reason, diff_path)
    held = [d for d in diffs if d.held]
    if held and not accept_change:
        reasons = "; ".join(f"{d.dataset}: {d.reason}" for d in held)
        raise HeldError(
            f"send held by the safety gate ({reasons}); nothing was sent. The "
            f"changes are listed in {job.output_folder / diff_name(held[0].dataset)}. "
            "If they are expected, send with `connector send --accept-change`"
        )
    if held:
        log.warning("held data sets sent anyway: --accept-change was given")
    return diffs


def _sent_before(job: Job, export: str) -> bool:
    """Whether the attempt log shows a verified send of this export's payload."""
    try:
        with job.upload_log.open(encoding="utf-8") as f:
            for line in f:
                if '"verified"' not in line:
                    continue
                entry = json.loads(line)
                file = str(entry.get("file", ""))
                if entry.get("outcome") == "verified" and file.startswith(
                    export + ".gz."
                ):
                    return True
    except (OSError, ValueError):
        return False
    return False


def diff_name(dataset: str) -> str:
    return f"{dataset}-changes.json"


def pending_exports(job: Job) -> list[Path]:
    """Exports a failed ``run`` left unsent in the pending folder."""
    folder = job.pending_folder
    names = [job.export_name(name) for name in job.datasets]
    return [folder / n for n in names if (folder / n).is_file()]


def send_pending(
    job: Job, report: RunReport | None = None, *, accept_change: bool = False
) -> RunReport:
    """Send what a failed or held ``run`` left pending, then publish it."""
    report = report if report is not None else RunReport(command="send")
    exports = pending_exports(job)
    if not exports:
        raise ExportError(
            f"nothing is pending in {job.pending_folder}; run `connector run`, or "
            "name the exports to send"
        )
    send(job, exports, report, accept_change=accept_change)
    _record_sources(job, report.run_id)
    _publish(job, exports, report)
    return report


def _record_sources(job: Job, run_id: str) -> None:
    """After a verified send: the source files the pending exports came from
    become the ones sent (a run refuses to send the same file again)."""
    from .files import SENT_NAME, record_sent

    marker = job.pending_folder / SENT_NAME
    try:
        sources = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); source files not recorded", marker, exc)
        return
    record_sent(job, sources, run_id)
    marker.unlink()


def run(
    job: Job,
    *,
    params: Mapping[str, Any] | None = None,
    report: RunReport | None = None,
    accept_change: bool = False,
    force: bool = False,
    wait: float | None = None,
) -> RunReport:
    """The nightly job: extract to the pending folder, gate, send, then publish.

    A data set read from a file is first checked to be fresh (``files.check_fresh``:
    there, no longer being written, not older than ``max_age``, not the file sent
    last time); ``force`` sends an old or already sent file anyway; ``wait``
    seconds are spent waiting for a fresh one. The run report is written into the
    output folder whatever the outcome.
    """
    report = report if report is not None else RunReport(command="run")
    try:
        _run(job, params, report, accept_change, force=force, wait=wait)
    except ConnectorError as exc:
        report.outcome = "held" if isinstance(exc, HeldError) else "failed"
        report.error = str(exc)
        raise
    except Exception as exc:
        report.outcome = "failed"
        report.error = f"unexpected {type(exc).__name__}: {redact(str(exc))}"
        raise
    finally:
        if report.outcome == "running":
            report.outcome = "failed"
            report.error = "interrupted"
        with contextlib.suppress(OSError):
            report.write(job.output_folder)
    return report


def _run(
    job: Job,
    params: Mapping[str, Any] | None,
    report: RunReport,
    accept_change: bool,
    *,
    force: bool = False,
    wait: float | None = None,
) -> None:
    from .destinations import prepare
    from .files import SENT_NAME, check_fresh, write_sources

    prepared = prepare(job)
    fresh = check_fresh(job, list(job.datasets), force=force, wait=wait)
    for name, info in fresh.items():
        report.sources[name] = {**info.as_dict(), "mtime_ns": info.mtime_ns}
    pending = job.pending_folder
    pending.mkdir(mode=0o700, parents=True, exist_ok=True)
    results = extract(
        job, params=params, folder=pending, report=report, allow_empty=True
    )
    # What the pending exports were read from, for `connector send` to record.
    (pending / SENT_NAME).unlink(missing_ok=True)
    if report.sources:
        write_sources(pending / SENT_NAME, report.sources)
    try:
        send(
            job,
            [r.path for r in results],
            report,
            prepared=prepared,
            accept_change=accept_change,
            trusted=[r.path for r in results],
        )
    except ConnectorError as exc:
        raise type(exc)(
            f"{exc} (today's exports are kept in {pending}; `connector send` sends "
            f"them; the files in {job.output_folder} are still the last ones sent)",
            exit_code=exc.exit_code,
        ) from exc

    _record_sources(job, report.run_id)
    for result in results:
        result.in_place = False  # they leave the pending folder, sent
    published = _publish(job, [r.path for r in results], report)
    for result, path in zip(results, published, strict=True):
        result.path = path
        result.in_place = job.settings.output.keep_sent  # else deleted once sent
    report.outcome = "sent"


def _publish(job: Job, exports: list[Path], report: RunReport) -> list[Path]:
    """Put verified exports from the pending folder into the output folder: all
    of them, or none (``_replace_all``).

    With ``[output] keep_sent = false`` the plaintext exports are deleted instead,
    and the output folder keeps only the reports. Either way the exports leave
    the pending folder, as they were sent: when the output folder cannot take
    them, ``PublishError`` says that the send itself is done.
    """
    output = job.output_folder
    keep = job.settings.output.keep_sent
    finals = [output / path.name for path in exports]
    failed = _replace_all(
        [
            (
                final,
                functools.partial(_put, path, final)
                if keep
                else functools.partial(final.unlink, missing_ok=True),
            )
            for path, final in zip(exports, finals, strict=True)
        ]
    )
    for path in exports:
        path.unlink(missing_ok=True)
    marker = job.state_folder / UNPUBLISHED_NAME
    if failed is None:
        marker.unlink(missing_ok=True)
        return finals
    _note_unpublished(marker, finals, report.run_id)
    path, exc = failed
    count = len(report.receipts)
    uploads = f"{count} upload{'s were' if count != 1 else ' was'}"
    verb, done, then = (
        (
            "replace",
            "changed (it keeps those of the previous send)",
            "puts its exports there",
        )
        if keep
        else ("remove", "removed", "removes them")
    )
    raise PublishError(
        f"the send is done: {uploads} delivered and verified, and recorded as "
        f"sent; only the output folder could not be updated: cannot {verb} {path} "
        f"({exc.strerror or exc}), so no export in {output} was {done}. Nothing "
        f"needs to be sent again: close any program holding {path.name} open and "
        f"check that this account may write it and {output}; the next run {then}"
    ) from exc


def _note_unpublished(marker: Path, finals: list[Path], run_id: str) -> None:
    """Note the exports the output folder kept, each as it is now: older than
    those sent, ``connector send`` must not send them again as they are."""
    kept = {p.name: seen for p in finals if (seen := _file_identity(p)) is not None}
    with contextlib.suppress(OSError):
        write_json(marker, {"run_id": run_id, "kept": kept})


def _file_identity(path: Path) -> list[int] | None:
    """The file at ``path`` as it is now (inode, modified time, size); None when
    no file is there."""
    try:
        seen = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(seen.st_mode):
        return None
    return [seen.st_ino, seen.st_mtime_ns, seen.st_size]


def check_not_unpublished(job: Job, exports: Iterable[Path]) -> None:
    """Refuse exports the output folder kept when a later verified send could
    not replace them (``_publish``): sending them would undo that send."""
    try:
        noted = json.loads((job.state_folder / UNPUBLISHED_NAME).read_text())
        kept, run_id = dict(noted["kept"]), str(noted["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    old = [p for p in exports if p.name in kept and kept[p.name] == _file_identity(p)]
    if old:
        raise ExportError(
            f"{', '.join(str(p) for p in old)}: older than the last verified send "
            f"(run {run_id} sent newer exports but could not put them there); "
            "nothing was sent. The next `connector run` writes new ones; name "
            "the files to send these anyway"
        )


def _put(source: Path, final: Path) -> None:
    """Copy ``source`` over ``final`` by way of a file beside it (never left)."""
    staging = final.with_name(f".{final.name}.publish")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staging)
        staging.chmod(0o600)  # student records: the owner only
        os.replace(staging, final)
    finally:
        with contextlib.suppress(OSError):
            staging.unlink(missing_ok=True)
