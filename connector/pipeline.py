"""The job's stages joined: extract the data sets, then package, upload and verify.

``extract`` writes every enabled data set or none: each export goes to a temporary
file and all are renamed into place only when every query has succeeded. ``run``
extracts into the pending folder, sends, and moves the exports into the output
folder only once every upload is verified, so the output folder always holds the
last exports the receiver confirmed.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Job
from .csvout import ExportResult, ExportWriter, column_order, shape_batch
from .database import ServerInfo, open_source
from .datasets import DATASETS
from .errors import ConfigError, ConnectorError, ExportError
from .secrets import get_secret
from .templates import ParamStyle, Query, render_query

log = logging.getLogger(__name__)

# Data sets whose empty result means something broke, never "nobody today".
_MUST_HAVE_ROWS = ("students", "staff")


@dataclass
class RunReport:
    """What a run did, for the summary on stdout; counts and hashes only."""

    server: ServerInfo | None = None
    exports: list[ExportResult] = field(default_factory=list)
    receipts: list[Any] = field(default_factory=list)


def job_params(job: Job, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
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
    queries = render_all(job, chosen, job_params(job, params))
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
                if result.rows == 0 and name in _MUST_HAVE_ROWS:
                    raise ExportError(
                        f"data set {name}: the query returned no rows; nothing was "
                        f"written. Check the template {job.template_path(name)} and "
                        "its parameters (school year, dates)"
                    )
        _check_ids_apart(writers)
    except BaseException:
        for writer in writers:
            writer.discard()
        raise

    results = [writer.commit() for writer in writers]
    report.exports.extend(results)
    return results


def _fill(writer: ExportWriter, stream: tuple[list[str], Iterable[Any]]) -> None:
    columns, batches = stream
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


def send(
    job: Job, exports: Iterable[Path], report: RunReport | None = None
) -> list[Any]:
    """Package, upload and verify each export; returns the receivers' receipts."""
    from .package import package_export
    from .upload import UploadTarget, upload_payload

    report = report if report is not None else RunReport()
    destination = job.settings.destination
    if destination is None:
        raise ConfigError(f"{job.path}: [destination] is missing; nothing to send to")
    token = None
    if destination.token_secret:
        token = get_secret(destination.token_secret, folder=job.secrets_folder)
    target = UploadTarget(
        url=destination.url,
        token=token,
        ca_file=job.destination_path(destination.ca_file),
        attempts=destination.attempts,
        timeout=destination.timeout,
        backoff=destination.backoff,
    )
    cert = job.resolve(destination.recipient_cert)
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


def run(
    job: Job,
    *,
    params: Mapping[str, Any] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """The nightly job: extract to the pending folder, send, then publish."""
    report = report if report is not None else RunReport()
    if job.settings.destination is None:
        raise ConfigError(f"{job.path}: [destination] is missing; `run` needs one")
    pending = job.pending_folder
    pending.mkdir(parents=True, exist_ok=True)
    results = extract(job, params=params, folder=pending, report=report)
    try:
        send(job, [r.path for r in results], report)
    except ConnectorError as exc:
        raise type(exc)(
            f"{exc} (today's exports are kept in {pending}; the files in "
            f"{job.output_folder} are still the last ones sent)",
            exit_code=exc.exit_code,
        ) from exc

    output = job.output_folder
    output.mkdir(parents=True, exist_ok=True)
    for result in results:
        final = output / result.path.name
        shutil.copyfile(result.path, final.with_name(f".{final.name}.publish"))
        os.replace(final.with_name(f".{final.name}.publish"), final)
        result.path.unlink()
        result.path = final
    return report
