"""Notices of failed and held runs: a real SMTP server (aiosmtpd) on 127.0.0.1 with
STARTTLS and SMTPS, and a local HTTPS webhook, both with trustme certificates; the
run is the installed ``connector`` script."""

from __future__ import annotations

import email
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from connector.receiver import Receiver

from .conftest import TOKEN
from .test_nightly import bare_env, connector, sample_job, secret_file
from .test_pipeline import district  # noqa: F401 - a fixture

SMTP_PASSWORD = "smtp-Pa55-c5a-secret"
HOOK_TOKEN = "hook-token-c5a-secret"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == SMTP_PASSWORD.encode()
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture(params=["starttls", "tls"])
def smtp(
    request: pytest.FixtureRequest, ca: trustme.CA
) -> Iterator[tuple[Inbox, int, str]]:
    inbox = Inbox()
    port = free_port()
    context = server_context(ca)
    if request.param == "starttls":
        controller = Controller(
            inbox,
            hostname="127.0.0.1",
            port=port,
            tls_context=context,
            require_starttls=True,
            authenticator=inbox.authenticate,
            auth_required=True,
        )
    else:
        controller = Controller(
            inbox,
            hostname="127.0.0.1",
            port=port,
            ssl_context=context,
            server_hostname="127.0.0.1",
            authenticator=inbox.authenticate,
            # aiosmtpd 1.4 does not count implicit TLS as TLS for AUTH; the
            # socket speaks only TLS, so a client in clear cannot get this far.
            # (AUTH is still checked: the test asserts the login.)
            auth_require_tls=False,
        )
    controller.start()
    try:
        yield inbox, port, request.param
    finally:
        controller.stop()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", TOKEN, tls_dir=tmp_path / "tls") as r:
        yield r


def failing_job(
    tmp_path: Path,
    district: Path,  # noqa: F811
    live: Receiver,
    extra: str,
) -> Path:
    """A sample job whose upload goes to a closed port (exit 4), with ``extra``."""
    return sample_job(tmp_path, district, live, extra, url="https://127.0.0.1:9/f/")


def test_a_failed_run_is_mailed_over_tls(
    tmp_path: Path,
    district: Path,  # noqa: F811
    ca: trustme.CA,
    smtp: tuple[Inbox, int, str],
    live: Receiver,
) -> None:
    inbox, port, security = smtp
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = failing_job(
        tmp_path,
        district,
        live,
        f"""[notify.email]
to = ["it-oncall@district.example"]
sender = "connector@district.example"
host = "127.0.0.1"
port = {port}
security = "{security}"
user = "connector"
password_secret = "smtp"
ca_file = "ca.pem"
""",
    )
    secret_file(tmp_path / "secrets", "smtp", SMTP_PASSWORD)

    result = connector("run", "-c", str(config), env=bare_env())

    assert result.returncode == 4, result.stderr
    assert inbox.logins == ["connector"], result.stderr
    [message] = inbox.messages
    assert message["To"] == "it-oncall@district.example"
    assert "run failed (exit 4)" in message["Subject"]
    body = message.get_payload(decode=True).decode()
    assert "127.0.0.1:9" in body and "students: " in body
    assert "email notice sent" in result.stderr
    for text in (body, result.stdout, result.stderr):
        assert SMTP_PASSWORD not in text


class Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Hook.received.append((self.headers.get("Authorization", ""), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook(ca: trustme.CA) -> Iterator[str]:
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.socket = server_context(ca).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/hooks/c5a-key"
    finally:
        server.shutdown()
        server.server_close()


def test_a_failed_run_posts_to_the_webhook(
    tmp_path: Path,
    district: Path,  # noqa: F811
    ca: trustme.CA,
    webhook: str,
    live: Receiver,
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = failing_job(
        tmp_path,
        district,
        live,
        f"""[notify.webhook]
url = "{webhook}"
token_secret = "hook"
ca_file = "ca.pem"
""",
    )
    secret_file(tmp_path / "secrets", "hook", HOOK_TOKEN)

    result = connector("run", "-c", str(config), env=bare_env())

    assert result.returncode == 4, result.stderr
    [(authorization, body)] = Hook.received
    assert authorization == f"Bearer {HOOK_TOKEN}"
    assert body["outcome"] == "failed" and body["exit_code"] == 4
    assert "127.0.0.1:9" in body["error"]
    assert body["datasets"]["students"]["written"] > 0
    assert body["uploads"] == 0 and body["business_date"]
    assert HOOK_TOKEN not in json.dumps(body) + result.stdout + result.stderr


def test_an_unreachable_webhook_is_a_warning_not_a_new_exit_code(
    tmp_path: Path,
    district: Path,  # noqa: F811
    ca: trustme.CA,
    live: Receiver,
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = failing_job(
        tmp_path,
        district,
        live,
        '[notify.webhook]\nurl = "https://127.0.0.1:9/hook/secret-path"\n'
        'ca_file = "ca.pem"\n',
    )

    result = connector("run", "-c", str(config), env=bare_env())

    assert result.returncode == 4, result.stderr
    [warning] = [ln for ln in result.stderr.splitlines() if "webhook notice" in ln]
    assert "not delivered" in warning and "secret-path" not in warning
