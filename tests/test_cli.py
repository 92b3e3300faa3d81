"""The command line: help, exit codes, stdout versus stderr, the demo."""

from __future__ import annotations

import subprocess
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

import connector
from connector.cli import app

from .conftest import connector_command

runner = CliRunner()
COMMANDS = ["drivers", "test", "extract", "send", "run", "demo"]


def test_exported_members() -> None:
    public = {
        name
        for name, value in vars(connector).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(connector.__all__) - {"__version__"} == public


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"Example: connector {command}" in result.stdout


def test_top_level_help_lists_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Exit codes" in result.stdout


def test_missing_config_is_one_line_on_stderr(tmp_path: Path) -> None:
    result = runner.invoke(app, ["extract", "-c", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "nope.toml does not exist" in result.stderr


def test_drivers_lists_installed_odbc_drivers() -> None:
    result = runner.invoke(app, ["drivers"])
    assert result.exit_code == 0
    assert "ODBC drivers:" in result.stdout


def test_demo_runs_end_to_end_from_the_installed_script(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = subprocess.run(
        [*connector_command(), "demo", "--folder", str(folder), "--students", "300"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "3 uploads verified" in result.stdout
    for name in ("students", "attendance", "staff"):
        export = folder / "exports" / f"{name}.csv"
        assert export.read_bytes().decode("ascii").endswith("\r\n")
        assert (folder / "received" / f"{name}.csv.gz.pgp").exists()
    assert "error" not in result.stderr.lower()


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [(None, "system"), ("", "system"), ("mimalloc", "mimalloc"), ("bogus", "system")],
)
def test_the_command_line_picks_the_arrow_allocator_unless_told(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    chosen: str | None,
    expected: str,
) -> None:
    import pyarrow as pa

    from connector.cli import lean_arrow_memory

    if chosen is None:
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    else:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", chosen)
    before = pa.default_memory_pool()
    # As pyarrow starts when the variable names an allocator it lacks.
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    try:
        lean_arrow_memory()
        assert pa.default_memory_pool().backend_name == expected
    finally:
        pa.set_memory_pool(before)
    warning = capsys.readouterr().err
    if chosen == "bogus":
        assert warning.startswith("warning: ARROW_DEFAULT_MEMORY_POOL='bogus' is not")
    else:
        assert warning == ""
