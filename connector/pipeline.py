"""The job's stages joined: extract the data sets, then package, upload and verify.

``extract`` writes every enabled data set or none: each export goes to a temporary
file and all are renamed into place only when every query has succeeded. ``run``
extracts into the pending folder, sends, and moves the exports into the output
folder only once every upload is verified, so the output folder always holds the
last exports the receiver confirmed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Job
from .csvout import ExportResult, ExportWriter, column_order, shape_batch
from .database import Batches, ServerInfo, open_source
from .datasets import DATASETS
from .errors import ConfigError, ConnectorError, ExportError
from .secrets import get_secret
from .templates import ParamStyle, Query, render_query, template_names

if TYPE_CHECKING:
    from .upload import Receipt, UploadTarget

log = logging.getLogger(__name__)

# Data sets whose empty result means something broke, never "nobody today".
_MUST_HAVE_ROWS = ("students", "staff")


@dataclass
class RunReport:
    """What a run did, for the summary on stdout; counts and hashes only."""

    server: ServerInfo | None = None
    exports: list[ExportResult] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)


def job_params(
    job: Job, overrides: Mapping[str, Any] | None = None, names: Iterable[str] = ()
) -> dict[str, Any]:
    """The config's [params] with ``--param`` overrides, each of which a template
    among ``names`` must use: a misspelt override would silently widen the export.
    """
    if overrides:
        used = set().union(*(template_names(job.template_path(n)) for n in names))
        unused = sorted(set(overrides) - used)
        if unused:
            raise ConfigError(
                f"--param {', '.join(unused)}: no template uses it; the templates "
                f"use: {', '.join(sorted(used)) or 'nothing'}"
            )
    params: dict[str, Any] = dict(job.settings.params)
    params.update(overrides or {})
    return params


def render_all(
    job: Job, names: Iterable[str], params: Mapping[str, Any]
) -> dict[str, Query]:
    """Render every template before connecting, so a typo costs no database time."""
    style: ParamStyle = "named" if job.source.url else "qmark"
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
    return chosen


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
) -> list[ExportResult]:
    """Write the exports of ``names`` (default: every enabled data set) to ``folder``.

    All or nothing: on any error no file in ``folder`` changes.
    """
    report = report if report is not None else RunReport()
    chosen = selected(job, names)
    queries = render_all(job, chosen, job_params(job, params, chosen))
    password = database_password(job)
    target = folder or job.output_folder
    writers: list[ExportWriter] = []
    try:
        with open_source(job.source, password) as source:
            report.server = source.describe()
            for name in chosen:
                writer = ExportWriter(DATASETS[name], target / job.export_name(name))
                writers.append(writer)
                _fill(writer, source.stream(queries[name], job.source.batch_size))
                result = writer.finish()
                log.info("data set %s: %d rows fetched", name, result.rows)
                check_not_empty(job, name, result.rows)
        _check_ids_apart(writers)
    except BaseException:
        for writer in writers:
            writer.discard()
        raise

    results = [writer.commit() for writer in writers]
    report.exports.extend(results)
    return results


def check_not_empty(job: Job, name: str, rows: int) -> None:
    """An empty students or staff result means something broke: stop."""
    if rows == 0 and name in _MUST_HAVE_ROWS:
        raise ExportError(
            f"data set {name}: the query returned no rows; nothing was written. "
            f"Check the template {job.template_path(name)} and its parameters "
            "(school year, dates)"
        )


def _fill(writer: ExportWriter, stream: tuple[list[str], Batches]) -> None:
    columns, batches = stream
    # Close the cursor now, while its connection is still open.
    with contextlib.closing(batches):
        order = column_order(writer.dataset, columns)
        for batch in batches:
            writer.write_rows(
                shape_batch(writer.dataset, order, batch, writer.result.issues)
            )


def _check_ids_apart(writers: list[ExportWriter]) -> None:
    by_name = {w.dataset.name: w for w in writers}
    if "students" in by_name and "staff" in by_name:
        shared = by_name["students"].ids & by_name["staff"].ids
        if shared:
            raise ExportError(
                f"data set staff: {len(shared)} staff IDs equal student IDs; the "
                "service would merge those people. Prefix staff IDs in the staff "
                "template (for example 'T' || staff_id)"
            )


def upload_target(job: Job) -> UploadTarget:
    """The destination with its token, and the recipient certificate checked.

    Called before any extract, so a missing secret or a bad certificate costs no
    database time.
    """
    from .package import load_recipient
    from .upload import UploadTarget

    destination = job.settings.destination
    if destination is None:
        raise ConfigError(f"{job.path}: [destination] is missing; nothing to send to")
    token = None
    if destination.token_secret:
        token = get_secret(destination.token_secret, folder=job.secrets_folder)
    load_recipient(job.resolve(destination.recipient_cert))
    return UploadTarget(
        url=destination.url,
        token=token,
        ca_file=job.destination_path(destination.ca_file),
        attempts=destination.attempts,
        timeout=destination.timeout,
        backoff=destination.backoff,
    )


def send(
    job: Job,
    exports: Iterable[Path],
    report: RunReport | None = None,
    *,
    target: UploadTarget | None = None,
) -> list[Receipt]:
    """Package, upload and verify each export; returns the receivers' receipts."""
    from .package import package_export
    from .upload import upload_payload

    report = report if report is not None else RunReport()
    target = target if target is not None else upload_target(job)
    assert job.settings.destination is not None
    cert = job.resolve(job.settings.destination.recipient_cert)
    receipts = []
    for path in exports:
        if not path.is_file():
            raise ExportError(f"export {path} does not exist; run `connector extract`")
        payload = package_export(path, job.spool_folder, cert)
        receipt = upload_payload(payload, target, job.upload_log)
        # Verified: the spooled payload has done its job.
        payload.path.unlink(missing_ok=True)
        receipts.append(receipt)
        report.receipts.append(receipt)
    return receipts


