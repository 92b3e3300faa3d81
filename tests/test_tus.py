"""Resumable uploads with tus over HTTPS on 127.0.0.1 (no mocks).

The servers are written by others: ``@tus/server`` with ``@tus/file-store``, and
``@uploadx/core``, run by ``tests/tus/serve.mjs`` under node; and our own
``connector.receiver``, whose tus endpoint answers a SHA-256 receipt and has the
fault hooks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.errors import ConfigError, ExitCode, UploadError, VerificationError
from connector.package import Payload
from connector.receiver import Receiver, make_certificates
from connector.transfer import AttemptLog, RetryPolicy
from connector.tus import TusTarget, upload_tus

from .conftest import random_payload, require

TOKEN = "tus-test-token-never-logged"
TUS_DIR = Path(__file__).parent / "tus"
MiB = 1024 * 1024
FAST = RetryPolicy(attempts=3, backoff=0.01, max_wait=0.1)


@dataclass
class NodeServer:
    """A tus server under node: its creation URL, storage folder and CA."""

    kind: str
    url: str
    store: Path
    ca_file: Path

    def stored_sha256(self) -> str:
        """SHA-256 of the one finished upload in the storage folder."""
        [path] = [p for p in self.store.iterdir() if p.suffix != ".json"]
        return _sha256(path.read_bytes())


@pytest.fixture(scope="session")
def node_ready() -> None:
    """node is there and the servers' packages are installed (``npm ci``)."""
    require(shutil.which("node") is not None, "node is not installed")
    modules = TUS_DIR / "node_modules"
    if (
        not (modules / "@tus" / "server").is_dir()
        or not (modules / "@uploadx" / "core").is_dir()
    ):
        require(shutil.which("npm") is not None, "npm is not installed")
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=TUS_DIR,
            check=True,
            capture_output=True,
            timeout=600,
        )


@pytest.fixture
def start_node(node_ready: None, tmp_path: Path) -> Iterator[Callable[..., NodeServer]]:
    """Start a node tus server on a free port; all are stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(kind: str, *, absolute_location: bool = False) -> NodeServer:
            return stack.enter_context(
                _node_server(kind, tmp_path, absolute_location=absolute_location)
            )

        yield start


@contextlib.contextmanager
def _node_server(
    kind: str, tmp_path: Path, *, absolute_location: bool
) -> Iterator[NodeServer]:
    ca_file, chain, key = make_certificates(tmp_path / "tls")
    store = tmp_path / f"store-{kind}"
    out_path, err_path = tmp_path / f"{kind}.out", tmp_path / f"{kind}.err"
    command = [
        "node",
        str(TUS_DIR / "serve.mjs"),
        "--server",
        kind,
        "--dir",
        str(store),
        "--cert",
        str(chain),
        "--key",
        str(key),
        "--token",
        TOKEN,
    ]
    if absolute_location:
        command.append("--absolute-location")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(command, cwd=TUS_DIR, stdout=out, stderr=err)
    try:
        port = _wait_for_port(process, out_path, err_path)
        url = f"https://127.0.0.1:{port}/files"
        _wait_until_ready(url, ca_file)
        yield NodeServer(kind, url, store, ca_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(url: str, ca_file: Path) -> None:
    """@uploadx/core listens before its store is ready and answers 503 until then:
    a first attempt lost to that would make the attempt counts of a test vary."""
    deadline = time.monotonic() + 15
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file))) as c:
        while time.monotonic() < deadline:
            headers = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {TOKEN}"}
            if c.options(url, headers=headers).status_code != 503:
                return
            time.sleep(0.05)
    pytest.fail(f"the tus server at {url} still answers 503 after 15 s")


def _wait_for_port(process: subprocess.Popen[bytes], out: Path, err: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line, newline, _ = out.read_text().partition("\n")
        if newline:
            port: int = json.loads(line)["port"]
            return port
        if process.poll() is not None:
            pytest.fail(f"the tus server exited early: {err.read_text()[-2000:]}")
        time.sleep(0.05)
    pytest.fail("the tus server did not start within 30 s")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", TOKEN, tls_dir=tmp_path / "tls") as running:
        yield running


def _make_payload(folder: Path, size: int) -> Payload:
    return random_payload(folder, size)


@pytest.fixture
def big_payload(tmp_path: Path) -> Payload:
    return _make_payload(tmp_path / "spool", 20 * MiB + 12345)


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    return _make_payload(tmp_path / "spool", 5 * MiB + 321)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _log(state_dir: Path, payload: Payload) -> AttemptLog:
    return AttemptLog(
        state_dir / "uploads.jsonl",
        run_id="test-run",
        file=payload.path.name,
        destination="tus",
        size=payload.size,
        sha256=payload.sha256,
    )


def _lines(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "uploads.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _state_file(state_dir: Path, payload: Payload) -> Path:
    return state_dir / "tus" / f"{payload.sha256}.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _receiver_target(receiver: Receiver, **changes: Any) -> TusTarget:
    settings: dict[str, Any] = {
        "url": receiver.url,
        "token": TOKEN,
        "ca_file": receiver.ca_file,
        "timeout": 10.0,
        "chunk_size": 1 * MiB,
        "policy": FAST,
    }
    return TusTarget(**(settings | changes))


@pytest.mark.parametrize(
    ("kind", "read_back", "level"),
    [
        ("tus-server", False, "length"),
        ("tus-server", True, "read-back"),
        ("uploadx", False, "chunks"),
        ("uploadx", True, "chunks"),
    ],
    ids=["tus-server", "tus-server-read-back", "uploadx", "uploadx-read-back"],
)
def test_upload_tus_to_servers_written_by_others(
    start_node: Callable[..., NodeServer],
    big_payload: Payload,
    state_dir: Path,
    kind: str,
    read_back: bool,
    level: str,
) -> None:
    server = start_node(kind)
    target = TusTarget(
        server.url,
        token=TOKEN,
        ca_file=server.ca_file,
        chunk_size=4 * MiB,
        policy=FAST,
        read_back=read_back,
    )

    receipt = upload_tus(big_payload, target, _log(state_dir, big_payload), state_dir)

    assert (receipt.verified, receipt.destination, receipt.attempts) == (
        level,
        "tus",
        1,
    )
    assert (receipt.size, receipt.sha256) == (big_payload.size, big_payload.sha256)
    assert server.stored_sha256() == big_payload.sha256
    [line] = _lines(state_dir)
    assert (line["outcome"], line["verification"]) == ("verified", level)
    assert (line["offset"], line["sent"]) == (0, big_payload.size)
    assert not _state_file(state_dir, big_payload).exists()
    assert TOKEN not in (state_dir / "uploads.jsonl").read_text()


_CHILD = """
import json, logging, os, signal, sys
from pathlib import Path
from connector.package import Payload
from connector.transfer import AttemptLog
from connector.tus import TusTarget, upload_tus

