"""The fault matrix of the resumable upload: tus over HTTPS on 127.0.0.1, no mocks.

A 50 MiB payload goes to ``@tus/server`` (its file store keeps partial uploads on
disk) through ``tests/faultproxy.py``, which forwards the TLS bytes blindly and
cuts the connection at chosen byte offsets by a reset, a clean close or a stall.
Then the server is killed and restarted under the client, and the client is
killed and started again. Every upload must end verified, whole, stored once, and
resumed from where the server's offset stood, not from the start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.errors import ExitCode, UploadError
from connector.package import Payload
from connector.receiver import Receiver, make_certificates
from connector.transfer import RetryPolicy
from connector.tus import TusTarget, upload_tus

from .faultproxy import FaultProxy
from .test_tus import (  # noqa: F401 - node_ready and start_node are fixtures
    TOKEN,
    TUS_DIR,
    NodeServer,
    _lines,
    _log,
    _make_payload,
    _sha256,
    _state_file,
    _wait_for_port,
    node_ready,
    start_node,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SIZE = 50 * MiB + 4321  # not a whole number of chunks
CHUNK = 4 * MiB
OFFSETS = [1 * MiB, 17 * MiB, 45 * MiB]
KILL_AT = 20 * MiB
# The client's connect, read and write timeout. Above 3 s on purpose: after a
# stall, @tus/server holds the next request for up to its lockDrainTimeout (3 s)
# while the stalled PATCH drains; a shorter timeout costs one more attempt.
STALL_TIMEOUT = 4.0
# Each cut costs one failed attempt (a stall costs the timeout): 3 is plenty.
QUICK = RetryPolicy(attempts=3, backoff=0.01, max_wait=0.1)
# A restarting server refuses connections for a moment: wait up to ~4 s for it.
PATIENT = RetryPolicy(attempts=12, backoff=0.05, max_wait=0.5)
REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Payload:
    return _make_payload(tmp_path_factory.mktemp("spool"), SIZE)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _uploads(store: Path) -> list[Path]:
    """The uploads in a storage folder, without their metadata files."""
    return sorted(
        p for p in store.iterdir() if p.is_file() and p.suffix not in (".json", ".info")
    )


def _check_stored_once(store: Path, payload: Payload) -> None:
    [stored] = _uploads(store)  # one upload: no duplicate was created
    assert stored.stat().st_size == payload.size
    assert _sha256(stored.read_bytes()) == payload.sha256


def _check_resumed(lines: list[dict[str, Any]], payload: Payload) -> None:
    """Retries after the first attempt, each resuming at an offset > 0."""
    *retries, last = lines
    assert retries and [x["outcome"] for x in retries] == ["retry"] * len(retries)
    assert all(x["error"] for x in retries)
    assert lines[0]["offset"] == 0
    assert all(x["offset"] > 0 for x in lines[1:]), [x["offset"] for x in lines]
    assert (last["outcome"], last["verification"]) == ("verified", "length")
    assert last["offset"] + last["sent"] == payload.size
    assert TOKEN not in json.dumps(lines)


def _target(url: str, ca_file: Path | None, **changes: Any) -> TusTarget:
    settings: dict[str, Any] = {
        "url": url,
        "token": TOKEN,
        "ca_file": ca_file,
        "timeout": STALL_TIMEOUT,
        "chunk_size": CHUNK,
        "policy": QUICK,
    }
    return TusTarget(**(settings | changes))


def _proxied(url: str, proxy: FaultProxy) -> str:
    """``url`` with the proxy's port: the certificate is still for 127.0.0.1."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


@pytest.fixture
def proxy_to() -> Iterator[Callable[[str], FaultProxy]]:
    """Start a fault proxy in front of a URL's port; all stop after the test."""
    with contextlib.ExitStack() as stack:

        def start(url: str) -> FaultProxy:
            port = urllib.parse.urlsplit(url).port
            assert port is not None
            return stack.enter_context(FaultProxy(port))

        yield start


# Cut connections: reset, clean close and stall, at three offsets each.


