"""A TCP proxy on 127.0.0.1 that breaks connections at chosen byte offsets.

It sits between a client and a server and forwards bytes blindly, so TLS goes end
to end: the client still verifies the server's certificate. It counts the bytes
it forwards from clients to the server, over all connections, and when that count
reaches an armed offset it cuts the connection carrying that byte, once per offset:

``reset``
    Both sockets are closed with ``SO_LINGER`` 0: each peer sees a TCP reset.
``close``
    Both sockets are closed cleanly: each peer sees the end of the stream (FIN).
``stall``
    Nothing more is forwarded either way and both sockets are held open until the
    proxy stops, as a dead network path would: only a timeout notices.

Afterwards it forwards normally. All sockets are served by one asyncio loop in a
background thread, so a reset really is a reset: no other thread holds the socket.

>>> with FaultProxy(server_port) as proxy:  # doctest: +SKIP
...     proxy.arm("reset", [1 << 20, 17 << 20])
...     upload to f"https://127.0.0.1:{proxy.port}/files"
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

__all__ = ["KINDS", "Fault", "FaultProxy"]

HOST = "127.0.0.1"
KINDS = ("reset", "close", "stall")
# Pause reading a side when the other side's write buffer holds more than this.
_HIGH_WATER = 1024 * 1024


@dataclass(frozen=True)
class Fault:
    """A fault that fired: its kind and the upstream byte count it fired at."""

    kind: str
    offset: int


class _Pair:
    """One proxied connection: the client's transport and the server's."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.stalled = False
        self.closed = False

    def transports(self) -> list[asyncio.Transport]:
        return [t for t in (self.client, self.server) if t is not None]

    def close(self) -> None:
        """Close both sides cleanly (buffered bytes are flushed first)."""
        if self.closed:
            return
        self.closed = True
        for transport in self.transports():
            transport.close()
        self.proxy._pairs.discard(self)

    def abort(self, *, reset: bool) -> None:
        """Close both sides at once; with ``reset`` the peers see a TCP reset."""
        self.closed = True
        for transport in self.transports():
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET,
                            socket.SO_LINGER,
                            struct.pack("ii", 1, 0),
                        )
            transport.abort()
        self.proxy._pairs.discard(self)

    def stall(self) -> None:
        """Forward nothing more either way, and keep both sockets open."""
        self.stalled = True
        for transport in self.transports():
            with contextlib.suppress(RuntimeError):
                transport.pause_reading()

    def fire(self, kind: str) -> None:
        if kind == "reset":
            self.abort(reset=True)
        elif kind == "close":
            self.close()
        else:
            self.stall()


class _ClientSide(asyncio.Protocol):
    """The connection a client opened to the proxy."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.pair = _Pair(proxy)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.pair.client = transport
        self.proxy._pairs.add(self.pair)
        transport.pause_reading()  # until the server side is connected
        self.proxy._tasks.add(asyncio.ensure_future(self._connect()))

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: _ServerSide(self.pair), HOST, self.proxy.upstream_port
            )
        except OSError:
            # The server is down: hang up on the client as a dead port would.
            self.pair.abort(reset=True)
            return
        finally:
            task = asyncio.current_task()
            if task is not None:
                self.proxy._tasks.discard(task)
        assert isinstance(transport, asyncio.Transport)
        self.pair.server = transport
        if self.pair.closed:
            transport.abort()
            return
        assert self.pair.client is not None
        self.pair.client.resume_reading()

    def data_received(self, data: bytes) -> None:
        pair = self.pair
        if pair.stalled or pair.closed or pair.server is None:
            return
        count, kind = self.proxy._account(len(data))
        if count:
            pair.server.write(data[:count])
        if kind is not None:
            pair.fire(kind)
        elif pair.server.get_write_buffer_size() > _HIGH_WATER:
            self._wait_for_server()

    def _wait_for_server(self) -> None:
        assert self.pair.client is not None and self.pair.server is not None
        self.pair.client.pause_reading()
        protocol = self.pair.server.get_protocol()
        assert isinstance(protocol, _ServerSide)
        protocol.drained = self._resume

    def _resume(self) -> None:
        if not (self.pair.stalled or self.pair.closed) and self.pair.client:
            self.pair.client.resume_reading()

    def eof_received(self) -> bool:
        if not self.pair.stalled:
            self.pair.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.pair.stalled:
            self.pair.close()


class _ServerSide(asyncio.Protocol):
    """The proxy's connection to the server, for one client connection."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair
        self.drained: Callable[[], None] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        self.transport = transport

    def pause_writing(self) -> None:
        pass  # the client side checks the buffer size itself

    def resume_writing(self) -> None:
        callback, self.drained = self.drained, None
        if callback is not None:
            callback()

    def data_received(self, data: bytes) -> None:
        pair = self.pair
        if pair.stalled or pair.closed or pair.client is None:
            return
        pair.client.write(data)
        if pair.client.get_write_buffer_size() > _HIGH_WATER and self.transport:
            # The client reads slowly: stop reading from the server until it does.
            self.transport.pause_reading()
            self.pair.proxy._loop.call_later(0.01, self._resume_when_drained)

    def _resume_when_drained(self) -> None:
        pair = self.pair
        if pair.stalled or pair.closed or pair.client is None or not self.transport:
            return
        if pair.client.get_write_buffer_size() > _HIGH_WATER // 2:
            pair.proxy._loop.call_later(0.01, self._resume_when_drained)
        else:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        if not self.pair.stalled:
            self.pair.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.pair.stalled:
            self.pair.close()


class FaultProxy:
    """Forward ``127.0.0.1:port`` to ``127.0.0.1:upstream_port``, with faults.

    ``arm(kind, offsets)`` sets when to cut; ``fired`` lists the faults that
    happened; ``forwarded`` is the count of bytes sent upstream so far.
    ``upstream_port`` may be changed while running (for a restarted server).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.fired: list[Fault] = []
        self._lock = threading.Lock()
        self._forwarded = 0
        self._armed: list[tuple[int, str]] = []
        self._pairs: set[_Pair] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    def arm(self, kind: str, offsets: Iterable[int]) -> None:
        """Cut with ``kind`` when the upstream byte count reaches each offset."""
        if kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}, not {kind!r}")
        with self._lock:
            self._armed = sorted(
                [*self._armed, *((offset, kind) for offset in offsets)]
            )

    @property
    def forwarded(self) -> int:
        with self._lock:
            return self._forwarded

    def _account(self, size: int) -> tuple[int, str | None]:
        """Count ``size`` bytes going upstream; return how many to forward and,
        if the next armed offset is reached within them, the fault to fire."""
        with self._lock:
            if self._armed:
                offset, kind = self._armed[0]
                room = max(offset - self._forwarded, 0)
                if room <= size:
                    self._armed.pop(0)
                    self._forwarded += room
                    self.fired.append(Fault(kind, self._forwarded))
                    return room, kind
            self._forwarded += size
            return size, None

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="faultproxy", daemon=True
        )
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(lambda: _ClientSide(self), HOST, 0),
            self._loop,
        ).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        """Stop listening and drop every connection, stalled ones included."""
        if self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            for pair in list(self._pairs):
                pair.abort(reset=False)
            await asyncio.sleep(0.05)  # let the transports finish closing

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
