"""The pre-flight pass: every check the nightly run depends on, one line each.

``run_doctor`` checks, in order: the config (and that a database job sets its
time zone); each secret it names (one from an environment variable warns); the ODBC
driver or DSN (and, for Microsoft's SQL Server drivers, what the connection
string's ``Encrypt`` and ``TrustServerCertificate`` do); the connection and the
server's version; for each data set, read rights on its template's objects (the
query run to return no row) and its row count; each file source's daily file
(present, not too old); the encryption key (an unpinned fingerprint warns); the
destination (TCP reachability, the TLS chain and the clock against the server's
``Date`` header, or the SSH host key against its pin, or the folder); and the free
space in the output and spool folders. A check that cannot run because an earlier
one failed is shown as skipped.

Each line is ``ok``, ``warn`` or ``FAIL`` with what was found and, for a problem,
what to do. The exit code is that of the first failing check (they run from the
most basic up, so the first one is usually the cause), else 0. Secret values are
never shown.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import os
import platform
import re
import shutil
import socket
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import ConfigError, ConnectorError, ExitCode

if TYPE_CHECKING:
    from .config import Job
    from .database import Source

MIN_FREE = 100 * 1024 * 1024
LOW_FREE = 1024 * 1024 * 1024
MAX_SKEW = 300.0
WARN_SKEW = 60.0
PROBE_TIMEOUT = 10.0
DOCTOR_SETTLE = 1.0  # seconds a file source must hold still; its settle may be longer
# What a scheduler hands a job: cron's own environment, roughly `env -i`.
SCHEDULED_PATH = "/usr/bin:/bin"


@dataclass
class Check:
    name: str
    status: str  # "ok", "warn", "FAIL" or "skip"
    detail: str
    exit_code: int = ExitCode.OK

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}"


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        failed = [c for c in self.checks if c.status == "FAIL"]
        return failed[0].exit_code if failed else ExitCode.OK

    def ok(self, name: str, detail: str) -> Check:
        return self._add(Check(name, "ok", detail))

    def warn(self, name: str, detail: str) -> Check:
        return self._add(Check(name, "warn", detail))

    def fail(self, name: str, detail: str, code: int = ExitCode.FAILURE) -> Check:
        return self._add(Check(name, "FAIL", detail, code or ExitCode.FAILURE))

    def skip(self, name: str, detail: str) -> Check:
        return self._add(Check(name, "skip", detail))

    def _add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @contextlib.contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """Turn what a check raises into its FAIL line."""
        try:
            yield
        except ConnectorError as exc:
            self.fail(name, str(exc), exc.exit_code)
        except (OSError, ValueError) as exc:
            self.fail(name, " ".join(str(exc).split()) or type(exc).__name__)


def run_doctor(path: Path) -> DoctorReport:
    """Run every check for the config at ``path``; see the module docstring."""
    from .config import load_job

    report = DoctorReport()
    try:
        job = load_job(path)
    except ConnectorError as exc:
        report.fail("config", str(exc), exc.exit_code)
        return report
    report.ok("config", f"{job.path}: data sets {', '.join(job.datasets)}")
    if job.has_database and job.zone is None:
        report.warn(
            "time zone",
            "source.time_zone is not set: the business date and the timestamps "
            'follow this machine\'s zone; set it (e.g. "America/Chicago")',
        )

    secrets = _check_secrets(job, report)
    if job.has_database:
        has_driver = _check_driver(job, report)
        _check_source(job, report, secrets, has_driver)
    else:
        report.ok("database", "not needed: every data set reads a file source")
    _check_files(job, report)
    _check_destination(job, report)
    _check_disk(report, "output folder", job.output_folder)
    _check_disk(report, "spool folder", job.spool_folder)
    return report


def _check_secrets(job: Job, report: DoctorReport) -> dict[str, str | None]:
    from .secrets import check_value, find_secret, get_secret, named_secrets

    found: dict[str, str | None] = {}
    for setting, name in named_secrets(job):
        found[name] = None
        with report.guard(f"secret {name}"):
            value, lookup = find_secret(name, folder=job.secrets_folder)
            if value is None:
                value = get_secret(name, folder=job.secrets_folder)  # raises
            check_value(setting, name, value)
            found[name] = value
            where = lookup.where or ""
            if where.startswith("environment variable"):
                report.warn(
                    f"secret {name}",
                    f"found in the {where}, which other processes of this account "
                    "can read; prefer a file with mode 0600 or the OS keyring "
                    "(README: Secrets)",
                )
            else:
                report.ok(f"secret {name}", "found (the value is not shown)")
    if not found:
        report.ok("secrets", "the config names none")
    return found


def _check_files(job: Job, report: DoctorReport) -> None:
    """Each daily file as the run checks it (present, not too old), settle cut
    short: doctor must not wait out a long settle."""
    from .files import check_daily_file, file_datasets, format_age

    for name in file_datasets(job, list(job.datasets)):
        with report.guard(f"file source {name}"):
            info = check_daily_file(job, name, settle=DOCTOR_SETTLE)
            report.ok(
                f"file source {name}",
                f"{info.path}: {info.size} bytes, changed {format_age(info.age())} ago",
            )


def _check_driver(job: Job, report: DoctorReport) -> bool:
    """The ODBC driver (and DSN) the source needs; whether the connection may run."""
    from .database import _DRIVER_IN_STRING

    source = job.source
    if source.url:
        from .mariadb import is_mariadb_url
        from .postgres import is_postgres_url

        how = "SQLAlchemy"
        if is_postgres_url(source.url):
            how = "libpq (ADBC)"
        elif is_mariadb_url(source.url):
            how = "MariaDB Connector/Python"
        report.ok("ODBC driver", f"not needed: source.url connects through {how}")
        return True
    try:
        import pyodbc
    except ImportError as exc:
        report.fail(
            "ODBC driver",
            f"pyodbc cannot load ({exc}); install unixODBC (Debian: unixodbc)",
        )
        return False
    drivers = list(pyodbc.drivers())
    bits = f"{struct.calcsize('P') * 8}-bit Python on {platform.system()}"
    driver: str | None = None
    if source.dsn:
        dsns = dict(pyodbc.dataSources())
        if source.dsn not in dsns:
            report.fail(
                "DSN",
                f"no DSN {source.dsn!r} (known: {', '.join(sorted(dsns)) or 'none'}); "
                "add it to odbc.ini, or on Windows in the ODBC Data Source "
                "Administrator of the same bitness as Python",
                ExitCode.USAGE,
            )
            return False
        driver = dsns[source.dsn]
        report.ok("DSN", f"{source.dsn!r} uses driver {driver!r}")
    else:
        match = _DRIVER_IN_STRING.search(source.odbc or "")
        driver = match.group(1).strip() if match else None
    if driver is None:
        report.warn("ODBC driver", "source.odbc names no DRIVER=; the DSN decides")
        return True
    # unixODBC also takes the driver library's path in DRIVER=.
    is_path = "/" in driver or "\\" in driver
    if not (driver in drivers or is_path and Path(driver).is_file()):
        report.fail(
            "ODBC driver",
            f"{driver!r} is not installed ({bits}; installed: "
            f"{', '.join(drivers) or 'none'}); fix DRIVER= in source.odbc or install "
            "the driver (see drivers.md; on Windows its bitness must match Python's)",
            ExitCode.USAGE,
        )
        return False
    report.ok("ODBC driver", f"{driver!r} installed ({bits})")
    if "sql server" in driver.lower():
        status, text = sql_server_encryption(driver, source.odbc or "")
        (report.ok if status == "ok" else report.warn)("SQL Server encryption", text)
    return True


def _odbc_attribute(connection: str, name: str) -> str | None:
    match = re.search(
        rf"(?:^|;)\s*{name}\s*=\s*\{{?([^;}}]*)\}}?", connection, re.IGNORECASE
    )
    return match.group(1).strip().lower() if match else None


def sql_server_encryption(driver: str, connection: str) -> tuple[str, str]:
    """What ``Encrypt`` and ``TrustServerCertificate`` mean for this driver.

    ``("ok" | "warn", explanation)``. Driver 18 encrypts by default and checks the
    server's certificate; 17 and older do not encrypt unless told to.
    """
    version = re.search(r"(\d+)", driver)
    major = int(version.group(1)) if version else 0
    encrypt = _odbc_attribute(connection, "Encrypt")
    trust = _odbc_attribute(connection, "TrustServerCertificate")
    written = (
        f"Encrypt={encrypt or '(not set)'}, "
        f"TrustServerCertificate={trust or '(not set)'}"
    )
    default_on = major >= 18
    encrypted = (
        encrypt in ("yes", "true", "mandatory", "strict")
        or encrypt is None
        and default_on
    )
    if not encrypted:
        return "warn", (
            f"{written}: the connection is not encrypted ({driver} "
            f"{'encrypts by default' if default_on else 'does not encrypt by default'}"
            "); student records cross the network in clear: set Encrypt=yes"
        )
    if trust in ("yes", "true") and encrypt != "strict":
        return "warn", (
            f"{written}: encrypted, but the server's certificate is not checked, "
            "so anyone in between can read the data; install the server's CA in "
            "the system store and remove TrustServerCertificate"
        )
    how = "TDS 8.0 strict" if encrypt == "strict" else "TLS"
    return "ok", (
        f"{written}: encrypted ({how}) and the server's certificate is checked "
        "against the system store; an untrusted or self-signed certificate fails "
        "the login (error 'certificate chain was issued by an authority that is "
        "not trusted')"
    )


def _check_source(
    job: Job, report: DoctorReport, secrets: dict[str, str | None], has_driver: bool
) -> None:
    from .database import open_source

    names = list(job.datasets)
    wanted = job.source.password_secret
    if not has_driver or (wanted is not None and secrets.get(wanted) is None):
        why = "no ODBC driver" if not has_driver else f"secret {wanted} is missing"
        report.skip("database connection", f"not tried: {why}")
        for name in names:
            report.skip(f"data set {name}", "not checked without a connection")
        return
    password = secrets.get(wanted) if wanted else None
    try:
        source = open_source(job.source, password)
    except ConnectorError as exc:
        report.fail("database connection", str(exc), exc.exit_code)
        for name in names:
            report.skip(f"data set {name}", "not checked without a connection")
        return
    with source:
        info = source.describe()
        report.ok(
            "database connection",
            f"{info.dbms} {info.dbms_version} through {info.driver} "
            f"{info.driver_version}".rstrip(),
        )
        for name in names:
            _check_dataset(job, report, source, name)


def _check_dataset(job: Job, report: DoctorReport, source: Source, name: str) -> None:
    """Read rights and columns (the query made to return no row), then COUNT(*)."""
    from .csvout import column_order
    from .pipeline import job_params, render_all
    from .templates import Query

    label = f"data set {name}"
    with report.guard(label):
        query = render_all(job, [name], job_params(job))[name]
        body = query.sql.rstrip().rstrip(";").rstrip()
        probe = Query(
            sql=f"SELECT * FROM (\n{body}\n) connector_probe WHERE 1 = 0",
            params=query.params,
            template=query.template,
        )
        columns, batches = source.stream(probe, 1)
        with contextlib.closing(batches):
            for _ in batches:
                pass
        column_order(job.dataset(name), columns)
        rows = source.count(query)
        if rows == 0 and name in ("students", "staff"):
            report.fail(
                label,
                f"the template {query.template} returns no rows, so the nightly "
                "run would stop; check its parameters (school year, dates) under "
                "[params]",
            )
            return
        report.ok(label, f"read rights and columns ok; COUNT(*) gives {rows} rows")


def _check_destination(job: Job, report: DoctorReport) -> None:
    settings = job.settings.destination
    if settings is None:
        report.warn("destination", "[destination] is missing: nothing can be sent")
        return
    with report.guard("encryption key"):
        from .package import Recipient

        if settings.encryption == "age":
            recipient = Recipient.age_key(settings.age_recipient or "")
        else:
            assert settings.recipient_cert is not None
            recipient = Recipient.openpgp(
                job.resolve(settings.recipient_cert), settings.recipient_fingerprint
            )
        report.ok("encryption key", f"{recipient.format} {recipient.fingerprint}")
        if settings.encryption == "openpgp" and not settings.recipient_fingerprint:
            report.warn(
                "key fingerprint",
                "destination.recipient_fingerprint is not pinned: a replaced "
                "recipient_cert would be used unnoticed; pin it "
                f'(recipient_fingerprint = "{recipient.fingerprint}")',
            )

    if settings.kind == "folder":
        assert settings.path is not None
        folder = job.resolve(settings.path)
        if folder.is_dir() and os.access(folder, os.W_OK):
            report.ok("destination folder", f"{folder} exists and is writable")
        else:
            report.fail(
                "destination folder",
                f"{folder} is missing or not writable by {_account()}; create it "
                "or fix destination.path",
            )
        return
    if settings.kind == "sftp":
        assert settings.host is not None
        if _check_reachable(report, settings.host, settings.port, None):
            _check_host_key(job, report)
        report.skip("clock", "not checked: an SFTP server sends no clock")
        return
    assert settings.url is not None
    parts = urlsplit(settings.url)
    host, port = parts.hostname or "", parts.port or 443
    if _check_reachable(report, host, port, _https_proxy(host, settings.proxy)):
        _check_https(job, report, settings.url)
    else:
        report.skip("TLS certificate", "not checked: the server is not reachable")
        report.skip("clock", "not checked: the server is not reachable")


def _https_proxy(host: str, configured: str | None) -> str | None:
    """The proxy an upload to ``host`` goes through: destination.proxy, else the
    standard HTTPS_PROXY / NO_PROXY, as the uploads use them."""
    import urllib.request

    if configured or urllib.request.proxy_bypass(host):
        return configured
    return urllib.request.getproxies().get("https")


def _check_reachable(
    report: DoctorReport, host: str, port: int, proxy: str | None
) -> bool:
    name = "destination reachable"
    target = (host, port)
    via = ""
    if proxy:
        parts = urlsplit(proxy)
        target = (parts.hostname or "", parts.port or 3128)
        via = f" through the proxy {target[0]}:{target[1]}"
    try:
        with socket.create_connection(target, timeout=PROBE_TIMEOUT):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        report.fail(
            name,
            f"cannot open a TCP connection to {target[0]}:{target[1]}{via} "
            f"({reason}); check the address and port in [destination], DNS, and "
            "that the firewall lets this machine out to it",
            ExitCode.RETRY_LATER,
        )
        return False
    report.ok(name, f"{host}:{port} accepts TCP connections{via}")
    return True


def _check_https(job: Job, report: DoctorReport, url: str) -> None:
    """The TLS chain (against ca_file or the system store), then the clock."""
    import httpx

    from .https import is_certificate_failure, redact, ssl_context

    settings = job.settings.destination
    assert settings is not None
    ca_file = job.destination_path(settings.ca_file)
    against = f"destination.ca_file {ca_file}" if ca_file else "the system trust store"
    try:
        with httpx.Client(
            verify=ssl_context(ca_file),
            proxy=settings.proxy,
            timeout=PROBE_TIMEOUT,
        ) as client:
            response = client.head(url)
    except ConnectorError as exc:
        report.fail("TLS certificate", str(exc), exc.exit_code)
        report.skip("clock", "not checked: no HTTPS answer")
        return
    except httpx.HTTPError as exc:
        if is_certificate_failure(exc):
            report.fail(
                "TLS certificate",
                f"{redact(url)}: the certificate does not verify against {against} "
                f"({' '.join(str(exc).split())}); if the service uses a private CA "
                "set destination.ca_file to it, else fix the system store",
            )
        else:
            report.fail(
                "TLS certificate",
                f"{redact(url)}: no HTTPS answer ({type(exc).__name__}: {exc})",
                ExitCode.RETRY_LATER,
            )
        report.skip("clock", "not checked: no HTTPS answer")
        return
    report.ok("TLS certificate", f"{redact(url)} verified against {against}")
    _check_clock(report, response.headers.get("Date"))


def _check_clock(report: DoctorReport, date: str | None) -> None:
    if not date:
        report.warn("clock", "the server sent no Date header; not compared")
        return
    try:
        theirs = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        report.warn("clock", f"the server's Date header {date!r} is not a date")
        return
    skew = (dt.datetime.now(dt.UTC) - theirs).total_seconds()
    text = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the server"
    if abs(skew) > MAX_SKEW:
        report.fail(
            "clock",
            f"{text}; certificates and business dates depend on it: set up time "
            "synchronisation (systemd-timesyncd, chrony or w32time)",
        )
    elif abs(skew) > WARN_SKEW:
        report.warn("clock", f"{text}; check the machine's time synchronisation")
    else:
        report.ok("clock", text)


def _check_host_key(job: Job, report: DoctorReport) -> None:
    from .sftp import SftpTarget, check_host_key

    settings = job.settings.destination
    assert settings is not None and settings.key_file is not None
    with report.guard("SSH host key"):
        target = SftpTarget(
            host=settings.host or "",
            port=settings.port,
            user=settings.user or "",
            key_file=job.resolve(settings.key_file),
            known_hosts=job.destination_path(settings.known_hosts),
            host_key_fingerprint=settings.host_key_fingerprint,
            timeout=PROBE_TIMEOUT,
        )
        pin = (
            f"destination.known_hosts {target.known_hosts}"
            if target.known_hosts
            else "destination.host_key_fingerprint"
        )
        try:
            offered = check_host_key(target)
        except ConnectorError:
            raise
        except Exception as exc:  # noqa: BLE001 - paramiko's errors vary
            raise ConnectorError(
                f"no SSH handshake with {target.origin} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())}); check destination.host and port",
                exit_code=ExitCode.RETRY_LATER,
            ) from None
        report.ok("SSH host key", f"{offered} matches {pin}")


def _check_disk(report: DoctorReport, name: str, folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        report.fail(
            name,
            f"{folder} cannot be written by {_account()} (checked {existing}); "
            "fix its owner or permissions",
        )
        return
    free = shutil.disk_usage(existing).free
    text = f"{folder}: {free / 2**30:.1f} GiB free"
    if free < MIN_FREE:
        report.fail(name, f"{text}; free some space before the next run")
    elif free < LOW_FREE:
        report.warn(name, f"{text}; less than 1 GiB")
    else:
        report.ok(name, text)


def _account() -> str:
    from .schedule import current_user

    return current_user()


def scheduled_environment(
    kind: str, credentials: dict[str, Path | None], work: Path
) -> dict[str, str]:
    """The environment a scheduled job gets: almost nothing.

    Like cron's or ``env -i``: ``HOME``, ``LOGNAME``, ``USER``, ``SHELL``,
    ``PATH=/usr/bin:/bin`` and ``LANG=C``; no D-Bus session (so no desktop
    keyring), none of the shell's ``CONNECTOR_*`` variables. For ``systemd`` the
    secrets its ``LoadCredential=`` lines name are copied, owner-only, into
    ``work`` and ``CREDENTIALS_DIRECTORY`` points there, as systemd would do.
    """
    home = os.environ.get("HOME") or str(Path.home())
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or _account()
    env = {
        "HOME": home,
        "LOGNAME": user,
        "USER": user,
        "SHELL": "/bin/sh",
        "PATH": SCHEDULED_PATH,
        "LANG": "C",
    }
    if kind == "systemd":
        env["LANG"] = "C.UTF-8"  # the unit's Environment=
        work.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, path in credentials.items():
            source = path or Path("/etc/credstore") / name
            if source.is_file():
                shutil.copyfile(source, work / name)
                (work / name).chmod(0o400)
        env["CREDENTIALS_DIRECTORY"] = str(work)
    return env


def run_as_scheduled(config: Path, kind: str, echo: Callable[[str], None]) -> int:
    """Run ``connector doctor`` again in the scheduled job's environment.

    The console script by its absolute path, from the config's folder (the
    working folder every schedule sets). Returns its exit code.
    """
    import subprocess

    from .config import load_job
    from .schedule import console_script, job_secrets

    if os.name == "nt":
        raise ConfigError(
            "--as-scheduled cannot imitate Task Scheduler; run the task once with "
            "`schtasks /Run /TN connector` and read its exit code"
        )
    job = load_job(config)
    with tempfile.TemporaryDirectory(prefix="connector-doctor-") as tmp:
        env = scheduled_environment(kind, job_secrets(job), Path(tmp) / "credentials")
        shown = " ".join(
            f"{k}={v}" for k, v in env.items() if k not in ("LOGNAME", "SHELL")
        )
        echo(f"as scheduled ({kind}): env -i {shown}, from {job.folder}")
        result = subprocess.run(
            [str(console_script()), "doctor", "--config", str(job.path)],
            env=env,
            cwd=job.folder,
            capture_output=True,
            text=True,
            timeout=600,
        )
    for line in result.stdout.splitlines():
        echo(line)
    if result.stderr.strip():
        sys.stderr.write(result.stderr)
    return result.returncode


def print_report(report: DoctorReport, echo: Callable[[str], None]) -> None:
    for check in report.checks:
        echo(check.line())
    failed = sum(c.status == "FAIL" for c in report.checks)
    warned = sum(c.status == "warn" for c in report.checks)
    if failed:
        echo(
            f"doctor: {failed} check(s) failed, {warned} warning(s); "
            f"exit {report.exit_code}"
        )
    else:
        echo(f"doctor: healthy ({warned} warning(s))")