def pending_exports(job: Job) -> list[Path]:
    """Exports a failed ``run`` left unsent in the pending folder."""
    folder = job.pending_folder
    names = [job.export_name(name) for name in job.datasets]
    return [folder / n for n in names if (folder / n).is_file()]


def send_pending(job: Job, report: RunReport | None = None) -> RunReport:
    """Send what a failed ``run`` left pending, then publish it to the output folder."""
    report = report if report is not None else RunReport()
    exports = pending_exports(job)
    if not exports:
        raise ExportError(
            f"nothing is pending in {job.pending_folder}; run `connector run`, or "
            "name the exports to send"
        )
    send(job, exports, report)
    _publish(job, exports)
    return report


def run(
    job: Job,
    *,
    params: Mapping[str, Any] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """The nightly job: extract to the pending folder, send, then publish."""
    report = report if report is not None else RunReport()
    target = upload_target(job)
    pending = job.pending_folder
    pending.mkdir(parents=True, exist_ok=True)
    results = extract(job, params=params, folder=pending, report=report)
    try:
        send(job, [r.path for r in results], report, target=target)
    except ConnectorError as exc:
        raise type(exc)(
            f"{exc} (today's exports are kept in {pending}; `connector send` sends "
            f"them; the files in {job.output_folder} are still the last ones sent)",
            exit_code=exc.exit_code,
        ) from exc

    published = _publish(job, [r.path for r in results])
    for result, path in zip(results, published, strict=True):
        result.path = path
    return report


def _publish(job: Job, exports: list[Path]) -> list[Path]:
    """Move verified exports from the pending folder into the output folder."""
    output = job.output_folder
    output.mkdir(parents=True, exist_ok=True)
    published = []
    for path in exports:
        final = output / path.name
        staging = final.with_name(f".{final.name}.publish")
        shutil.copyfile(path, staging)
        os.replace(staging, final)
        path.unlink()
        published.append(final)
    return published
