"""Write a data set as a strict CSV export.

Every field in double quotes, CR LF after each record and nowhere else, ASCII only,
the columns in the data set's declared order under its header. A file is written
under a temporary name in its target folder and only renamed into place by
``commit()``, so a failed run leaves yesterday's export as it was.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .datasets import DataSet
from .errors import ExportError
from .fields import clean_column

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """What one data set's export holds; counts only, never values."""

    dataset: str
    path: Path
    rows: int = 0
    size: int = 0
    sha256: str = ""
    issues: Counter[str] = field(default_factory=Counter)


def column_order(dataset: DataSet, columns: Sequence[str]) -> list[int]:
    """Positions of the data set's columns in a query's columns, or ``ExportError``."""
    position = {name.lower(): i for i, name in enumerate(columns)}
    missing = [c for c in dataset.column_names if c not in position]
    extra = [c for c in columns if c.lower() not in dataset.column_names]
    if missing or extra or len(position) != len(columns):
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected {', '.join(extra)}")
        if len(position) != len(columns):
            problems.append("a column name appears twice")
        raise ExportError(
            f"data set {dataset.name}: the query's columns do not match "
            f"({'; '.join(problems)}); it must select exactly "
            f"{', '.join(dataset.column_names)}"
        )
    return [position[c] for c in dataset.column_names]


def shape_batch(
    dataset: DataSet,
    order: Sequence[int],
    batch: Sequence[Sequence[Any]],
    issues: Counter[str],
) -> list[tuple[str, ...]]:
    """Clean a batch column by column and return it as rows in declared order."""
    if not batch:
        return []
    by_column = list(zip(*batch, strict=True))
    cleaned = [
        clean_column(by_column[i], column, issues)
        for i, column in zip(order, dataset.columns, strict=True)
    ]
    return list(zip(*cleaned, strict=True))


class ExportWriter:
    """Write one export to a temporary file; ``commit()`` renames it into place."""

    def __init__(self, dataset: DataSet, path: Path) -> None:
        self.dataset = dataset
        self.path = path
        self.result = ExportResult(dataset=dataset.name, path=path)
        self._ids: set[str] = set()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
        self._tmp = Path(tmp)
        self._file: IO[str] = os.fdopen(fd, "w", encoding="ascii", newline="")
        self._writer = csv.writer(
            self._file, quoting=csv.QUOTE_ALL, lineterminator="\r\n", doublequote=True
        )
        self._writer.writerow(dataset.headers)

    def write_rows(self, rows: Iterable[tuple[str, ...]]) -> None:
        required = [i for i, c in enumerate(self.dataset.columns) if c.is_required]
        check_ids = self.dataset.name != "attendance"
        for row in rows:
            self.result.rows += 1
            for i in required:
                if not row[i]:
                    column = self.dataset.columns[i]
                    raise ExportError(
                        f"data set {self.dataset.name}, row {self.result.rows}, "
                        f"column {column.name}: required but empty after "
                        f"cleaning ({column.kind} value NULL, blank or unusable); "
                        "fix the source record or the template"
                    )
            if check_ids:
                key = row[0]
                if key in self._ids:
                    raise ExportError(
                        f"data set {self.dataset.name}, row {self.result.rows}: "
                        f"{self.dataset.id_column.name} repeats an earlier row's ID; "
                        "IDs must be unique, fix the template so each record "
                        "appears once"
                    )
                self._ids.add(key)
            try:
                self._writer.writerow(row)
            except UnicodeEncodeError:
                raise ExportError(
                    f"data set {self.dataset.name}, row {self.result.rows}: a value "
                    "is not ASCII after cleaning (a bug: please report it)"
                ) from None

    @property
    def ids(self) -> set[str]:
        return self._ids

    def finish(self) -> ExportResult:
        """Flush and hash the temporary file; the target is not touched yet."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = hashlib.sha256()
        with self._tmp.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        self.result.size = self._tmp.stat().st_size
        self.result.sha256 = digest.hexdigest()
        return self.result

    def commit(self) -> ExportResult:
        os.replace(self._tmp, self.path)
        log.info(
            "export %s written: %d rows, %d bytes, sha256 %s",
            self.path.name,
            self.result.rows,
            self.result.size,
            self.result.sha256[:16],
        )
        return self.result

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)
