"""The ``connector`` command: a thin layer that parses, calls the library, prints.

Results go to stdout, progress and errors to stderr. A ``ConnectorError`` becomes one
line on stderr and its exit code; see ``EXIT_CODES``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from . import __version__
from .errors import ConfigError, ConnectorError, ExitCode, SecretError

EXIT_CODES = """Exit codes: 0 success; 1 failure (also when every upload was verified
but the output folder could not take the exports); 2 usage or configuration error
(config file, template, --param, unknown driver); 3 secret missing or login refused;
4 receiver unreachable or a source file still being written, try again later (the
payload is kept); 5 the receiver holds other bytes than were sent; 6 the safety
gate held the send (an empty export or too many rows gone; see the changes report,
then --accept-change); 7 this business date or this very source file was already
sent (--force sends again); 8 another run of the same config is running (it
holds the run lock), or another process holds the gate's state store locked;
130 stopped by Ctrl-C (SIGINT; a scheduler's SIGTERM is 1). Either stop waits for
a query the server is running to end; nothing is replaced."""

app = typer.Typer(
    name="connector",
    help=(
        "Extract a school SIS database to strict CSV exports and send them, "
        "encrypted and verified, to the notification service.\n\n" + EXIT_CODES
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

log = logging.getLogger("connector")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="CONNECTOR_CONFIG",
        help="The TOML config file; its folder is where relative paths start.",
    ),
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="A template value, NAME=VALUE (repeatable); overrides [params].",
    ),
]
DatasetOption = Annotated[
    list[str] | None,
    typer.Option("--dataset", "-d", help="Only this data set (repeatable)."),
]


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(verbose: bool) -> None:
    from .logs import HUMAN_FORMAT, RedactingFormatter

    handler = _Stderr()
    handler.setFormatter(RedactingFormatter(HUMAN_FORMAT))
    root = logging.getLogger("connector")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _show_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log detail (never row values).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Show the version and exit.",
            is_eager=True,
            callback=_show_version,
        ),
    ] = False,
) -> None:
    _setup_logging(verbose)


def _fail(exc: ConnectorError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(exc.exit_code)


_WRITE_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def os_error_line(exc: OSError, places: Sequence[tuple[str, Path]] = ()) -> str:
    """One line for a filesystem fault: the path, the setting it comes from, the fix.

    ``places`` pairs a setting (``output.folder``, ``--to``) with its folder; the
    first that holds the failed path is named.
    """
    path = Path(str(exc.filename))
    reason = exc.strerror or str(exc)
    found = next(((k, f) for k, f in places if path.is_relative_to(f)), None)
    setting, folder = found if found else ("the folder", path.parent)
    named = f"{setting} {folder}" if found else f"the folder {folder}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"cannot write {path}: no space left on the device holding {folder}; "
            f"free some space there (or point {setting} elsewhere) and run again"
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return (
            f"cannot write {path}: {reason}; {named} must be a folder, and a file "
            "stands in its way: move the file or change the setting"
        )
    verb = "write" if exc.errno in _WRITE_ERRORS else "use"
    return (
        f"cannot {verb} {path}: {reason}; check that {named} exists and this "
        "account may write there"
    )


@contextlib.contextmanager
def _os_errors(places: list[tuple[str, Path]]) -> Iterator[None]:
    """A filesystem fault with a path becomes one line naming it, exit 1."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise
        typer.echo(f"error: {os_error_line(exc, places)}", err=True)
        raise typer.Exit(ExitCode.FAILURE) from None


@contextlib.contextmanager
def _logged(
    job: Any, report: Any, places: Sequence[tuple[str, Path]] = ()
) -> Iterator[None]:
    """The command's log lines and events, as a run's: connector.log gets its
    start, its lines and its outcome with the error line the user sees, and
    events.jsonl its run_start, stage events and run_end."""
    import time

    from .logs import end, run_logs, start
    from .nightly import outcome_of

    started = time.monotonic()
    with run_logs(job, report.run_id):
        start(report.command, job)
        error: BaseException | None = None
        try:
            yield
        except OSError as exc:
            error = ConnectorError(os_error_line(exc, places)) if exc.filename else exc
            raise
        except typer.Exit as exc:  # a failure already shown, as report.error
            if exc.exit_code:
                error = ConnectorError(report.error or "", exit_code=exc.exit_code)
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.monotonic() - started
            end(report.command, **outcome_of(report, None, error, seconds).as_dict())


def _job_places(job: Any) -> list[tuple[str, Path]]:
    return [("output.folder", job.output_folder), ("state.folder", job.state_folder)]


def _params(items: list[str] | None) -> dict[str, Any]:
    from .templates import parse_params

    return parse_params(items or [])


AcceptOption = Annotated[
    bool,
    typer.Option(
        "--accept-change",
        help="Send even if the safety gate holds it (after reading the changes "
        "report).",
    ),
]


def _print_report(report: Any, folder: Path | None = None) -> None:
    """The run report's table on stdout; fixes and warnings summed up on stderr."""
    if report.exports:
        typer.echo(report.table())
    for r in report.exports:
        if r.in_place:  # never a file a failed or interrupted run did not keep
            typer.echo(f"{r.dataset}: {r.path} ({r.written} rows, {r.size} bytes)")
        if r.fixes:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(r.fixes.items()))
            typer.echo(f"{r.dataset}: values fixed: {counts}", err=True)
        for label, counter in (
            ("warnings", r.warnings),
            ("rows rejected", r.rejections),
        ):
            if counter:
                counts = ", ".join(f"{k}={v}" for k, v in sorted(counter.items()))
                typer.echo(f"warning: {r.dataset}: {label}: {counts}", err=True)
    if folder is not None:
        from .report import REPORT_NAME

        typer.echo(f"report: {folder / REPORT_NAME}")


