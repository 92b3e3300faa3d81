"""Start a district's setup from a query pack: ``connector init``.

A query pack is a folder ``queries/<sis>/`` of the source tree (shipped inside the
package as ``connector/queries/<sis>/``): the three templates, a README of the
pack's rules and ``pack.toml``, which names the SIS, its database kind, the usual
database name and the template parameters with their comments. ``write_setup``
turns a pack and the answers about the database into a commented
``connector.toml`` and copies the templates beside it. Nothing existing is
overwritten unless asked.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .database import odbc_quote
from .datasets import DATASETS
from .errors import ConfigError
from .secrets import SECRETS_FOLDER, make_secrets_folder


@dataclass(frozen=True)
class DatabaseKind:
    """How to reach one kind of database server over ODBC."""

    label: str
    driver: str
    port: int
    integrated_auth: bool = False


# The ODBC driver names are those the drivers register on Debian/Ubuntu and
# Windows; drivers.md lists the alternatives (FreeTDS, other Oracle versions).
DATABASE_KINDS: dict[str, DatabaseKind] = {
    "postgresql": DatabaseKind("PostgreSQL", "PostgreSQL Unicode", 5432),
    "mysql": DatabaseKind("MySQL or MariaDB", "MariaDB Unicode", 3306),
    "sqlserver": DatabaseKind(
        "SQL Server", "ODBC Driver 18 for SQL Server", 1433, integrated_auth=True
    ),
    "oracle": DatabaseKind("Oracle", "Oracle in instantclient_21_12", 1521),
}

PASSWORD_SECRET = "sis-db"
TOKEN_SECRET = "upload-token"
EXAMPLE_SERVER = "sis-db.district.local"


@dataclass(frozen=True)
class Param:
    name: str
    value: Any
    comment: str


@dataclass(frozen=True)
class Pack:
    """A query pack: its folder and what its ``pack.toml`` says."""

    name: str
    folder: Path
    title: str
    database: str
    database_name: str
    tested_live: bool
    params: tuple[Param, ...]

    @property
    def kind(self) -> DatabaseKind:
        return DATABASE_KINDS[self.database]

    def template(self, dataset: str) -> Path:
        return self.folder / f"{dataset}.sql.j2"


@dataclass(frozen=True)
class Answers:
    """What a DBA tells ``init`` about the database; defaults come from the pack."""

    database: str | None = None
    server: str = EXAMPLE_SERVER
    port: int | None = None
    database_name: str | None = None
    integrated: bool = False
    user: str = "connector"
    odbc: str | None = None  # a complete connection string instead of the above
    upload_url: str = "https://upload.example.com/files/"


@dataclass
class Setup:
    """What ``write_setup`` wrote."""

    config: Path
    files: list[Path] = field(default_factory=list)
    needs_password: bool = True


def packs_folder() -> Path:
    """The folder holding the packs.

    An installed package has them in ``connector/queries`` (pyproject maps
    ``queries/`` there); a source checkout or an editable install reads
    ``queries/`` beside the package, the packs' one source.
    """
    installed = Path(__file__).parent / "queries"
    if installed.is_dir():
        return installed
    return Path(__file__).parents[1] / "queries"


def list_packs(folder: Path | None = None) -> list[Pack]:
    """Every pack in ``folder`` (default: the shipped packs), sorted by name."""
    root = folder or packs_folder()
    return [_read_pack(p.parent) for p in sorted(root.glob("*/pack.toml"))]


def find_pack(name: str, folder: Path | None = None) -> Pack:
    """The pack called ``name``; ``ConfigError`` lists the known ones otherwise."""
    packs = {p.name: p for p in list_packs(folder)}
    if name not in packs:
        raise ConfigError(
            f"--sis {name!r}: no such query pack; known: {', '.join(packs)} "
            "(see connector init --list)"
        )
    return packs[name]


def _read_pack(folder: Path) -> Pack:
    meta = tomllib.loads((folder / "pack.toml").read_text(encoding="utf-8"))
    params = tuple(
        Param(name, spec["value"], spec.get("comment", ""))
        for name, spec in meta.get("params", {}).items()
    )
    return Pack(
        name=folder.name,
        folder=folder,
        title=meta["title"],
        database=meta["database"],
        database_name=meta["database_name"],
        tested_live=bool(meta["tested_live"]),
        params=params,
    )


def connection_string(pack: Pack, answers: Answers) -> str:
    """The ODBC connection string for ``answers``, without any password."""
    if answers.odbc:
        return answers.odbc
    kind = DATABASE_KINDS[answers.database or pack.database]
    port = answers.port or kind.port
    name = answers.database_name or pack.database_name
    driver = f"DRIVER={{{kind.driver}}}"
    if kind is DATABASE_KINDS["sqlserver"]:
        parts = [driver, f"SERVER={_attr(answers.server)},{port}", f"DATABASE={name}"]
    elif kind is DATABASE_KINDS["oracle"]:
        parts = [driver, f"DBQ={_attr(f'{answers.server}:{port}/{name}')}"]
    else:
        parts = [
            driver,
            f"SERVER={_attr(answers.server)}",
            f"PORT={port}",
            f"DATABASE={_attr(name)}",
        ]
        if kind is DATABASE_KINDS["mysql"]:
            parts.append("CHARSET=utf8mb4")
    if answers.integrated:
        parts.append("Trusted_Connection=yes")
    else:
        parts.append(f"UID={_attr(answers.user)}")
    return ";".join(parts)


def _attr(value: str) -> str:
    # Braces only when the value needs them, so the usual string stays readable.
    if any(c in value for c in ";{}=") or value != value.strip():
        return odbc_quote(value)
    return value


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def render_config(pack: Pack, answers: Answers) -> str:
    """The commented ``connector.toml`` text for ``pack``."""
    odbc = connection_string(pack, answers)
    status = "tested live" if pack.tested_live else "NOT yet tried on a live database"
    lines = [
        f"# connector config for {pack.title} ({pack.kind.label}), written by",
        f"# `connector init --sis {pack.name}`. The templates beside this file come",
        f"# from the {pack.name} query pack ({status}); its rules are in",
        f"# README-{pack.name}.md. Check with `connector test -c connector.toml`.",
        "# Relative paths start from this file's folder.",
        "",
        "[source]",
        "# The ODBC connection string, without the password (see drivers.md).",
        f"odbc = {_toml(odbc)}",
    ]
    if not answers.integrated:
        # A string given whole may log in without a password (a socket login).
        off = "# " if answers.odbc else ""
        lines += [
            "# The password is looked up under this secret name: a file of that name",
            "# in [secrets] folder, or CONNECTOR_SECRET_SIS_DB, or the OS keyring.",
            f'{off}password_secret = "{PASSWORD_SECRET}"',
        ]
    if DATABASE_KINDS[answers.database or pack.database].driver.endswith("SQL Server"):
        lines += [
            "# ODBC Driver 18 encrypts and verifies the server's certificate: a server",
            "# with a self-signed one is refused; install its CA certificate here",
            "# (drivers.md). Trusting it unverified is warned about on every run.",
            "# encrypt = true",
            "# trust_server_certificate = false",
        ]
    lines += [
        "login_timeout = 30             # seconds to wait for the login",
        "query_timeout = 600            # seconds; 0 for none",
        '# time_zone = "America/Chicago"  # the schools\' zone, for timestamps',
        "",
        "[params]                       # the templates' values (--param overrides)",
    ]
    for param in pack.params:
        lines.append(f"{param.name} = {_toml(param.value)}  # {param.comment}")
    lines += ["", "# One data set per template; students is required."]
    for name in DATASETS:
        lines += [f"[datasets.{name}]", f'template = "{name}.sql.j2"']
        if name == "attendance":
            lines += [
                'periods = "day"                # one row per student and absent day',
                "max_drop = 1.0                 # attendance varies day to day",
            ]
        lines.append("")
    lines += [
        "[output]",
        'folder = "exports"             # the last exports the receiver verified',
        "",
        "[destination]",
        "# Ask the service for its upload URL, token and OpenPGP public key.",
        'kind = "https"                 # or "tus", "sftp", "folder" (README)',
        f"url = {_toml(answers.upload_url)}",
        f"token_secret = {_toml(TOKEN_SECRET)}",
        'recipient_cert = "receiver-public.asc"',
        '# recipient_fingerprint = "..."  # pins the key: strongly advised',
        "",
        "[state]",
        'folder = "state"               # spool, pending exports, upload log, the',
        "                               # gate's store, run lock, sent dates,",
        "                               # heartbeat and backfill progress",
        "",
        "[secrets]",
        "# `connector secrets set NAME` stores a secret in the OS keyring; where",
        "# there is none (a server without a desktop session), as an owner-only",
        "# file in this folder (mode 0700), which is looked in first.",
        f"folder = {_toml(SECRETS_FOLDER)}",
        "",
    ]
    return "\n".join(lines)


def write_setup(
    pack: Pack, folder: Path, answers: Answers | None = None, *, force: bool = False
) -> Setup:
    """Write ``connector.toml`` and the pack's templates and README into ``folder``,
    and make its secrets folder there (mode 0700) unless it exists.

    Raises ``ConfigError`` naming the first file that exists already, before
    writing anything, unless ``force``.
    """
    answers = answers or Answers()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"--folder {folder} is a file, not a folder; give the folder that "
            "connector.toml and the templates should go in"
        )
    config = folder / "connector.toml"
    secrets = folder / SECRETS_FOLDER
    copies = [(pack.template(name), folder / f"{name}.sql.j2") for name in DATASETS]
    copies.append((pack.folder / "README.md", folder / f"README-{pack.name}.md"))
    targets = [config, *(target for _, target in copies)]
    for source, _ in copies:
        if not source.is_file():
            raise ConfigError(f"query pack {pack.name} is incomplete: no {source}")
    if secrets.exists() and not secrets.is_dir():
        raise ConfigError(
            f"{secrets} is a file; the config's [secrets] folder goes there: move "
            "the file; nothing was written"
        )
    if not force:
        for target in targets:
            if target.exists():
                raise ConfigError(
                    f"{target} exists already; nothing was written (--force "
                    "replaces it)"
                )

    text = render_config(pack, answers)
    _check_settings(text)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for source, target in copies:
            shutil.copyfile(source, target)
        config.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write into {folder}: {exc}") from exc
    if make_secrets_folder(secrets):
        targets.append(secrets)
    needs_password = not answers.integrated and not answers.odbc
    return Setup(config=config, files=targets, needs_password=needs_password)


def _check_settings(text: str) -> None:
    # A bad --odbc or --upload-url is refused now, not at the first test.
    from pydantic import ValidationError

    from .config import Settings, _first_problem

    try:
        Settings.model_validate(tomllib.loads(text))
    except ValidationError as exc:
        raise ConfigError(
            f"connector init: {_first_problem(exc)}; nothing was written"
        ) from None


Ask = Callable[[str, str, Sequence[str] | None], str]


def ask_answers(ask: Ask, packs: Sequence[Pack]) -> tuple[Pack, Answers]:
    """Ask the questions a DBA can answer; ``ask(question, default, choices)``.

    The CLI passes a prompt; the library only decides what to ask.
    """
    kinds = [k for k in DATABASE_KINDS if any(p.database == k for p in packs)]
    database = ask("Database kind", kinds[0], kinds)
    kind = DATABASE_KINDS[database]
    names = [p.name for p in packs if p.database == database]
    pack = {p.name: p for p in packs}[ask("SIS product", names[0], names)]
    server = ask("Database server (host name or address)", EXAMPLE_SERVER, None)
    port = ask("Port", str(kind.port), None)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"port {port!r} is not a port number (1 to 65535)")
    name = ask("Database name", pack.database_name, None)
    auth_choices = ["password", "integrated"] if kind.integrated_auth else ["password"]
    auth = ask("Login (password, or Windows integrated)", "password", auth_choices)
    user = "connector"
    if auth == "password":
        user = ask("Database user (the password goes in a secret)", user, None)
    answers = Answers(
        database=database,
        server=server,
        port=int(port),
        database_name=name,
        integrated=auth == "integrated",
        user=user,
    )
    return pack, answers
