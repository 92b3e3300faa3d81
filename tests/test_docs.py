"""The README says what the code does: tables, rules, exit codes and the config."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import EXIT_CODES, app
from connector.config import Settings
from connector.datasets import DATASETS, TOO_LONG, markdown_table
from connector.errors import ExitCode

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(DATASETS))
def test_readme_tables_are_the_declarations(name: str) -> None:
    assert markdown_table(DATASETS[name]) in README


def test_readme_states_each_kinds_length_policy() -> None:
    for kind, policy in TOO_LONG.items():
        assert f"- {kind}: {policy}" in README


def test_every_exit_code_is_documented() -> None:
    codes = {
        v for k, v in vars(ExitCode).items() if not k.startswith("_") and k.isupper()
    }
    block = README.split("| code | meaning |", 1)[1].split("\n\n", 1)[0]
    table = {int(c) for c in re.findall(r"^\| (\d+) \|", block, re.MULTILINE)}
    assert table == codes
    for code in codes - {0}:
        assert f"{code} " in EXIT_CODES


def test_the_readme_config_is_a_valid_config() -> None:
    block = README.split("```toml\n", 1)[1].split("```", 1)[0]
    Settings.model_validate(tomllib.loads(block))


def test_the_readme_file_source_config_is_a_valid_config() -> None:
    section = README.split("## File sources", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    Settings.model_validate(tomllib.loads(block))


def test_datasets_command_prints_the_declarations() -> None:
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0
    for dataset in DATASETS.values():
        assert markdown_table(dataset) in result.output