@app.command()
def drivers() -> None:
    """List the ODBC drivers and DSNs installed on this machine.

    Only drivers of Python's own size (32- or 64-bit) are visible: the first line
    says which. drivers.md has the driver to install for each database.

    Example: connector drivers
    """
    from .database import list_drivers
    from .drivers import bitness_note

    try:
        names, dsns = list_drivers()
    except ImportError as exc:  # pragma: no cover - pyodbc needs libodbc
        typer.echo(f"error: pyodbc cannot load: {exc}; install unixODBC", err=True)
        raise typer.Exit(ExitCode.FAILURE) from None
    typer.echo(bitness_note())
    typer.echo("ODBC drivers:")
    for name in names or ["(none)"]:
        typer.echo(f"  {name}")
    typer.echo("DSNs:")
    for dsn, driver in sorted(dsns.items()) or [("(none)", "")]:
        typer.echo(f"  {dsn}\t{driver}")


@app.command()
def datasets(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="CONNECTOR_CONFIG",
            help="Show the data sets as this config shapes them (added columns, "
            "attendance periods).",
        ),
    ] = None,
) -> None:
    """Show each data set's columns: header, query column, kind, limit, required.

    A template must select exactly the query columns (extension columns are taken
    from their phone column). Without --config: the data sets as declared.

    Example: connector datasets -c connector.toml
    """
    from .datasets import DATASETS, TOO_LONG, markdown_table

    try:
        if config is not None:
            from .config import load_job

            job = load_job(config)
            shown = [job.dataset(name) for name in job.datasets]
        else:
            shown = list(DATASETS.values())
    except ConnectorError as exc:
        raise _fail(exc) from None
    for dataset in shown:
        typer.echo(f"{dataset.name}: {dataset.description}\n")
        typer.echo(markdown_table(dataset) + "\n")
    typer.echo("A value longer than its column:")
    for kind, policy in TOO_LONG.items():
        typer.echo(f"  {kind}: {policy}")


@app.command()
def test(
    config: ConfigOption = Path("connector.toml"),
    param: ParamOption = None,
    dataset: DatasetOption = None,
    rows: Annotated[int, typer.Option(min=1, max=100, help="Rows to preview.")] = 5,
    preview: Annotated[
        bool, typer.Option(help="Show the first rows, cleaned, on stdout.")
    ] = True,
) -> None:
    """Check the connection, every template and the destination; writes no export.

    Connects, shows the server and driver, renders and runs each template, and
    checks its columns against the data set, fetching only a few rows. A data set
    read from a file (file_source) shows the file's size, age and hash, how it is
    read (format, encoding, delimiter, header row: detected ones can be pinned
    with the lines shown), its columns and its record count. Then prepares the
    destination as a send would (its secrets, the recipient certificate and its
    pinned fingerprint), without connecting or sending. Its lines and outcome go
    to connector.log in the log folder, as extract's, send's and backfill's do.

    Example: connector test -c /etc/connector/connector.toml --rows 3
    """
    from .checks import check_job
    from .report import RunReport

    report = RunReport(command="test")
    try:
        from .config import load_job

        job = load_job(config)
        with _logged(job, report):
            outcome = check_job(job, names=dataset, params=_params(param), rows=rows)
            _show_checks(outcome, preview)
            failed = [
                c for c in [*outcome.datasets, outcome.destination] if not c.is_ok
            ]
            report.outcome = "failed" if failed else "ok"
            report.error = "; ".join(f"{c.name}: {c.verdict}" for c in failed) or None
            if failed:
                raise typer.Exit(ExitCode.FAILURE)
    except ConnectorError as exc:
        raise _fail(exc) from None


