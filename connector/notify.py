"""Tell someone when the nightly run failed or was held: by email, by webhook.

``[notify] on`` lists the outcomes that notify (default ``failed`` and ``held``;
also ``sent`` and ``skipped``, the latter for a run that found the date sent
already or the lock held). Each channel configured gets the same facts: the
outcome, the exit code, the error line, the run ID, the business date, the host
and the counts per data set; never a row value or a secret.

- ``[notify.email]``: SMTP with STARTTLS (``security = "starttls"``, port 587) or
  SMTPS (``"tls"``, port 465), never in clear; the password from a secret.
- ``[notify.webhook]``: an HTTPS POST of a JSON body, with an optional bearer token
  from a secret.

A notice that cannot be delivered is a warning on stderr and in the logs; it never
changes the run's exit code.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConnectorError
from .logs import emit
from .redact import redact
from .secrets import get_secret

if TYPE_CHECKING:
    from .config import EmailSettings, Job, WebhookSettings
    from .nightly import Outcome

log = logging.getLogger(__name__)


def notify(job: Job, outcome: Outcome) -> list[str]:
    """Send the notices ``[notify]`` asks for; returns the channels that worked."""
    settings = job.settings.notify
    if outcome.outcome not in settings.on:
        return []
    facts = outcome.as_dict()
    facts["config"] = str(job.path)
    done = []
    channels: list[tuple[str, Any]] = []
    if settings.email is not None:
        channels.append(("email", lambda: send_email(job, settings.email, facts)))
    if settings.webhook is not None:
        channels.append(("webhook", lambda: post_webhook(job, settings.webhook, facts)))
    for channel, deliver in channels:
        try:
            deliver()
        except (ConnectorError, OSError, smtplib.SMTPException, ValueError) as exc:
            log.warning(
                "the %s notice was not delivered: %s: %s",
                channel,
                type(exc).__name__,
                redact(" ".join(str(exc).split())),
            )
            emit("notice", channel=channel, delivered=False, error=type(exc).__name__)
            continue
        log.info("%s notice sent (%s)", channel, outcome.outcome)
        emit("notice", channel=channel, delivered=True)
        done.append(channel)
    return done


def subject(facts: dict[str, Any]) -> str:
    return (
        f"connector: run {facts['outcome']} (exit {facts['exit_code']}) on "
        f"{facts['host']}, business date {facts['business_date'] or '-'}"
    )


def body_text(facts: dict[str, Any]) -> str:
    lines = [
        subject(facts),
        "",
        f"outcome: {facts['outcome']}",
        f"exit code: {facts['exit_code']}",
        f"error: {facts['error'] or '-'}",
        f"run: {facts['run_id']}",
        f"business date: {facts['business_date'] or '-'}",
        f"config: {facts['config']}",
        f"host: {facts['host']}",
        f"uploads verified: {facts['uploads']}",
    ]
    for name, counts in facts["datasets"].items():
        lines.append(
            f"{name}: {counts['fetched']} fetched, {counts['written']} written, "
            f"{counts['rejected']} rejected"
        )
    lines += ["", "The run report and the logs of this run name the details."]
    return redact("\n".join(lines) + "\n")


def _context(job: Job, ca_file: Path | None, key: str) -> ssl.SSLContext:
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(job.resolve(ca_file)))
    except (OSError, ssl.SSLError) as exc:
        raise ConnectorError(f"{key} {ca_file} is not a PEM CA file ({exc})") from None


def send_email(job: Job, settings: EmailSettings, facts: dict[str, Any]) -> None:
    """One message through the SMTP server, always encrypted."""
    context = _context(job, settings.ca_file, "notify.email.ca_file")
    message = EmailMessage()
    message["Subject"] = redact(subject(facts))
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.to)
    message.set_content(body_text(facts))
    password = None
    if settings.password_secret is not None:
        password = get_secret(
            settings.password_secret, folder=job.secrets_folder, config=job.path
        )
    smtp: smtplib.SMTP
    if settings.security == "tls":
        smtp = smtplib.SMTP_SSL(
            settings.host,
            settings.port or 465,
            timeout=settings.timeout,
            context=context,
        )
    else:
        smtp = smtplib.SMTP(
            settings.host, settings.port or 587, timeout=settings.timeout
        )
    with smtp:
        if settings.security == "starttls":
            smtp.starttls(context=context)
        if settings.user is not None and password is not None:
            smtp.login(settings.user, password)
        smtp.send_message(message)


def post_webhook(job: Job, settings: WebhookSettings, facts: dict[str, Any]) -> None:
    """POST the facts as JSON over HTTPS; a status other than 2xx is a failure."""
    import httpx

    context = _context(job, settings.ca_file, "notify.webhook.ca_file")
    headers = {"Content-Type": "application/json"}
    if settings.token_secret is not None:
        token = get_secret(
            settings.token_secret, folder=job.secrets_folder, config=job.path
        )
        headers["Authorization"] = f"Bearer {token}"
    body = redact(json.dumps(facts)).encode("utf-8")
    # A hook's path often holds its own key: name only the host in messages
    # (never user:password@, which the config refuses anyway).
    parts = urlsplit(settings.url)
    where = f"https://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    try:
        response = httpx.post(
            settings.url,
            content=body,
            headers=headers,
            verify=context,
            timeout=settings.timeout,
        )
    except httpx.HTTPError as exc:
        raise ConnectorError(f"POST {where}: {type(exc).__name__}") from None
    if not response.is_success:
        raise ConnectorError(f"POST {where}: HTTP {response.status_code}")
