"""The DBA's check: connect, run each template on a few rows, check its columns."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import Job
from .csvout import column_order, shape_batch, ssn_error
from .database import ServerInfo, open_source
from .datasets import Kind
from .errors import ConnectorError
from .fields import FIXES, looks_like_ssn
from .pipeline import (
    check_not_empty,
    database_password,
    job_params,
    map_result,
    render_all,
    selected,
)


@dataclass
class DataSetCheck:
    name: str
    verdict: str = "ok"
    is_ok: bool = True
    preview: list[tuple[str, ...]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    """For a file: what was read and how, and the config lines that pin it."""


@dataclass
class CheckOutcome:
    server: ServerInfo | None
    datasets: list[DataSetCheck]
    destination: DataSetCheck = field(
        default_factory=lambda: DataSetCheck("destination", "not checked")
    )

    @property
    def is_ok(self) -> bool:
        return self.destination.is_ok and all(d.is_ok for d in self.datasets)


def check_destination(job: Job) -> DataSetCheck:
    """Prepare the destination as a send would (secrets, certificate, pin), sending
    nothing and connecting to nothing."""
    from .destinations import prepare

    check = DataSetCheck("destination")
    if job.settings.destination is None:
        check.verdict = "none configured ([destination] is needed to send)"
        return check
    try:
        prepared = prepare(job)
    except ConnectorError as exc:
        check.is_ok = False
        check.verdict = f"FAILED: {exc}"
        return check
    folder = job.destination_path(job.settings.destination.path)
    if job.settings.destination.kind == "folder" and folder and not folder.is_dir():
        check.is_ok = False
        check.verdict = (
            f"FAILED: destination.path: no folder at {folder}; create it (or mount "
            "the share) before the nightly run"
        )
        return check
    recipient = prepared.recipient
    check.verdict = (
        f"ok ({prepared.destination.where}; secrets found; {recipient.format} "
        f"recipient {recipient.fingerprint}; nothing sent)"
    )
    return check


def check_job(
    job: Job,
    *,
    names: Iterable[str] | None = None,
    params: Mapping[str, Any] | None = None,
    rows: int = 5,
) -> CheckOutcome:
    """Run every template with a small fetch and report per data set.

    A connection failure raises; a template or query failure is reported against
    its data set so one bad template does not hide the others.
    """
    chosen = selected(job, names)
    merged = job_params(job, params, chosen)
    destination = check_destination(job)
    checks: list[DataSetCheck] = []
    needs_database = any(job.file_source(n) is None for n in chosen)
    password = database_password(job) if needs_database else None
    with contextlib.ExitStack() as connection:
        source = (
            connection.enter_context(open_source(job.source, password))
            if needs_database
            else None
        )
        server = None if source is None else source.describe()
        for name in chosen:
            if source is not None and checks and not checks[-1].is_ok:
                # A failed query can leave the transaction aborted (PostgreSQL):
                # the next data set's check starts on a fresh connection.
                connection.close()
                source = connection.enter_context(open_source(job.source, password))
            check = DataSetCheck(name)
            checks.append(check)
            try:
                dataset = job.dataset(name)
                found = ""
                if job.file_source(name) is not None:
                    columns, first, records = _read_file(job, name, rows, check)
                    found = f", {records} record(s) in the file"
                else:
                    assert source is not None
                    query = render_all(job, [name], merged)[name]
                    columns, batches = source.stream(query, rows)
                    columns, batches = map_result(job, name, columns, batches)
                    with contextlib.closing(batches):
                        first = next(batches, [])
                order = column_order(dataset, columns)
                check_not_empty(job, name, len(first))
                check.preview, changes = shape_batch(dataset, order, first, job.zone)
                for number, row in enumerate(check.preview, start=1):
                    for column, value in zip(dataset.columns, row, strict=True):
                        if column.kind is not Kind.PHONE and looks_like_ssn(
                            value, column.kind
                        ):
                            raise ssn_error(dataset, column, number, row[0])
                issues = Counter(
                    f"{column}:{rule}{'' if rule in FIXES else ' (left empty)'}"
                    for _, column, rule in changes
                )
                noted = ", ".join(f"{k} {v}" for k, v in sorted(issues.items()))
                check.verdict = (
                    f"ok: columns match{found}, {len(first)} row(s) fetched"
                    + (f"; cleaned: {noted}" if noted else "")
                )
            except ConnectorError as exc:
                check.is_ok = False
                check.verdict = f"FAILED: {exc}"
    return CheckOutcome(server=server, datasets=checks, destination=destination)


def _read_file(
    job: Job, name: str, rows: int, check: DataSetCheck
) -> tuple[list[str], list[tuple[Any, ...]], int]:
    """A file's first rows, mapped, and its record count; what was detected goes
    into ``check.details`` so that the DBA can pin it."""
    from .files import describe_file, open_file_source

    with open_file_source(job, name, settle=False) as source:
        check.details = describe_file(source)
        return source.plan.names, source.preview(rows), source.count()