def _show_checks(outcome: Any, preview: bool) -> None:
    if outcome.server is not None:
        typer.echo(
            f"server: {outcome.server.dbms} {outcome.server.dbms_version}\n"
            f"driver: {outcome.server.driver} {outcome.server.driver_version}"
        )
    for check in [*outcome.datasets, outcome.destination]:
        for line in check.details:
            typer.echo(f"{check.name}: {line}")
        typer.echo(f"{check.name}: {check.verdict}", err=not check.is_ok)
        if preview and check.preview:
            for row in check.preview:
                typer.echo("  " + ",".join(f'"{v}"' for v in row))


@app.command()
def extract(
    config: ConfigOption = Path("connector.toml"),
    param: ParamOption = None,
    dataset: DatasetOption = None,
    to: Annotated[
        Path | None,
        typer.Option(help="Write here instead of the config's output folder."),
    ] = None,
) -> None:
    """Run the templates and write the CSV exports; nothing is sent.

    All data sets are written or none: a failure leaves the previous files as they
    were. Prints one line per export: data set, path, rows, bytes. Into the output
    folder it takes the run lock, as run and send do: while another run of the
    config holds it, it exits 8 and writes no file there (--to DIR takes no
    lock).

    Example: connector extract -c connector.toml --param school_year=2025
    """
    from .config import load_job
    from .nightly import run_lock
    from .pipeline import extract as run_extract
    from .report import RunReport

    report = RunReport(command="extract")
    folder: Path | None = None
    places: list[tuple[str, Path]] = []
    try:
        job = load_job(config)
        folder = to.resolve() if to else job.output_folder
        places[:] = [("--to" if to else "output.folder", folder), *_job_places(job)]
        # The output folder holds the last exports the receiver verified, and a
        # run publishes into it: one writer at a time. --to is elsewhere.
        with (
            _os_errors(places),
            _logged(job, report, places),
            contextlib.ExitStack() as held,
        ):
            if folder.resolve() == job.output_folder.resolve():
                held.enter_context(run_lock(job, report.run_id))
            run_extract(
                job, names=dataset, params=_params(param), folder=folder, report=report
            )
            report.outcome = "extracted"
    except ConnectorError as exc:
        report.outcome, report.error = "failed", str(exc)
        _write_report(report, folder, exc)
        raise _fail(exc) from None
    _write_report(report, folder)
    _print_report(report, folder)


def _write_report(
    report: Any, folder: Path | None, error: ConnectorError | None = None
) -> None:
    """The run report into ``folder``; none when the run lock was held by another
    run, whose folder it is (its own report is the one to keep)."""
    from .errors import LockedError

    if folder is not None and not isinstance(error, LockedError):
        try:
            report.write(folder)
        except OSError as exc:
            typer.echo(f"warning: the run report was not written: {exc}", err=True)


@app.command()
def send(
    config: ConfigOption = Path("connector.toml"),
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Exports to send; without them, the pending exports (or else the "
            "output folder's), as described above."
        ),
    ] = None,
    accept_change: AcceptOption = False,
) -> None:
    """Compress, encrypt, upload and verify exports already written.

    Without FILES: the exports a failed or held `connector run` left pending are
    sent and, once verified, moved into the output folder; if nothing is pending,
    the exports in the output folder are sent again (not those it kept when a
    later verified send could not replace them). The safety gate checks each
    export against the last verified send first (exit 6 when it holds).

    Example: connector send -c connector.toml --accept-change
    """
    from .config import load_job
    from .errors import HeldError
    from .nightly import run_lock
    from .report import RunReport

    report = RunReport(command="send")
    folder: Path | None = None
    error: ConnectorError | None = None
    places: list[tuple[str, Path]] = []
    try:
        job = load_job(config)
        folder = job.output_folder
        places[:] = _job_places(job)
        with (
            _os_errors(places),
            _logged(job, report, places),
            run_lock(job, report.run_id),
        ):
            _send(job, files, report, accept_change)
            report.outcome = "sent"
    except ConnectorError as exc:
        report.outcome = "held" if isinstance(exc, HeldError) else "failed"
        report.error = str(exc)
        error = exc
    _write_report(report, folder, error)
    for receipt in report.receipts:  # what arrived, on failure too
        typer.echo(_receipt_line(receipt))
    if error is not None:
        raise _fail(error) from None


def _send(job: Any, files: list[Path] | None, report: Any, accept: bool) -> None:
    from .errors import PublishError
    from .nightly import record_pending_sent
    from .pipeline import check_not_unpublished, pending_exports, send_pending
    from .pipeline import send as run_send

    if files:
        run_send(job, [p.resolve() for p in files], report, accept_change=accept)
    elif pending_exports(job):
        # The pending exports were a run's: once verified, that business date
        # is sent, even if the output folder cannot then take them.
        try:
            send_pending(job, report, accept_change=accept)
        except PublishError:
            record_pending_sent(job, report, heartbeat=False)
            raise
        record_pending_sent(job, report)
    else:
        paths = [job.output_folder / job.export_name(n) for n in job.datasets]
        check_not_unpublished(job, paths)
        run_send(job, paths, report, accept_change=accept)


