"""The IDs an export has written, each with its row number, held compactly.

The writer keeps every student ID it writes: to find a repeated ID, then to check
each attendance row's student and each staff ID against them. A Python dict of
300,000 IDs takes about 35 MB; here they are Arrow arrays, about 12 bytes an ID
(4 MB). Lookups come in two steps, both in bulk: ``focus`` takes a batch's IDs
and finds those already held (one Arrow set lookup over the held IDs), after
which ``in`` for that batch's IDs is a set lookup. A row number (``[]``, for an
error message) and a lookup outside the focus scan the arrays: right, only slow.
Each array's smallest and largest ID are kept, and an array whose range misses
the IDs asked for is not scanned: IDs that come in order (a template with ORDER
BY) are looked up against the few arrays they may be in, not every ID held.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

# The chunks of IDs are joined into one when there are more than this many.
MAX_CHUNKS = 32


class IdIndex(Mapping[str, int]):
    """IDs and their row numbers: appended in bulk or one by one, looked up in bulk."""

    def __init__(self, items: Mapping[str, int] | None = None) -> None:
        self._keys: list[pa.Array] = []
        self._rows: list[pa.Array] = []
        # Each of _keys' smallest and largest ID.
        self._bounds: list[tuple[str, str]] = []
        self._held = 0
        self._pending: dict[str, int] = {}
        self._asking: pa.Array | None = None
        self._asked: frozenset[str] | None = None
        self._found: frozenset[str] = frozenset()
        self._all_found = False
        if items:
            self.extend(list(items), list(items.values()))

    def __len__(self) -> int:
        return self._held + len(self._pending)

    def __iter__(self) -> Iterator[str]:
        for chunk in self._keys:
            yield from chunk.to_pylist()
        yield from self._pending

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if key in self._pending:
            return True
        focused = self._focused(key)
        return self._scan(key) is not None if focused is None else focused

    def __getitem__(self, key: str) -> int:
        row = self._pending.get(key)
        if row is None and self._focused(key) is not False:
            row = self._scan(key)
        if row is None:
            raise KeyError(key)
        return row

    def items(self) -> Iterator[tuple[str, int]]:  # type: ignore[override]
        for keys, rows in zip(self._keys, self._rows, strict=True):
            yield from zip(keys.to_pylist(), rows.to_pylist(), strict=True)
        yield from self._pending.items()

    def add(self, key: str, row: int) -> None:
        """Hold one ID (a row judged on its own); it becomes part of a chunk at
        the next ``focus`` or ``extend``."""
        self._pending[key] = row

    def extend(
        self, keys: pa.Array | Sequence[str], rows: pa.Array | Iterable[int]
    ) -> None:
        """Hold many IDs at once; none of them may be held already. Ends the
        focus: later lookups scan until the next ``focus``."""
        self._asking, self._asked = None, None
        if not len(keys):
            return
        self._flush()
        array = pa.array(keys, pa.string())
        self._keys.append(array)
        self._rows.append(pa.array(rows, pa.int64()))
        self._bounds.append(_bounds(array))
        self._held += len(keys)
        self._compact()

    def focus(self, keys: pa.Array) -> int:
        """Find which of ``keys`` (distinct, no nulls) are held, and return how
        many; later lookups of these keys need no scan (but a row number, asked
        for an error message, does)."""
        self._flush()
        self._asking, self._asked, self._found = keys, None, frozenset()
        self._all_found = False
        hits = 0
        low, high = _bounds(keys) if len(keys) else ("", "")
        chunks = [
            chunk
            for chunk, (first, last) in zip(self._keys, self._bounds, strict=True)
            if first <= high and low <= last
        ]
        if len(keys) and chunks:
            held = pa.chunked_array(chunks, pa.string())
            mask = pc.is_in(held, value_set=keys)
            hits = pc.sum(mask).as_py() or 0
            if hits == len(keys):
                self._all_found = True
            elif hits:
                self._found = frozenset(held.filter(mask).to_pylist())
        return hits

    def missing(self) -> list[str]:
        """The keys of the last ``focus`` that are not held."""
        if self._all_found or self._asking is None:
            return []
        return [k for k in self._asking.to_pylist() if k not in self._found]

    def _focused(self, key: str) -> bool | None:
        """Whether ``key``, asked in the last ``focus``, is held; None when it
        was not asked."""
        if self._asking is None:
            return None
        if self._asked is None:
            self._asked = frozenset(self._asking.to_pylist())
        if key not in self._asked:
            return None
        return self._all_found or key in self._found

    def _scan(self, key: str) -> int | None:
        for chunk, rows, (first, last) in zip(
            self._keys, self._rows, self._bounds, strict=True
        ):
            if not first <= key <= last:
                continue
            where = pc.index(chunk, key).as_py()
            if where >= 0:
                row: int = rows[where].as_py()
                return row
        return None

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, {}
            self.extend(list(pending), list(pending.values()))

    def _compact(self) -> None:
        if len(self._keys) > MAX_CHUNKS:
            self._keys = [pa.concat_arrays(self._keys)]
            self._rows = [pa.concat_arrays(self._rows)]
            firsts, lasts = zip(*self._bounds, strict=True)
            self._bounds = [(min(firsts), max(lasts))]


def _bounds(keys: pa.Array) -> tuple[str, str]:
    """The smallest and largest of ``keys`` (texts), as Python compares them (by
    code point, as Arrow compares UTF-8 bytes); nulls, which match no ID held,
    are left out ("" when there is nothing else)."""
    found = pc.min_max(keys)
    return found["min"].as_py() or "", found["max"].as_py() or ""


def as_index(ids: Mapping[str, int] | None) -> IdIndex | None:
    """``ids`` as an ``IdIndex`` (another writer's is used as it is)."""
    if ids is None or isinstance(ids, IdIndex):
        return ids
    return IdIndex(ids)
