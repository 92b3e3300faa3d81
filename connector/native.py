"""What the sources that read without ODBC share (``postgres``, ``mariadb``).

A fetch thread that stays one batch ahead of the writer and sizes each batch by
the rows seen so far; the cap on one text value and its check; and the URL
pieces messages name the server by.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import QueryError
from .templates import Query

if TYPE_CHECKING:
    from typing import Self

    from .database import ServerInfo

# The longest text value a query may return, in characters (the exports' fields
# are at most 255): the server cuts at one more, and a longer value stops the run.
MAX_TEXT_CHARS = 2048
# What a fetched batch may hold, at the size of the rows fetched so far; the
# first fetch asks for FIRST_ROWS rows.
BATCH_BYTES = 1 << 20
FIRST_ROWS = 1_000


class NativeSource:
    """What a source without ODBC shares: its server, closing as a context."""

    _info: ServerInfo

    def describe(self) -> ServerInfo:
        return self._info

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dbms={self._info.dbms!r})"

    @staticmethod
    def named(query: Query, error: QueryError) -> QueryError:
        """``error`` naming the query's template, once."""
        if str(error).startswith("query from "):
            return error
        return QueryError(f"query from {query.template}: {error}")


class Prefetcher:
    """Call ``fetch(rows)`` on a second thread, one batch ahead of the reader.

    ``fetch`` returns a batch of at most ``rows`` rows (``num_rows`` and
    ``nbytes``), fewer at the end, or ``None`` when there are no more. The driver
    lets go of the GIL while the server sends a batch, so the next one arrives
    while this one is cleaned and written. The connection belongs to that thread
    alone until ``close()`` has joined it and called ``finish``. An error in the
    thread is raised in the reader through ``error``.
    """

    def __init__(
        self,
        fetch: Callable[[int], Any],
        *,
        limit: int,
        error: Callable[[Exception], Exception],
        finish: Callable[[], None],
        name: str,
    ) -> None:
        self._fetch = fetch
        self._limit = max(1, limit)
        self._error = error
        self._finish = finish
        self._ready: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.fetched = 0

    def _run(self) -> None:
        rows = min(FIRST_ROWS, self._limit)
        try:
            while not self._stop.is_set():
                asked = rows
                batch = self._fetch(asked)
                if batch is None or batch.num_rows == 0:
                    break
                width = max(1, batch.nbytes // batch.num_rows)
                rows = max(1, min(self._limit, BATCH_BYTES // width))
                self._put(batch)
                if batch.num_rows < asked:  # the result is at its end
                    break
            self._put(None)
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._ready.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise self._error(item) from None
            if isinstance(item, BaseException):
                raise item
            self.fetched += item.num_rows
            yield item

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            self._ready.get_nowait()
        self._thread.join()
        self._finish()


def check_lengths(
    query: Query, names: list[str], columns: list[Any], before: int
) -> None:
    """Stop at a text value longer than ``MAX_TEXT_CHARS`` (the server cut it at
    one character more), naming the column and the row; ``before`` rows came
    earlier."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name, column in zip(names, columns, strict=True):
        if not isinstance(column, pa.Array):
            continue
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            lengths = pc.utf8_length(column)
        elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            lengths = pc.binary_length(column)
        else:
            continue
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > MAX_TEXT_CHARS:
            row = before + 1 + pc.index(lengths, longest).as_py()
            raise QueryError(
                f"query from {query.template}: column {name}, row {row}: a value "
                f"is longer than {MAX_TEXT_CHARS} characters, the limit for one "
                "value; nothing was written. Cut the column in the template (for "
                f"example LEFT({name}, 255))"
            )


def server_name(url: str, database: str) -> str:
    """``PostgreSQL at host:port/db``: the URL without user or password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    with contextlib.suppress(ValueError):
        if parts.port:
            host += f":{parts.port}"
    return f"{database} at {host}{parts.path}"