def _receipt_line(receipt: Any) -> str:
    return (
        f"sent {receipt.name}\t{receipt.size} bytes\tsha256 {receipt.sha256}\t"
        f"verified ({receipt.verified}) after {receipt.attempts} attempt(s)"
    )


@app.command()
def run(
    config: ConfigOption = Path("connector.toml"),
    param: ParamOption = None,
    accept_change: AcceptOption = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Send even if this business date was sent already, or a source "
            "file older than its max_age, or the same file as last time.",
        ),
    ] = False,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            min=0,
            metavar="SECONDS",
            help="Seconds to wait for a fresh source file (default: file_source.wait).",
        ),
    ] = None,
) -> None:
    """The nightly job: extract every data set, gate, then send and verify each.

    One run at a time per state folder: a second run exits 8 at once, naming the
    lock file and its PID. One send per business date (today in
    source.time_zone, else local time): a second run that day exits 7 unless
    --force. Every secret the config names is looked up before any connection
    (exit 3). Rows are validated and counted against COUNT(*) over each
    template; the safety gate compares each export with the last verified send
    and holds an empty one or one that lost too many rows (exit 6; the exports
    stay pending, see DATASET-changes.json in the output folder). The output
    folder is updated only after every upload is verified and recorded as sent;
    if it cannot take the exports then (a file read-only or held open), it keeps
    the previous ones and the run exits 1, saying that the send is done and
    naming the file. Stdout gets the run report's table and a summary line; the
    logs go to stderr, to connector.log and events.jsonl in the log folder, and
    a good run writes the heartbeat file.

    A data set read from a file (file_source) is sent only when the file is
    there, has stopped changing, is not older than max_age and is not the very
    file sent last time (exit 7); --force sends an old or repeated file, --wait
    waits for a fresh one.

    Example: connector run -c /etc/connector/connector.toml --wait 1800
    """
    from .config import load_job
    from .logs import run_logs
    from .nightly import run_nightly
    from .report import RunReport

    report = RunReport(command="run")
    try:
        job = load_job(config)
        params = _params(param)
    except ConnectorError as exc:
        raise _fail(exc) from None
    with run_logs(job, report.run_id), _os_errors(_job_places(job)):
        outcome = run_nightly(
            job,
            params=params,
            report=report,
            accept_change=accept_change,
            force=force,
            wait=wait,
        )
    failed = outcome.failure is not None
    if report.exports or not failed:
        _print_report(report, None if failed else job.output_folder)
    for receipt in report.receipts:  # what arrived, on failure too
        typer.echo(_receipt_line(receipt))
    typer.echo(outcome.summary())
    if outcome.failure is not None:
        raise _fail(outcome.failure)


