"""Keep secret values out of every message, log line and file the connector writes.

Each secret value read by ``connector.secrets`` is remembered here (in memory only,
for the life of the process). ``redact`` replaces every remembered value in a text
with ``***``; ``ConnectorError`` messages, the log handlers, the JSON event log,
notifications and the CLI's last-resort error line all pass through it, so a
driver or library that quotes a password in its own error text does not leak it.
"""

from __future__ import annotations

import threading

MASK = "***"
# Shorter values would mask ordinary words; README: Known limits.
MIN_LENGTH = 4

_known: set[str] = set()
_lock = threading.Lock()


def remember(value: str) -> None:
    """Mask ``value`` (and each of its lines) in everything redacted from now on."""
    with _lock:
        for part in (value, *value.splitlines()):
            part = part.strip()
            if len(part) >= MIN_LENGTH:
                _known.add(part)


def redact(text: str) -> str:
    """``text`` with every remembered secret value replaced by ``***``."""
    if not _known:
        return text
    with _lock:
        # Longest first, so a value that contains another is masked whole.
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
        # Libraries often show a value as Python bytes or repr: b'...\n...'.
        shown = repr(value)[1:-1]
        if shown != value and shown in text:
            text = text.replace(shown, MASK)
    return text


def forget_all() -> None:
    """Forget every remembered value (for tests)."""
    with _lock:
        _known.clear()
