"""What every destination shares: the retry policy and the proxy."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.receiver import Receiver
from connector.transfer import Attempts, RetryPolicy
from connector.upload import UploadTarget, upload_payload

from .conftest import TOKEN, random_payload


def test_waits_grow_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=10, backoff=1.0, max_wait=10.0)
    waits = [policy.wait(n) for n in range(1, 7)]
    for n, wait in enumerate(waits[:4], start=1):
        assert 2.0 ** (n - 1) <= wait <= 2.0 ** (n - 1) + 1.0
    assert waits[4:] == [10.0, 10.0]
    assert policy.wait(1, retry_after=7.0) == 7.0
    assert policy.wait(1, retry_after=700.0) == 10.0


def test_progress_resets_the_failures_and_the_deadline_stops() -> None:
    attempts = Attempts(RetryPolicy(attempts=2, backoff=0.0))
    attempts.start()
    assert attempts.failed() is not None
    attempts.progressed()
    attempts.start()
    assert attempts.failed() is not None  # one failure in a row again
    attempts.start()
    assert attempts.failed() is None  # two in a row: stop

    late = Attempts(RetryPolicy(attempts=100, backoff=5.0, deadline=1.0))
    late.start()
    assert late.failed() is None  # the next wait would pass the deadline


class _Connect(socketserver.StreamRequestHandler):
    """A minimal HTTP CONNECT proxy, as a district's outbound proxy would be."""

    seen: list[str] = []

    def handle(self) -> None:
        request = self.rfile.readline().decode("ascii")
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        method, target, _ = request.split(" ", 2)
        assert method == "CONNECT"
        self.seen.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                b.close()

        other = threading.Thread(target=pump, args=(upstream, self.connection))
        other.start()
        pump(self.connection, upstream)
        other.join()


@pytest.fixture
def proxy() -> Iterator[str]:
    _Connect.seen = []
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Connect) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def test_the_configured_proxy_carries_the_upload(
    tmp_path: Path, receiver: Receiver, proxy: str
) -> None:
    payload = random_payload(tmp_path / "spool", 300_000)
    target = UploadTarget(
        receiver.url, TOKEN, receiver.ca_file, proxy=proxy, attempts=1
    )

    receipt = upload_payload(payload, target, tmp_path / "log.jsonl")

    assert receipt.verified == "receipt"
    assert _Connect.seen == [f"127.0.0.1:{receiver.port}"]