secrets_app = typer.Typer(
    help="Store, delete and check the secrets the config names (values never "
    "shown).\n\nExample: connector secrets check -c connector.toml",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("set")
def secrets_set(
    name: Annotated[str, typer.Argument(help="The secret's name, as in the config.")],
    config: ConfigOption = Path("connector.toml"),
    from_stdin: Annotated[
        bool,
        typer.Option(
            "--from-stdin", help="Read the value from standard input (one line)."
        ),
    ] = False,
) -> None:
    """Store a secret: in the OS keyring when it is a real store, else in the
    config's [secrets] folder as an owner-only (0600) file; with neither, it
    stops with exit 2. A [secrets] folder that is missing is made, mode 0700.

    The value is typed at a hidden prompt (twice), or read from standard input
    with --from-stdin. Without a terminal and without --from-stdin nothing is
    asked: it stops with exit 2. Run it as the account the job runs as.

    Example: connector secrets set sis-db -c /etc/connector/connector.toml
    """
    from .config import load_job
    from .secrets import check_name, check_value, named_secrets, store_secret

    try:
        check_name(name)
        job = load_job(config, secrets_folder_made=True)  # by store_secret
        if from_stdin:
            value = sys.stdin.readline().rstrip("\r\n")
            if sys.stdin.read().strip():
                raise ConnectorError(
                    f"secret {name!r}: standard input holds more than one line; "
                    "nothing was stored. Give the value alone, on one line",
                    exit_code=ExitCode.USAGE,
                )
        elif sys.stdin.isatty():
            value = typer.prompt(
                f"value of {name}", hide_input=True, confirmation_prompt=True
            )
        else:
            raise ConnectorError(
                "no terminal to ask for the value on; pipe it in with "
                f"`connector secrets set {name} -c {job.path} --from-stdin`",
                exit_code=ExitCode.USAGE,
            )
        for setting, named in named_secrets(job):
            if named == name:
                check_value(setting, name, value)
        where = store_secret(name, value, folder=job.secrets_folder, config=job.path)
    except ConnectorError as exc:
        raise _fail(exc) from None
    typer.echo(f"{name}: stored in {where}")


@secrets_app.command("delete")
def secrets_delete(
    name: Annotated[str, typer.Argument(help="The secret's name, as in the config.")],
    config: ConfigOption = Path("connector.toml"),
) -> None:
    """Delete a secret from the [secrets] folder and the OS keyring.

    Example: connector secrets delete upload-token -c connector.toml
    """
    from .config import load_job
    from .secrets import delete_secret

    try:
        job = load_job(config)
        deleted = delete_secret(name, folder=job.secrets_folder)
    except ConnectorError as exc:
        raise _fail(exc) from None
    if not deleted:
        raise _fail(
            SecretError(
                f"secret {name!r} is in neither the secrets folder "
                f"({job.secrets_folder or 'none set'}) nor the OS keyring; nothing "
                "was deleted. "
                "`connector secrets check` shows where each secret of the config is"
            )
        )
    for where in deleted:
        typer.echo(f"{name}: deleted from {where}")


@secrets_app.command("check")
def secrets_check(config: ConfigOption = Path("connector.toml")) -> None:
    """Look up every secret the config names: one line each, where it was found
    or every place looked. Exit 3 if one is missing.

    Example: connector secrets check -c /etc/connector/connector.toml
    """
    from .config import load_job
    from .secrets import check_value, find_secret, named_secrets, platform_fix

    try:
        job = load_job(config)
        missing = []
        for setting, name in named_secrets(job):
            value, lookup = find_secret(name, folder=job.secrets_folder)
            if value is None:
                missing.append(name)
                typer.echo(
                    f"{name} ({setting}): missing; looked in: "
                    + "; ".join(lookup.looked)
                )
            else:
                try:
                    check_value(setting, name, value)
                except SecretError as exc:
                    missing.append(name)
                    typer.echo(f"{name} ({setting}): found in {lookup.where}; {exc}")
                    continue
                typer.echo(f"{name} ({setting}): found in {lookup.where}")
    except ConnectorError as exc:
        raise _fail(exc) from None
    if not named_secrets(job):
        typer.echo("the config names no secret")
    if missing:
        typer.echo(
            f"error: {len(missing)} secret(s) missing or unusable. "
            + platform_fix(missing[0], job.secrets_folder, job.path),
            err=True,
        )
        raise typer.Exit(ExitCode.SECRETS_OR_AUTH)


@app.command()
def init(
    sis: Annotated[
        str | None,
        typer.Option(help="The query pack to start from (see --list)."),
    ] = None,
    folder: Annotated[
        Path, typer.Option(help="Where connector.toml and the templates go.")
    ] = Path("."),
    list_packs: Annotated[
        bool, typer.Option("--list", help="Show the query packs and exit.")
    ] = False,
    odbc: Annotated[
        str | None,
        typer.Option(help="The ODBC connection string to write, without password."),
    ] = None,
    upload_url: Annotated[
        str | None, typer.Option(help="The receiver's https upload URL.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace a config or template that exists.")
    ] = False,
) -> None:
    """Write a commented connector.toml and a query pack's templates beside it.

    With --sis, writes the pack's settings (edit the server, store the secrets,
    then run connector test). Without --sis, in a terminal, asks for the
    database kind, SIS, server, database and login. Either way it makes the
    secrets folder beside the config, owner-only (0700), where connector secrets
    set keeps a secret when there is no OS keyring. Never replaces an existing
    file unless --force.

    Example: connector init --sis rosariosis --folder /etc/connector
    """
    from . import init as setup

    try:
        packs = setup.list_packs()
        if list_packs:
            for pack in packs:
                live = "tested live" if pack.tested_live else "not tried live"
                typer.echo(f"{pack.name:<18} {pack.kind.label:<17} {live}")
            return
        if sis is not None:
            pack, answers = setup.find_pack(sis), setup.Answers()
        elif sys.stdin.isatty():
            pack, answers = setup.ask_answers(_ask, packs)
        else:
            raise ConfigError(
                "connector init needs --sis NAME when it cannot ask questions "
                "(no terminal); see connector init --list"
            )
        answers = replace(
            answers,
            odbc=odbc or answers.odbc,
            upload_url=upload_url or answers.upload_url,
        )
        done = setup.write_setup(pack, folder, answers, force=force)
    except ConnectorError as exc:
        raise _fail(exc) from None
    for path in done.files:
        typer.echo(str(path))
    names = [setup.PASSWORD_SECRET] if done.needs_password else []
    stores = "; ".join(
        f"connector secrets set {name} -c {done.config}"
        for name in [*names, setup.TOKEN_SECRET]
    )
    what = "the database password and the upload token" if names else "the upload token"
    typer.echo(
        f"next: edit {done.config} (server, destination), store {what} "
        f"(OS keyring, else the secrets folder): {stores}, then "
        f"connector test -c {done.config}",
        err=True,
    )


def _ask(question: str, default: str, choices: Sequence[str] | None) -> str:
    if choices:
        question = f"{question} ({', '.join(choices)})"
    while True:
        answer = str(typer.prompt(question, default=default)).strip()
        if not choices or answer in choices:
            return answer
        typer.echo(f"choose one of: {', '.join(choices)}", err=True)


@app.command()
def demo(
    folder: Annotated[
        Path, typer.Option(help="Where the sample SIS, keys and exports go.")
    ] = Path("connector-demo"),
    students: Annotated[int, typer.Option(min=10, help="Students to invent.")] = 3000,
) -> None:
    """Run the whole nightly job on an invented district, locally.

    Builds a sample SIS in SQLite (invented people), a throwaway OpenPGP key pair
    and TLS certificate, starts a local HTTPS receiver on 127.0.0.1, and runs
    extract, encrypt, upload and verify. Writes only inside --folder, which must
    be new, empty or an earlier demo's (a folder holding anything else is refused).

    Example: connector demo --folder /tmp/connector-demo
    """
    from .demo import run_demo

    try:
        with _os_errors([("--folder", folder.resolve())]):
            result = run_demo(folder.resolve(), students=students)
    except ConnectorError as exc:
        raise _fail(exc) from None
    _print_report(result.report)
    for receipt in result.report.receipts:
        typer.echo(_receipt_line(receipt))
    typer.echo(f"config: {result.config}")
    typer.echo(f"exports: {result.output_folder}")
    typer.echo(
        f"{len(result.report.receipts)} uploads verified by the receiver "
        f"(stored in {result.received_folder})"
    )


@app.command()
def backfill(
    dataset: Annotated[
        str, typer.Argument(metavar="DATASET", help="The data set, e.g. attendance.")
    ],
    start: Annotated[
        str, typer.Option("--from", help="First day, YYYY-MM-DD (included).")
    ],
    end: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD (included).")],
    config: ConfigOption = Path("connector.toml"),
    chunk: Annotated[
        str, typer.Option(help="day, week (Monday to Sunday) or month per query.")
    ] = "week",
    folder: Annotated[
        Path | None,
        typer.Option(help="Where the file goes (default: OUTPUT/backfill)."),
    ] = None,
    send_it: Annotated[
        bool,
        typer.Option(
            "--send",
            help="Also send it, encrypted and verified, to the destination.",
        ),
    ] = False,
    param: ParamOption = None,
) -> None:
    """Export a data set over a date range, one chunk at a time; resumable.

    Each chunk runs the template with start_date and end_date set to its first
    and last day, through the same field rules and checks as the nightly run.
    Run again after an interruption, it resumes at the first unfinished chunk.
    Writes DATASET-FROM-TO.csv; never touches the nightly state, the pending
    exports or the safety gate.

    Example: connector backfill attendance --from 2025-08-04 --to 2026-06-05 --send
    """
    from .backfill import CHUNK_SIZES
    from .backfill import backfill as run_backfill
    from .config import load_job
    from .errors import ConfigError
    from .report import RunReport

    report = RunReport(command="backfill")
    try:
        if chunk not in CHUNK_SIZES:
            raise ConfigError(f"--chunk {chunk!r}: use one of {', '.join(CHUNK_SIZES)}")
        first, last = _date("--from", start), _date("--to", end)
        into = _backfill_folder(folder)
        job = load_job(config)
        with _logged(job, report):
            result = run_backfill(
                job,
                dataset,
                first,
                last,
                chunk=chunk,
                folder=into,
                send=send_it,
                params=_params(param),
                run_id=report.run_id,
            )
            report.outcome = "sent" if send_it else "written"
    except ConnectorError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"{result.dataset}: {result.path} ({result.written} rows, {result.size} "
        f"bytes, sha256 {result.sha256}; {result.chunks} chunks, "
        f"{result.rejected} rows rejected)"
    )
    for receipt in result.receipts:
        typer.echo(_receipt_line(receipt))