args = json.loads(sys.argv[1])


class KillAfterChunks(logging.Handler):
    # Dies as a killed process does: no cleanup, no last log line.
    def __init__(self, chunks):
        super().__init__()
        self.left = chunks

    def emit(self, record):
        if record.getMessage().startswith("tus PATCH accepted"):
            self.left -= 1
            if self.left == 0:
                os.kill(os.getpid(), signal.SIGKILL)


logger = logging.getLogger("connector.tus")
logger.setLevel(logging.DEBUG)
logger.addHandler(KillAfterChunks(args["chunks"]))
payload = Payload(Path(args["path"]), args["size"], args["sha256"], "s.csv", 0, "", "")
target = TusTarget(
    args["url"], token=args["token"], ca_file=Path(args["ca_file"]),
    chunk_size=args["chunk_size"],
)
log = AttemptLog(
    Path(args["log"]), run_id="child", file=payload.path.name, destination="tus",
    size=payload.size, sha256=payload.sha256,
)
upload_tus(payload, target, log, Path(args["state_dir"]))
"""


@pytest.mark.parametrize("kind", ["tus-server", "uploadx"])
def test_upload_tus_resumes_in_a_new_process(
    start_node: Callable[..., NodeServer],
    big_payload: Payload,
    state_dir: Path,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_node(kind)
    chunk = 2 * MiB
    args = {
        "url": server.url,
        "token": TOKEN,
        "ca_file": str(server.ca_file),
        "chunk_size": chunk,
        "path": str(big_payload.path),
        "size": big_payload.size,
        "sha256": big_payload.sha256,
        "log": str(state_dir / "uploads.jsonl"),
        "state_dir": str(state_dir),
        "chunks": 3,
    }
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert _state_file(state_dir, big_payload).exists()
    caplog.set_level(logging.INFO, logger="connector.tus")

    target = TusTarget(
        server.url, token=TOKEN, ca_file=server.ca_file, chunk_size=chunk
    )
    receipt = upload_tus(big_payload, target, _log(state_dir, big_payload), state_dir)

    assert receipt.resumed_from == 3 * chunk
    assert receipt.verified == ("chunks" if kind == "uploadx" else "length")
    [line] = _lines(state_dir)  # the killed process wrote none
    assert (line["outcome"], line["offset"]) == ("verified", 3 * chunk)
    assert line["sent"] == big_payload.size - 3 * chunk
    assert server.stored_sha256() == big_payload.sha256
    assert f"resumed at offset {3 * chunk}" in caplog.text
    assert not _state_file(state_dir, big_payload).exists()


def test_upload_tus_refused_token_is_not_retried(
    start_node: Callable[..., NodeServer], payload: Payload, state_dir: Path
) -> None:
    server = start_node("tus-server")
    wrong = "wrong-secret-do-not-show"
    target = TusTarget(server.url, token=wrong, ca_file=server.ca_file, policy=FAST)

    with pytest.raises(UploadError) as caught:
        upload_tus(payload, target, _log(state_dir, payload), state_dir)

    message = str(caught.value)
    assert "destination.token_secret" in message and "HTTP 401" in message
    assert caught.value.exit_code == ExitCode.SECRETS_OR_AUTH
    assert wrong not in message
    [line] = _lines(state_dir)
    assert (line["outcome"], line["status"], line["attempt"]) == ("failed", 401, 1)
    assert wrong not in (state_dir / "uploads.jsonl").read_text()


def test_upload_tus_refuses_a_non_https_location(
    start_node: Callable[..., NodeServer], payload: Payload, state_dir: Path
) -> None:
    # @tus/server behind node:https answers http:// unless told otherwise.
    server = start_node("tus-server", absolute_location=True)
    target = TusTarget(server.url, token=TOKEN, ca_file=server.ca_file, policy=FAST)

    with pytest.raises(UploadError) as caught:
        upload_tus(payload, target, _log(state_dir, payload), state_dir)

    message = str(caught.value)
    assert "'http://127.0.0.1:" in message and "not https" in message
    assert caught.value.exit_code == ExitCode.FAILURE
    [line] = _lines(state_dir)
    assert (line["outcome"], line["status"], line["sent"]) == ("failed", 201, 0)
    assert not _state_file(state_dir, payload).exists()


def test_upload_tus_to_receiver_gives_receipt(
    receiver: Receiver,
    payload: Payload,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connector.tus")

    receipt = upload_tus(
        payload, _receiver_target(receiver), _log(state_dir, payload), state_dir
    )

    assert (receipt.verified, receipt.attempts, receipt.resumed_from) == (
        "receipt",
        1,
        0,
    )
    stored = receiver.folder / payload.path.name
    assert _sha256(stored.read_bytes()) == payload.sha256
    assert [p.suffix for p in (receiver.folder / ".tus").iterdir()] == [".json"]
    [line] = _lines(state_dir)
    assert (line["outcome"], line["verification"]) == ("verified", "receipt")
    assert caplog.record_tuples[-1][:2] == ("connector.tus", logging.INFO)
    assert TOKEN not in caplog.text


def test_upload_tus_gives_up_after_503s_and_keeps_state(
    receiver: Receiver, payload: Payload, state_dir: Path
) -> None:
    receiver.fail_next(100, status=503, method="PATCH")

    with pytest.raises(UploadError) as caught:
        upload_tus(
            payload, _receiver_target(receiver), _log(state_dir, payload), state_dir
        )

    message = str(caught.value)
    state = _state_file(state_dir, payload)
    assert caught.value.exit_code == ExitCode.RETRY_LATER
    assert "after 3 attempts" in message and "HTTP 503" in message
    assert str(payload.path) in message and str(state) in message
    assert payload.path.exists() and state.exists()
    lines = _lines(state_dir)
    assert [(x["outcome"], x["status"]) for x in lines] == [
        ("retry", 503),
        ("retry", 503),
        ("failed", 503),
    ]

    receiver.fail_next(0)
    receipt = upload_tus(
        payload, _receiver_target(receiver), _log(state_dir, payload), state_dir
    )
    assert receipt.verified == "receipt"
    assert not state.exists()


def test_upload_tus_resends_a_damaged_chunk(
    receiver: Receiver, payload: Payload, state_dir: Path
) -> None:
    receiver.damage_next()

    receipt = upload_tus(
        payload, _receiver_target(receiver), _log(state_dir, payload), state_dir
    )

    assert (receipt.verified, receipt.attempts) == ("receipt", 2)
    lines = _lines(state_dir)
    assert [(x["outcome"], x["status"], x["offset"]) for x in lines] == [
        ("retry", 460, 0),
        ("verified", 204, 0),
    ]


def test_upload_tus_progress_resets_the_failure_count(
    receiver: Receiver, payload: Payload, state_dir: Path
) -> None:
    # Three hang-ups in the middle of chunks, with 2 attempts allowed: each
    # attempt moved the server's offset, so none of them counts against the limit.
    receiver.drop_next(after=MiB + MiB // 2, count=3)
    policy = RetryPolicy(attempts=2, backoff=0.01, max_wait=0.1)

    receipt = upload_tus(
        payload,
        _receiver_target(receiver, policy=policy),
        _log(state_dir, payload),
        state_dir,
    )

    assert (receipt.verified, receipt.attempts) == ("receipt", 4)
    lines = _lines(state_dir)
    assert [x["offset"] for x in lines] == [0, MiB, 2 * MiB, 3 * MiB]
    assert [x["outcome"] for x in lines] == ["retry"] * 3 + ["verified"]
    assert all(x["status"] is None and x["error"] for x in lines[:3])
    assert _sha256((receiver.folder / payload.path.name).read_bytes()) == (
        payload.sha256
    )


def test_upload_tus_receipt_mismatch_is_exit_5(
    receiver: Receiver, payload: Payload, state_dir: Path
) -> None:
    receiver.corrupt_next()

    with pytest.raises(VerificationError, match="students.csv.gz.pgp") as caught:
        upload_tus(
            payload, _receiver_target(receiver), _log(state_dir, payload), state_dir
        )

    assert caught.value.exit_code == ExitCode.VERIFICATION_FAILED
    [line] = _lines(state_dir)
    assert line["outcome"] == "mismatch"
    assert payload.path.exists()
    assert not _state_file(state_dir, payload).exists()


def test_upload_tus_creates_a_new_upload_when_the_old_is_gone(
    receiver: Receiver,
    payload: Payload,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.fail_next(100, status=503, method="PATCH")
    one_try = _receiver_target(receiver, policy=RetryPolicy(attempts=1))
    with pytest.raises(UploadError):
        upload_tus(payload, one_try, _log(state_dir, payload), state_dir)
    shutil.rmtree(receiver.folder / ".tus")
    receiver.fail_next(0)

    receipt = upload_tus(
        payload, _receiver_target(receiver), _log(state_dir, payload), state_dir
    )

    assert receipt.verified == "receipt"
    assert "no longer has" in caplog.text
    assert _lines(state_dir)[-1]["offset"] == 0


def test_upload_tus_honours_retry_after(
    receiver: Receiver, payload: Payload, state_dir: Path
) -> None:
    receiver.fail_next(1, status=429, retry_after="0", method="PATCH")
    slow = RetryPolicy(attempts=3, backoff=30.0)

    receipt = upload_tus(
        payload,
        _receiver_target(receiver, policy=slow),
        _log(state_dir, payload),
        state_dir,
    )

    assert receipt.attempts == 2  # waited Retry-After (0 s), not the 30 s back-off


def test_upload_tus_wrong_ca_fails_fast(
    tmp_path: Path, receiver: Receiver, payload: Payload, state_dir: Path
) -> None:
    other_ca, _, _ = make_certificates(tmp_path / "other")

    with pytest.raises(UploadError) as caught:
        upload_tus(
            payload,
            _receiver_target(receiver, ca_file=other_ca),
            _log(state_dir, payload),
            state_dir,
        )

    assert "certificate" in str(caught.value)
    assert "destination.ca_file" in str(caught.value)
    assert caught.value.exit_code == ExitCode.FAILURE
    [line] = _lines(state_dir)
    assert line["outcome"] == "failed"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/files/", "ftp://example.invalid/", "127.0.0.1/files/"],
    ids=["http", "ftp", "no-scheme"],
)
def test_tus_target_refuses_non_https(url: str) -> None:
    with pytest.raises(ConfigError, match="destination.url must be an https"):
        TusTarget(url)


def test_tus_target_refuses_credentials_in_url() -> None:
    with pytest.raises(ConfigError, match="destination.token_secret") as caught:
        TusTarget("https://user:hunter2@example.invalid/files/")
    assert "hunter2" not in str(caught.value)


def test_tus_target_repr_hides_token() -> None:
    assert TOKEN not in repr(TusTarget("https://example.invalid/files", token=TOKEN))
