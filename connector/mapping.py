"""Take a data set's columns from a source's columns, as the config maps them.

A mapping (``[datasets.X.map]``) names, for each data set column, the source column
it comes from, by header name or by position, or gives a constant. It is set once
and reused every day, so the one thing it must never do is quietly take a value
from the wrong column: a source whose columns no longer match the mapping (one
renamed, added, removed or moved under a mapping by position) stops the run with a
message naming those columns.

Headers are compared without surrounding spaces and without regard to case.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import MapEntry
from .datasets import DataSet
from .errors import ExportError


def fold(name: str) -> str:
    return name.strip().casefold()


@dataclass(frozen=True)
class Pick:
    """Where one data set column's value comes from in a source row."""

    name: str
    index: int | None
    constant: str | None = None
    default: str | None = None


@dataclass(frozen=True)
class Plan:
    """A resolved mapping: for each of the data set's query columns, its pick."""

    picks: tuple[Pick, ...]
    unused: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.picks]

    def apply(self, batch: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        picks = self.picks
        rows = []
        for row in batch:
            values = []
            for pick in picks:
                value = pick.constant if pick.index is None else row[pick.index]
                if pick.default is not None and (
                    value is None or (isinstance(value, str) and not value.strip())
                ):
                    value = pick.default
                values.append(value)
            rows.append(tuple(values))
        return rows

    def stream(
        self, batches: Iterator[list[tuple[Any, ...]]]
    ) -> Iterator[list[tuple[Any, ...]]]:
        for batch in batches:
            yield self.apply(batch)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def check_pinned(
    where: str,
    dataset: DataSet,
    header: Sequence[str],
    pinned: Sequence[str],
    *,
    in_order: bool,
) -> None:
    """The file's header must still be the one pinned in ``file_source.columns``.

    ``in_order`` (a mapping by position): the same columns in the same order;
    otherwise the same columns in any order.
    """
    have = [fold(h) for h in header]
    want = [fold(p) for p in pinned]
    if have == want or (not in_order and sorted(have) == sorted(want)):
        return
    problems = []
    missing = [p for p in pinned if fold(p) not in have]
    extra = [h for h in header if fold(h) not in want]
    if missing:
        problems.append(f"missing {_quoted(missing)}")
    if extra:
        problems.append(f"not expected {_quoted(extra)}")
    if len(set(have)) != len(have):
        problems.append("a column name appears twice")
    if not problems:
        moved = [
            f"{header[i]!r} is column {i + 1} (pinned: {want.index(h) + 1})"
            for i, h in enumerate(have)
            if want.index(h) != i
        ]
        problems.append("in another order: " + "; ".join(moved))
    raise ExportError(
        f"data set {dataset.name}: the columns of {where} no longer match "
        f"datasets.{dataset.name}.file_source.columns ({'; '.join(problems)}); "
        "nothing was written or sent. If the export changed on purpose, update "
        f"file_source.columns and datasets.{dataset.name}.map (`connector test` "
        "shows the file's columns)"
    )


def resolve(
    where: str,
    dataset: DataSet,
    columns: Sequence[str],
    entries: Mapping[str, MapEntry],
    *,
    strict: bool,
) -> Plan:
    """Resolve ``entries`` against a source's ``columns`` (header names).

    A data set column without an entry is taken from the source column of its own
    query name or header. ``strict`` (no mapping given): the source must hold
    exactly the data set's columns; otherwise source columns that nothing takes
    are left out (``Plan.unused``).
    """
    position: dict[str, int] = {}
    twice = []
    for i, name in enumerate(columns):
        if fold(name) in position:
            twice.append(name)
        position[fold(name)] = i
    picks = []
    missing = []
    used: set[int] = set()
    for column in dataset.columns:
        if not column.is_selected:
            continue
        entry = entries.get(column.name)
        if entry is not None and entry.value is not None:
            picks.append(Pick(column.name, None, constant=entry.value))
            continue
        index, label = _locate(column.name, column.header, entry, position, columns)
        if index is None:
            missing.append(label)
            continue
        used.add(index)
        default = None if entry is None else entry.default
        picks.append(Pick(column.name, index, default=default))
    unused = tuple(c for i, c in enumerate(columns) if i not in used)
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if strict and unused:
        problems.append(f"not expected {_quoted(unused)}")
    if twice and (strict or any(fold(t) in _wanted(entries, dataset) for t in twice)):
        problems.append(f"{_quoted(twice)} appears twice")
    if problems:
        hint = (
            f"map the source's columns in datasets.{dataset.name}.map, or rename them"
            if strict
            else f"if the source changed on purpose, update datasets.{dataset.name}.map"
        )
        if missing:
            hint += (
                "; a column the source does not have at all is mapped to a "
                'constant, such as email = { value = "" }'
            )
        raise ExportError(
            f"data set {dataset.name}: the columns of {where} do not match "
            f"{'the data set' if strict else 'the mapping'} ({'; '.join(problems)})"
            f"; nothing was written or sent. The source has: {_quoted(columns)}; "
            f"{hint}"
        )
    return Plan(tuple(picks), unused)


def _locate(
    name: str,
    header: str,
    entry: MapEntry | None,
    position: Mapping[str, int],
    columns: Sequence[str],
) -> tuple[int | None, str]:
    """Where a data set column is among the source's columns, or None and how to
    name what is missing."""
    if entry is None:
        found = position.get(fold(name), position.get(fold(header)))
        return found, repr(header)
    if isinstance(entry.column, int):
        found = entry.column - 1 if entry.column <= len(columns) else None
        return found, f"column {entry.column} (for {name})"
    return position.get(fold(str(entry.column))), f"{entry.column!r} (for {name})"


def _wanted(entries: Mapping[str, MapEntry], dataset: DataSet) -> set[str]:
    names = {fold(str(e.column)) for e in entries.values() if e.column is not None}
    for column in dataset.columns:
        if column.name not in entries:
            names |= {fold(column.name), fold(column.header)}
    return names