def _date(option: str, text: str) -> Any:
    import datetime as dt

    from .errors import ConfigError

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ConfigError(
                f"{option} {text!r}: that day does not exist; give a calendar date"
            ) from None
        raise ConfigError(f"{option} {text!r}: give a date as YYYY-MM-DD") from None


def _backfill_folder(folder: Path | None) -> Path | None:
    """--folder, made if its parent exists: a mistyped path is not made silently."""
    if folder is None:
        return None
    folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--folder {folder} is a file, not a folder")
    if not folder.exists() and not folder.parent.is_dir():
        raise ConfigError(
            f"--folder {folder}: its parent folder {folder.parent} does not exist; "
            "check the path, or create the parent first"
        )
    return folder


@app.command()
def doctor(
    config: ConfigOption = Path("connector.toml"),
    as_scheduled: Annotated[
        bool,
        typer.Option(
            "--as-scheduled",
            help="Run the checks again in the environment a scheduled job gets "
            "(env -i: HOME, PATH=/usr/bin:/bin, LANG=C, no D-Bus, none of your "
            "CONNECTOR_* variables), from the config's folder.",
        ),
    ] = False,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="With --as-scheduled: cron, or systemd (adds the LoadCredential= "
            "secrets as $CREDENTIALS_DIRECTORY).",
        ),
    ] = "cron",
) -> None:
    """Check everything the nightly run needs, one line per check.

    Config, secrets (never shown), ODBC driver and DSN, SQL Server encryption
    settings, connection and server version, read rights and row count per data
    set, encryption key, destination reachable, TLS chain, SSH host key, clock
    skew, free disk in the output and spool folders. Each line is ok, warn or
    FAIL with what to do; the exit code is the first failure's, 0 when healthy.

    Example: connector doctor -c /etc/connector/connector.toml --as-scheduled
    """
    from .doctor import print_report, run_as_scheduled, run_doctor

    if as_scheduled:
        from .errors import ConfigError

        try:
            if kind not in ("cron", "systemd"):
                raise ConfigError(f"--kind {kind!r}: use cron or systemd")
            code = run_as_scheduled(config, kind, typer.echo)
        except ConnectorError as exc:
            raise _fail(exc) from None
        raise typer.Exit(code)
    report = run_doctor(config)
    print_report(report, typer.echo)
    raise typer.Exit(report.exit_code)


