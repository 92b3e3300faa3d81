"""``connector secrets set | delete | check`` from the installed script: a hidden
prompt on a real pseudo-terminal, ``--from-stdin``, never a prompt without a
terminal; the keyring only when it is a real store (a stand-in, see
tests/keyring_store.py), else an owner-only file in the secrets folder."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app

from .conftest import connector_command
from .keyring_store import BACKEND
from .test_nightly import FAIL_KEYRING, ROOT

VALUE = "s3cret-Value-c5a"


def config(tmp_path: Path) -> Path:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "students.sql.j2").write_text("SELECT 1")
    (tmp_path / "sis.db").touch()  # a missing SQLite file is a config error
    path = tmp_path / "connector.toml"
    path.write_text(
        """
[source]
url = "sqlite:///sis.db"
password_secret = "sis-db"
[datasets.students]
template = "students.sql.j2"
[secrets]
folder = "secrets"
""",
        encoding="utf-8",
    )
    return path


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*connector_command(), "secrets", *args],
        capture_output=True,
        text=True,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHON_KEYRING_BACKEND": FAIL_KEYRING,
            **(env or {}),
        },
        timeout=60,
    )


def test_set_from_stdin_without_a_keyring_writes_an_owner_only_file(
    tmp_path: Path,
) -> None:
    path = config(tmp_path)

    stored = run("set", "sis-db", "-c", str(path), "--from-stdin", stdin=VALUE + "\n")

    assert stored.returncode == 0, stored.stderr
    file = tmp_path / "secrets" / "sis-db"
    assert f"stored in secrets folder {file} (mode 0600)" in stored.stdout
    assert file.read_text() == VALUE
    assert file.stat().st_mode & 0o777 == 0o600
    assert VALUE not in stored.stdout + stored.stderr

    checked = run("check", "-c", str(path))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == (
        f"sis-db (source.password_secret): found in secrets folder {file}\n"
    )

    deleted = run("delete", "sis-db", "-c", str(path))
    assert deleted.returncode == 0
    assert not file.exists()
    missing = run("check", "-c", str(path))
    assert missing.returncode == 3
    assert missing.stdout.startswith("sis-db (source.password_secret): missing; ")
    assert "environment variable CONNECTOR_SECRET_SIS_DB" in missing.stdout
    assert "LoadCredential=sis-db:" in missing.stderr


def test_set_without_a_keyring_or_a_secrets_folder_names_the_setting(
    tmp_path: Path,
) -> None:
    path = config(tmp_path)
    path.write_text(path.read_text().replace('[secrets]\nfolder = "secrets"\n', ""))

    stored = run("set", "sis-db", "-c", str(path), "--from-stdin", stdin=VALUE)

    assert stored.returncode == 2  # a setting is missing, not the secret
    [line] = stored.stderr.splitlines()
    assert line.startswith(
        "error: cannot store 'sis-db': this session has no usable OS keyring"
    )
    assert f"{path} has no [secrets] folder" in line
    assert 'add the lines `[secrets]` and `folder = "secrets"` to it' in line
    assert line.endswith("nothing was stored")
    assert list((tmp_path / "secrets").iterdir()) == []


def test_set_makes_a_missing_secrets_folder_owner_only(tmp_path: Path) -> None:
    path = config(tmp_path)
    folder = tmp_path / "secrets"
    folder.rmdir()

    stored = run("set", "sis-db", "-c", str(path), "--from-stdin", stdin=VALUE)

    assert stored.returncode == 0, stored.stderr
    assert f"made the secrets folder {folder} (mode 0700)" in stored.stderr
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "sis-db").read_text() == VALUE
    assert (folder / "sis-db").stat().st_mode & 0o777 == 0o600
    assert run("check", "-c", str(path)).returncode == 0


def test_run_without_the_secrets_folder_says_how_to_make_it(tmp_path: Path) -> None:
    path = config(tmp_path)
    folder = tmp_path / "secrets"
    folder.rmdir()

    result = subprocess.run(
        [*connector_command(), "run", "-c", str(path)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "PYTHON_KEYRING_BACKEND": FAIL_KEYRING},
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr == (
        f"error: {path}: secrets.folder: no folder at {folder}; run `connector "
        f"secrets set sis-db -c {path}` as the account the job runs as, which "
        "makes it owner-only (0700) as it stores the secret, or `mkdir -m 700 "
        f"{folder}` as that account (no other may read it)\n"
    )
    assert not folder.exists()


def test_the_fix_for_a_missing_secret_fits_the_config(tmp_path: Path) -> None:
    """The LoadCredential= line names the configured folder's file, or systemd's
    store without one (as connector schedule writes it), never a path the
    config does not have; without a folder, the fix says how to add one."""
    path = config(tmp_path)
    file = tmp_path / "secrets" / "sis-db"

    with_folder = run("check", "-c", str(path))

    assert with_folder.returncode == 3
    assert (
        "or, if a systemd unit runs the job, add "
        f"`LoadCredential=sis-db:{file}` to its [Service] section"
    ) in with_folder.stderr
    assert f"else a file with mode 0600 in {file.parent})" in with_folder.stderr

    path.write_text(path.read_text().replace('[secrets]\nfolder = "secrets"\n', ""))
    without = run("check", "-c", str(path))

    assert without.returncode == 3
    assert "/etc/connector/secrets" not in without.stderr
    assert f"`connector secrets set sis-db -c {path}`" in without.stderr
    assert (
        "where there is none, as on a server, first add the lines `[secrets]` and "
        f'`folder = "secrets"` to {path}'
    ) in without.stderr
    assert (
        "add `LoadCredential=sis-db` (systemd reads /etc/credstore/sis-db) to its "
        "[Service] section"
    ) in without.stderr
    assert "a file named by CONNECTOR_SECRET_SIS_DB_FILE" in without.stderr


def test_set_uses_a_real_keyring_when_there_is_one(tmp_path: Path) -> None:
    path = config(tmp_path)
    store = tmp_path / "keyring.json"
    env = {
        "PYTHON_KEYRING_BACKEND": BACKEND,
        "CONNECTOR_TEST_KEYRING": str(store),
        "PYTHONPATH": str(ROOT),
    }

    stored = run("set", "sis-db", "-c", str(path), "--from-stdin", env=env, stdin=VALUE)

    assert stored.returncode == 0, stored.stderr
    assert "stored in OS keyring service 'connector' (FileStore)" in stored.stdout
    assert json.loads(store.read_text()) == {"connector/sis-db": VALUE}
    assert not (tmp_path / "secrets" / "sis-db").exists()
    checked = run("check", "-c", str(path), env=env)
    assert "found in OS keyring service 'connector' (FileStore)" in checked.stdout


def test_set_never_prompts_without_a_terminal(tmp_path: Path) -> None:
    path = config(tmp_path)

    result = run("set", "sis-db", "-c", str(path))

    assert result.returncode == 2
    assert result.stdout == ""
    assert "no terminal to ask for the value on" in result.stderr
    # The command it gives works from any folder: it names the config.
    assert f"connector secrets set sis-db -c {path} --from-stdin" in result.stderr
    assert not (tmp_path / "secrets" / "sis-db").exists()


def read_until(fd: int, text: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, seen
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_set_asks_twice_on_a_terminal_without_echo(tmp_path: Path) -> None:
    path = config(tmp_path)
    command = [*connector_command(), "secrets", "set", "sis-db", "-c", str(path)]
    env = {"PATH": "/usr/bin:/bin", "PYTHON_KEYRING_BACKEND": FAIL_KEYRING}
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(command[0], command, env)
    try:
        # click writes the prompt, then getpass turns echo off and writes " ":
        # type only after that, as getpass discards what came before.
        shown = read_until(fd, b"value of sis-db: ")
        os.write(fd, VALUE.encode() + b"\n")
        shown += read_until(fd, b"Repeat for confirmation: ")
        os.write(fd, VALUE.encode() + b"\n")
        shown += read_until(fd, b"(mode 0600)")
    finally:
        status = wait_or_kill(pid)
        os.close(fd)

    assert os.waitstatus_to_exitcode(status) == 0, shown
    assert VALUE.encode() not in shown
    assert (tmp_path / "secrets" / "sis-db").read_text() == VALUE


def wait_or_kill(pid: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


@pytest.mark.parametrize("command", ["set", "delete", "check"])
def test_each_secrets_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, ["secrets", command, "--help"])
    assert result.exit_code == 0
    assert f"Example: connector secrets {command}" in result.stdout


def test_a_secret_name_cannot_leave_the_folder(tmp_path: Path) -> None:
    path = config(tmp_path)
    result = run("set", "../evil", "-c", str(path), "--from-stdin", stdin=VALUE)
    assert result.returncode == 2
    assert "secret name '../evil' is not allowed" in result.stderr


@pytest.mark.parametrize(
    ("secret", "value", "said"),
    [
        ("sis-db", "abc\ndef\n", "more than one line"),
        ("upload-token", "tok-en \n", "cannot have"),
    ],
    ids=["two-lines", "token-with-a-space"],
)
def test_set_refuses_a_value_the_run_could_not_use(
    tmp_path: Path, secret: str, value: str, said: str
) -> None:
    path = config(tmp_path)
    path.write_text(
        path.read_text()
        + '[destination]\nkind = "folder"\npath = "."\nencryption = "age"\n'
        'age_recipient = "age1x"\ntoken_secret = "upload-token"\n'
    )

    stored = run("set", secret, "-c", str(path), "--from-stdin", stdin=value)

    assert stored.returncode in (2, 3), stored.stderr
    [line] = stored.stderr.splitlines()
    assert line.startswith("error: ") and said in line
    assert not (tmp_path / "secrets" / secret).exists()
    assert "def" not in line and "tok-en" not in line


def test_delete_of_a_missing_secret_is_one_error_line(tmp_path: Path) -> None:
    result = run("delete", "nothere", "-c", str(config(tmp_path)))
    assert result.returncode == 3
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: secret 'nothere' is in")
