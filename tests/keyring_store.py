"""A keyring backend that stands in for an OS store (Windows Credential Manager,
macOS Keychain, Secret Service), which cannot run on the test machine.

It keeps its entries in the JSON file named by ``CONNECTOR_TEST_KEYRING``, so a
test and the ``connector`` processes it starts share them. Selected with
``PYTHON_KEYRING_BACKEND=tests.keyring_store.FileStore``. The connector treats it
as a real store because its module is none of the insecure ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

BACKEND = "tests.keyring_store.FileStore"


class FileStore(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def _path(self) -> Path:
        return Path(os.environ["CONNECTOR_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._path().read_text()))
        except FileNotFoundError:
            return {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}/{username}"] = password
        self._path().write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError(username)
        self._path().write_text(json.dumps(data))