schedule_app = typer.Typer(
    help="Schedule the nightly `connector run` with cron, systemd or Task "
    "Scheduler.\n\nExample: connector schedule show --kind systemd -c "
    "/etc/connector/connector.toml --at 03:30",
    no_args_is_help=True,
)
app.add_typer(schedule_app, name="schedule")

KindOption = Annotated[
    str,
    typer.Option("--kind", "-k", help="cron, systemd or windows (Task Scheduler)."),
]
AtOption = Annotated[
    str,
    typer.Option(
        "--at",
        help="Start time, HH:MM in the schools' zone (source.time_zone, else "
        "this machine's); a time inside a daylight-saving change is refused.",
    ),
]
NameOption = Annotated[str, typer.Option(help="The unit, task or crontab entry name.")]
UserOption = Annotated[
    str | None,
    typer.Option(
        help="The account the job runs as (default: you); it must be the one "
        "that holds the secrets."
    ),
]
CommandOption = Annotated[
    Path | None,
    typer.Option(
        "--command",
        help="The connector program the scheduler starts, an absolute path "
        "(default: the console script installed beside this Python).",
    ),
]
SystemOption = Annotated[
    bool,
    typer.Option(
        "--system",
        help="systemd: a system unit in /etc/systemd/system with User=, instead "
        "of a user unit in ~/.config/systemd/user.",
    ),
]


def _schedule(
    config: Path,
    kind: str,
    at: str,
    name: str,
    user: str | None,
    command: Path | None,
) -> Any:
    from .config import load_job
    from .errors import ConfigError
    from .schedule import KINDS, build_schedule, parse_time

    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: use one of {', '.join(KINDS)}")
    job = load_job(config)
    return build_schedule(job, parse_time(at), name=name, user=user, command=command)


@schedule_app.command("show")
def schedule_show(
    config: ConfigOption = Path("connector.toml"),
    kind: KindOption = "systemd",
    at: AtOption = "03:30",
    name: NameOption = "connector",
    user: UserOption = None,
    command: CommandOption = None,
    system: SystemOption = False,
) -> None:
    """Print the scheduler files for the nightly run; nothing is written.

    Absolute paths throughout: the installed console script, the config, and
    the config's folder as the working folder.

    Example: connector schedule show --kind cron -c /etc/connector/connector.toml
    """
    from .schedule import schedule_files, schtasks_command

    try:
        schedule = _schedule(config, kind, at, name, user, command)
        files = schedule_files(schedule, kind, system=system)  # type: ignore[arg-type]
    except ConnectorError as exc:
        raise _fail(exc) from None
    for item in files:
        typer.echo(f"# --- {item.name} ---")
        typer.echo(item.text, nl=False)
    if kind == "windows":
        typer.echo(f"# then: {schtasks_command(schedule, Path(files[0].name))}")