@pytest.mark.parametrize("offset", OFFSETS, ids=lambda o: f"{o // MiB}MiB")
@pytest.mark.parametrize("kind", ["reset", "close", "stall"])
def test_cut_connection_resumes_on_tus_server(
    start_node: Callable[..., NodeServer],  # noqa: F811
    proxy_to: Callable[[str], FaultProxy],
    payload: Payload,
    state_dir: Path,
    kind: str,
    offset: int,
) -> None:
    server = start_node("tus-server")
    proxy = proxy_to(server.url)
    proxy.arm(kind, [offset])
    target = _target(_proxied(server.url, proxy), server.ca_file)

    started = time.monotonic()
    receipt = upload_tus(payload, target, _log(state_dir, payload), state_dir)
    took = time.monotonic() - started

    assert [(f.kind, f.offset) for f in proxy.fired] == [(kind, offset)]
    assert (receipt.verified, receipt.attempts) == ("length", 2)
    _check_stored_once(server.store, payload)
    lines = _lines(state_dir)
    _check_resumed(lines, payload)
    # Resumed near the cut: at least every whole chunk before it was kept (the
    # bytes counted by the proxy include TLS and HTTP overhead, under 1 %).
    resumed = lines[1]["offset"]
    assert CHUNK * (int(offset * 0.99) // CHUNK) <= resumed <= offset
    if kind == "stall":
        assert took >= STALL_TIMEOUT  # only the client's timeout saw it
    assert not _state_file(state_dir, payload).exists()


@pytest.mark.parametrize("kind", ["reset", "close", "stall"])
def test_three_cuts_in_one_upload_to_tus_server(
    start_node: Callable[..., NodeServer],  # noqa: F811
    proxy_to: Callable[[str], FaultProxy],
    payload: Payload,
    state_dir: Path,
    kind: str,
) -> None:
    # With 2 attempts allowed, only the progress between cuts lets it finish.
    server = start_node("tus-server")
    proxy = proxy_to(server.url)
    proxy.arm(kind, OFFSETS)
    policy = RetryPolicy(attempts=2, backoff=0.01, max_wait=0.1)
    target = _target(_proxied(server.url, proxy), server.ca_file, policy=policy)

    receipt = upload_tus(payload, target, _log(state_dir, payload), state_dir)

    assert [f.offset for f in proxy.fired] == OFFSETS
    assert (receipt.verified, receipt.attempts) == ("length", 4)
    _check_stored_once(server.store, payload)
    lines = _lines(state_dir)
    _check_resumed(lines, payload)
    offsets = [x["offset"] for x in lines]
    assert offsets == sorted(offsets) and len(set(offsets)) == 4


# The server killed and restarted on the same port while the client retries.

# serve.mjs listens on a free port; this preload makes node take FAULT_PORT
# instead, so the restarted server answers at the URL the client holds.
_SAME_PORT = "data:text/javascript," + urllib.parse.quote(
    'import net from "node:net";'
    "const listen = net.Server.prototype.listen;"
    "net.Server.prototype.listen = function (port, ...rest) {"
    "  const wanted = Number(process.env.FAULT_PORT || 0);"
    "  return listen.call(this, port === 0 && wanted ? wanted : port, ...rest);"
    "};"
)


class _RestartableServer:
    """``@tus/server`` under node that can be killed and started again in place:
    same port, same storage folder, same certificate."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.store = folder / "store"
        self.ca_file, self.chain, self.key = make_certificates(folder / "tls")
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/files"

    def start(self) -> None:
        self.starts += 1
        out = self.folder / f"node-{self.starts}.out"
        err = self.folder / f"node-{self.starts}.err"
        command = [
            "node",
            "--import",
            _SAME_PORT,
            str(TUS_DIR / "serve.mjs"),
            "--server",
            "tus-server",
            "--dir",
            str(self.store),
            "--cert",
            str(self.chain),
            "--key",
            str(self.key),
            "--token",
            TOKEN,
        ]
        env = os.environ | {"FAULT_PORT": str(self.port)}
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self.process = subprocess.Popen(
                command, cwd=TUS_DIR, stdout=stdout, stderr=stderr, env=env
            )
        port = _wait_for_port(self.process, out, err)
        assert self.port in (0, port)
        self.port = port

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_for_upload_size(store: Path, size: int, timeout: float = 60) -> int:
    """Wait until an upload in ``store`` holds more than ``size`` bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            sizes = [p.stat().st_size for p in _uploads(store)]
            if sizes and max(sizes) > size:
                return max(sizes)
        time.sleep(0.002)
    raise AssertionError(f"no upload in {store} passed {size} bytes in {timeout} s")


def test_server_killed_and_restarted_mid_upload(
    node_ready: None,  # noqa: F811
    tmp_path: Path,
    payload: Payload,
    state_dir: Path,
) -> None:
    server = _RestartableServer(tmp_path / "node")
    server.start()
    target = _target(server.url, server.ca_file, policy=PATIENT)
    killed: list[int] = []
    failures: list[BaseException] = []

    def kill_and_restart() -> None:
        try:
            killed.append(_wait_for_upload_size(server.store, KILL_AT))
            server.kill()
            server.start()
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    killer = threading.Thread(target=kill_and_restart, daemon=True)
    killer.start()
    try:
        receipt = upload_tus(payload, target, _log(state_dir, payload), state_dir)
    finally:
        killer.join(timeout=60)
        server.stop()

    assert not failures, failures
    assert server.starts == 2 and killed and killed[0] < payload.size
    assert receipt.verified == "length" and receipt.attempts >= 2
    _check_stored_once(server.store, payload)
    lines = _lines(state_dir)
    *retries, last = lines
    assert [x["outcome"] for x in retries] == ["retry"] * len(retries)
    assert retries[0]["offset"] == 0 and retries[0]["sent"] > KILL_AT - CHUNK
    # Attempts refused while the server was down log where the upload stood;
    # the one that succeeded resumed at what the killed server had on disk.
    assert all(x["offset"] >= KILL_AT - CHUNK for x in retries[1:])
    assert last["offset"] >= KILL_AT - CHUNK
    assert last["offset"] + last["sent"] == payload.size
    assert not _state_file(state_dir, payload).exists()


def test_server_killed_for_good_gives_up_after_the_attempts(
    node_ready: None,  # noqa: F811
    tmp_path: Path,
    payload: Payload,
    state_dir: Path,
) -> None:
    server = _RestartableServer(tmp_path / "node")
    server.start()
    policy = RetryPolicy(attempts=3, backoff=0.01, max_wait=0.1, deadline=4.0)
    target = _target(server.url, server.ca_file, policy=policy)

    def kill() -> None:
        _wait_for_upload_size(server.store, KILL_AT)
        server.kill()

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    try:
        with pytest.raises(UploadError) as caught:
            upload_tus(payload, target, _log(state_dir, payload), state_dir)
    finally:
        killer.join(timeout=60)
        server.stop()

    lines = _lines(state_dir)
    assert caught.value.exit_code == ExitCode.RETRY_LATER
    assert [x["offset"] > 0 for x in lines] == [False, True, True]
    assert [x["outcome"] for x in lines] == ["retry", "retry", "failed"]
    assert "after 3 attempts" in str(caught.value)
    assert _state_file(state_dir, payload).exists()


# The client killed mid-upload, then a new process with the same state folder.

_CLIENT = """
import json, logging, sys
from pathlib import Path
from connector.errors import ExitCode, UploadError
from connector.package import Payload
from connector.transfer import AttemptLog, RetryPolicy
from connector.tus import TusTarget, upload_tus

args = json.loads(sys.argv[1])
payload = Payload(Path(args["path"]), args["size"], args["sha256"], "s.csv", 0, "", "")
target = TusTarget(
    args["url"], token=args["token"], ca_file=Path(args["ca_file"]),
    chunk_size=args["chunk_size"], timeout=args["timeout"],
    policy=RetryPolicy(attempts=3, backoff=0.01, max_wait=0.1),
)
log = AttemptLog(
    Path(args["state_dir"]) / "uploads.jsonl", run_id=args["run_id"],
    file=payload.path.name, destination="tus", size=payload.size,
    sha256=payload.sha256,
)
receipt = upload_tus(payload, target, log, Path(args["state_dir"]))
print(json.dumps({"verified": receipt.verified, "resumed_from": receipt.resumed_from}))
"""


def _client(server: NodeServer, payload: Payload, state_dir: Path, run_id: str) -> Any:
    args = {
        "url": server.url,
        "token": TOKEN,
        "ca_file": str(server.ca_file),
        "chunk_size": CHUNK,
        "timeout": 10.0,
        "path": str(payload.path),
        "size": payload.size,
        "sha256": payload.sha256,
        "state_dir": str(state_dir),
        "run_id": run_id,
    }
    return subprocess.Popen(
        [sys.executable, "-c", _CLIENT, json.dumps(args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_client_killed_mid_upload_resumes_in_a_new_process(
    start_node: Callable[..., NodeServer],  # noqa: F811
    payload: Payload,
    state_dir: Path,
) -> None:
    server = start_node("tus-server")

    first = _client(server, payload, state_dir, "first")
    try:
        at = _wait_for_upload_size(server.store, KILL_AT)
        first.send_signal(signal.SIGKILL)
    finally:
        _, first_err = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, first_err.decode()[-2000:]
    assert at < payload.size
    assert _state_file(state_dir, payload).exists()

    second = _client(server, payload, state_dir, "second")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()[-2000:]

    receipt = json.loads(out)
    assert receipt["verified"] == "length"
    lines = _lines(state_dir)
    assert all(x["run_id"] == "second" for x in lines)  # the killed one wrote none
    assert lines[0]["offset"] >= KILL_AT - CHUNK  # started where the server stood
    assert receipt["resumed_from"] == lines[0]["offset"]
    assert (lines[-1]["outcome"], lines[-1]["offset"] + lines[-1]["sent"]) == (
        "verified",
        payload.size,
    )
    _check_stored_once(server.store, payload)
    assert not _state_file(state_dir, payload).exists()


# Our own receiver's tus endpoint, behind the same proxy.

RECEIVER_OFFSETS = [6 * MiB, 17 * MiB, 45 * MiB]


@pytest.fixture
def tus_receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", TOKEN, tls_dir=tmp_path / "rtls") as running:
        yield running


@pytest.mark.parametrize("offset", RECEIVER_OFFSETS, ids=lambda o: f"{o // MiB}MiB")
@pytest.mark.parametrize("kind", ["reset", "close"])
def test_cut_connection_resumes_on_receiver(
    tus_receiver: Receiver,
    proxy_to: Callable[[str], FaultProxy],
    payload: Payload,
    state_dir: Path,
    kind: str,
    offset: int,
) -> None:
    proxy = proxy_to(tus_receiver.url)
    proxy.arm(kind, [offset])
    target = _target(_proxied(tus_receiver.url, proxy), tus_receiver.ca_file)

    receipt = upload_tus(payload, target, _log(state_dir, payload), state_dir)

    assert [(f.kind, f.offset) for f in proxy.fired] == [(kind, offset)]
    assert (receipt.verified, receipt.attempts) == ("receipt", 2)
    folder = tus_receiver.folder
    stored = folder / payload.path.name
    assert [p.name for p in folder.iterdir() if p.is_file()] == [stored.name]
    assert _sha256(stored.read_bytes()) == payload.sha256
    assert [p.suffix for p in (folder / ".tus").iterdir()] == [".json"]  # one upload
    lines = _lines(state_dir)
    assert [x["outcome"] for x in lines] == ["retry", "verified"]
    assert lines[0]["offset"] == 0 and lines[1]["verification"] == "receipt"
    # Every chunk goes with a checksum: a chunk cut short is dropped whole.
    resumed = lines[1]["offset"]
    assert resumed == CHUNK * (resumed // CHUNK) > 0
    assert CHUNK * (int(offset * 0.99) // CHUNK) <= resumed <= offset
