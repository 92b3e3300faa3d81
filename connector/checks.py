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
    render_all,
    selected,
)


@dataclass
class DataSetCheck:
    name: str
    verdict: str = "ok"
    is_ok: bool = True
    preview: list[tuple[str, ...]] = field(default_factory=list)


@dataclass
class CheckOutcome:
    server: ServerInfo
    datasets: list[DataSetCheck]

    @property
    def is_ok(self) -> bool:
        return all(d.is_ok for d in self.datasets)


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
    password = database_password(job)
    checks: list[DataSetCheck] = []
    with open_source(job.source, password) as source:
        server = source.describe()
        for name in chosen:
            check = DataSetCheck(name)
            checks.append(check)
            try:
                query = render_all(job, [name], merged)[name]
                dataset = job.dataset(name)
                columns, batches = source.stream(query, rows)
                with contextlib.closing(batches):
                    order = column_order(dataset, columns)
                    first = next(batches, [])
                check_not_empty(job, name, len(first))
                check.preview, changes = shape_batch(dataset, order, first, job.zone)
                for number, row in enumerate(check.preview, start=1):
                    for column, value in zip(dataset.columns, row, strict=True):
                        if column.kind is not Kind.PHONE and looks_like_ssn(
                            value, column.kind
                        ):
                            raise ssn_error(dataset, column, number)
                issues = Counter(
                    f"{column}:{rule}{'' if rule in FIXES else ' (left empty)'}"
                    for _, column, rule in changes
                )
                noted = ", ".join(f"{k} {v}" for k, v in sorted(issues.items()))
                check.verdict = f"ok: columns match, {len(first)} row(s) fetched" + (
                    f"; cleaned: {noted}" if noted else ""
                )
            except ConnectorError as exc:
                check.is_ok = False
                check.verdict = f"FAILED: {exc}"
    return CheckOutcome(server=server, datasets=checks)