@schedule_app.command("install")
def schedule_install(
    config: ConfigOption = Path("connector.toml"),
    kind: KindOption = "systemd",
    at: AtOption = "03:30",
    name: NameOption = "connector",
    user: UserOption = None,
    command: CommandOption = None,
    system: SystemOption = False,
    folder: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the files (default: the systemd unit folder; "
            "for windows, the config's folder)."
        ),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="cron: install into your crontab; others: replace files."
        ),
    ] = False,
) -> None:
    """Write the scheduler files and say what to run next.

    systemd: writes NAME.service and NAME.timer into the user or (--system)
    system unit folder. windows: writes NAME.xml and prints the schtasks line.
    cron: prints the crontab entry, and with --yes puts it into your crontab,
    replacing an earlier entry of the same name.

    Example: connector schedule install --kind systemd --system -c connector.toml
    """
    from .schedule import (
        install_cron,
        schedule_files,
        schtasks_command,
        systemd_folder,
        write_files,
    )

    try:
        schedule = _schedule(config, kind, at, name, user, command)
        files = schedule_files(schedule, kind, system=system)  # type: ignore[arg-type]
        if kind == "cron":
            if not yes:
                typer.echo(files[0].text, nl=False)
                typer.echo(
                    "not installed: give --yes to add this entry to your crontab, "
                    "or add it with `crontab -e`",
                    err=True,
                )
                return
            line = install_cron(schedule)
            typer.echo(f"installed in your crontab: {line}")
            return
        target = folder or (
            systemd_folder(system) if kind == "systemd" else schedule.working_folder
        )
        written = write_files(files, target.resolve(), replace=yes)
    except ConnectorError as exc:
        raise _fail(exc) from None
    for path in written:
        typer.echo(f"wrote {path}")
    if kind == "windows":
        typer.echo(f"next: {schtasks_command(schedule, written[0])}")
    else:
        ctl = "systemctl" if system else "systemctl --user"
        typer.echo(
            f"next: {ctl} daemon-reload && {ctl} enable --now {schedule.name}.timer"
        )


INTERRUPTED = (
    "stopped {how}; nothing was replaced: the exports and the last sent files are "
    "as they were, and an upload resumes at the next `connector send` or "
    "`connector run`"
)


def _terminated(signum: int, frame: Any) -> None:
    raise ConnectorError(
        INTERRUPTED.format(how=f"by signal {signal.Signals(signum).name}")
    )


def _interrupted(signum: int, frame: Any) -> None:
    # Raised as our error, not KeyboardInterrupt, so that the run's report,
    # events and notice say what happened and the user gets the one line.
    raise ConnectorError(
        INTERRUPTED.format(how="by Ctrl-C"), exit_code=ExitCode.INTERRUPTED
    )


def lean_arrow_memory() -> None:
    """Let pyarrow allocate with the C library's malloc, not its own allocator.

    pyarrow's default (mimalloc) keeps freed pages per thread: a students
    extract peaks about 13 MB higher with it, at the same speed (README,
    "Performance"). ``ARROW_DEFAULT_MEMORY_POOL``, when set to an allocator
    pyarrow has, still decides.
    """
    import pyarrow as pa

    chosen = os.environ.get("ARROW_DEFAULT_MEMORY_POOL")
    if chosen:
        if pa.default_memory_pool().backend_name == chosen:
            return
        typer.echo(
            f"warning: ARROW_DEFAULT_MEMORY_POOL={chosen!r} is not an allocator "
            "this pyarrow has (system, mimalloc and, where built in, jemalloc); "
            "using system. Unset it or fix its value",
            err=True,
        )
    pa.set_memory_pool(pa.system_memory_pool())


def main() -> None:
    """Entry point: anything unexpected is still one line and exit 1."""
    lean_arrow_memory()
    # A scheduler stops a job with SIGTERM: clean up and report like any failure.
    signal.signal(signal.SIGTERM, _terminated)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted)
    # Under LC_ALL=C or a Windows code page, a non-ASCII path in a message must
    # not turn into a UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        app()
    except OSError as exc:
        if exc.filename is None:
            _unexpected(exc)
        from .redact import redact

        typer.echo(f"error: {redact(os_error_line(exc))}", err=True)
        sys.exit(ExitCode.FAILURE)
    except Exception as exc:  # noqa: BLE001 - the last guard before the user
        _unexpected(exc)


def _unexpected(exc: Exception) -> NoReturn:
    """Anything we did not foresee: one line, exit 1, and a request to report it."""
    logging.getLogger("connector").debug("unexpected error", exc_info=True)
    from .database import _scrub
    from .redact import redact

    typer.echo(
        f"error: unexpected {type(exc).__name__}: "
        f"{redact(_scrub(str(exc), None))} "
        "(run with -v for the traceback; please report it)",
        err=True,
    )
    sys.exit(ExitCode.FAILURE)
