"""docker/: every file the Dockerfiles copy and the compose file names exists.

No Docker engine runs on the development machine (docker/README.md), so the
images are not built here; these checks catch a renamed or missing file.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from .conftest import require

ROOT = Path(__file__).parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"


def _interpolate(text: str) -> str:
    """Compose's ``${NAME:-default}``: the variable's value, else the default."""
    return re.sub(
        r"\$\{(\w+)(?::?-([^}]*))?\}",
        lambda m: os.environ.get(m.group(1)) or m.group(2) or "",
        text,
    )


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(_interpolate(COMPOSE.read_text()))
    assert isinstance(loaded, dict)
    return loaded


def instructions(dockerfile: Path) -> list[tuple[str, list[str]]]:
    """(instruction, arguments) per line, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        args = yaml.safe_load(rest) if rest.startswith("[") else shlex.split(rest)
        found.append((word.upper(), [str(a) for a in args]))
    return found


def copied_sources(dockerfile: Path) -> list[str]:
    sources = []
    for word, args in instructions(dockerfile):
        if word not in ("COPY", "ADD"):
            continue
        if any(a.startswith("--from=") for a in args):
            continue  # from another stage or image, not the build context
        paths = [a for a in args if not a.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def dockerfiles() -> list[tuple[Path, Path]]:
    """Each Dockerfile with its build context (the repository root for the image)."""
    pairs = {(DOCKER / "Dockerfile", ROOT)}
    for service in compose()["services"].values():
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            pairs.add((context / build.get("dockerfile", "Dockerfile"), context))
    return sorted(pairs)


@pytest.mark.parametrize(
    ("dockerfile", "context"), dockerfiles(), ids=[d.name for d, _ in dockerfiles()]
)
def test_every_file_a_dockerfile_copies_exists(dockerfile: Path, context: Path) -> None:
    assert dockerfile.is_file(), dockerfile
    sources = copied_sources(dockerfile)
    assert sources, f"{dockerfile} copies nothing?"
    for source in sources:
        assert (context / source).exists(), f"{dockerfile.name}: COPY {source}"


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    mounts = []
    for volume in service.get("volumes", []):
        host, container = str(volume).split(":")[:2]
        if host.startswith((".", "/")):
            mounts.append(((DOCKER / host).resolve(), PurePosixPath(container)))
    return mounts


def _on_host(service: dict[str, Any], token: str) -> Path | None:
    """The host file behind a path the service's command names, if mounted."""
    path = PurePosixPath(service.get("working_dir", "/")) / token
    for host, container in _bind_mounts(service):
        if path == container or container in path.parents:
            return host / path.relative_to(container)
    return None


def test_every_path_the_compose_file_names_exists() -> None:
    config = compose()
    services = config["services"]
    named_volumes = set(config.get("volumes") or {})
    checked = 0
    for name, service in services.items():
        for host, _ in _bind_mounts(service):
            assert host.exists(), f"{name}: volume {host} does not exist"
            checked += 1
        for volume in service.get("volumes", []):
            host = str(volume).split(":")[0]
            if not host.startswith((".", "/")):
                assert host in named_volumes, f"{name}: volume {host} is not declared"
        for other in service.get("depends_on", {}):
            assert other in services, f"{name} depends on unknown {other}"
        network = service.get("network_mode", "")
        if network.startswith("service:"):
            assert network.removeprefix("service:") in services
        for token in service.get("command", []):
            if "/" in token:
                host_path = _on_host(service, token)
                assert host_path is not None, f"{name}: {token} is not mounted"
                assert host_path.is_file(), f"{name}: {token} -> {host_path}"
                checked += 1
    assert checked >= 5  # the clone, shared/, shared/sis, both commands


def test_the_sis_databases_are_loaded_by_the_script_in_shared() -> None:
    load = compose()["services"]["load-sis"]
    assert load["command"][-1] == "/shared/sis/load_all.sh"
    host = _on_host(load, "/shared/sis/load_all.sh")
    assert host is not None and host.name == "load_all.sh"
    assert compose()["services"]["tests"]["command"] == ["bash", ".ci/run"]


def test_the_driver_check_passes_against_the_real_unixodbc() -> None:
    require(shutil.which("odbcinst") is not None, "unixODBC's odbcinst is missing")
    script = DOCKER / "odbcinst-check.sh"
    here = ["PostgreSQL Unicode", "MariaDB Unicode", "SQLite3"]
    ok = subprocess.run(["sh", str(script), *here], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        ["sh", str(script), "No Such Driver 9"], capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "'No Such Driver 9' is not registered" in missing.stderr
