"""Write the nightly job for cron, a systemd timer or Windows Task Scheduler.

Every form runs the installed console script by its absolute path with the absolute
config path, from the config's folder, so nothing depends on the scheduler's
current directory (``/`` for cron, ``C:\\Windows\\System32`` for Task Scheduler) or
its ``PATH``. A start time inside a daylight-saving change of the schools' zone is
refused: on the spring night it does not happen (or happens late) and on the autumn
night it can happen twice, depending on the scheduler.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import re
import shlex
import sys
import sysconfig
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

from .config import Job
from .errors import ConfigError

Kind = Literal["cron", "systemd", "windows"]
KINDS: tuple[Kind, ...] = ("cron", "systemd", "windows")
TASK_NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Schedule:
    """What the scheduler runs, when, where and as whom."""

    command: Path
    config: Path
    working_folder: Path
    at: dt.time
    zone: str
    user: str
    name: str = "connector"
    secret_files: dict[str, Path | None] = field(default_factory=dict)
    """Each secret the job needs, with the file ``LoadCredential=`` reads, if any."""

    @property
    def arguments(self) -> list[str]:
        return ["run", "--config", str(self.config)]


@dataclass(frozen=True)
class ScheduleFile:
    """One file to install: where it goes by default and what it holds."""

    name: str
    text: str
    encoding: str = "utf-8"


def parse_time(text: str) -> dt.time:
    """``HH:MM`` (24-hour clock) as a time; ``ConfigError`` otherwise."""
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text.strip())
    if not match:
        raise ConfigError(f"--at {text!r}: give the start time as HH:MM, e.g. 03:30")
    return dt.time(int(match.group(1)), int(match.group(2)))


def local_zone_name() -> str:
    """The machine's IANA zone: ``TZ``, then ``/etc/localtime``, else UTC."""
    named = os.environ.get("TZ", "").lstrip(":")
    if named and _is_zone(named):
        return named
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        named = target.split("zoneinfo/", 1)[1]
        if _is_zone(named):
            return named
    try:
        named = Path("/etc/timezone").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        named = ""
    return named if named and _is_zone(named) else "UTC"


def _is_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def dst_problem(at: dt.time, zone: str, today: dt.date) -> str | None:
    """Why ``at`` is unsafe in ``zone`` over the coming year, or ``None``.

    A local time is unsafe on a day when it does not exist (the spring gap) or
    exists twice (the autumn repeat): both show as a different UTC offset for the
    two readings of the same wall-clock time.
    """
    tz = zoneinfo.ZoneInfo(zone)
    for offset in range(366):
        day = today + dt.timedelta(days=offset)
        first = dt.datetime.combine(day, at, tzinfo=tz)
        second = first.replace(fold=1)
        if first.utcoffset() == second.utcoffset():
            continue
        round_trip = first.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None)
        if round_trip != first.replace(tzinfo=None):
            return (
                f"on {day} {at:%H:%M} does not exist in {zone} (the clocks jump "
                "forward over it), so the job would be skipped or run late"
            )
        return (
            f"on {day} {at:%H:%M} happens twice in {zone} (the clocks go back over "
            "it), so the job could run twice"
        )
    return None


def safe_times(at: dt.time, zone: str, today: dt.date) -> tuple[dt.time, dt.time]:
    """The nearest safe times, a whole number of hours before and after ``at``."""

    def step(hours: int) -> dt.time:
        moment = dt.datetime.combine(today, at)
        for _ in range(24):
            moment += dt.timedelta(hours=hours)
            if dst_problem(moment.time(), zone, today) is None:
                return moment.time()
        return at

    return step(-1), step(1)


def check_start_time(at: dt.time, zone: str, today: dt.date | None = None) -> None:
    """Refuse a start time inside a daylight-saving change of ``zone``."""
    today = today or dt.date.today()
    problem = dst_problem(at, zone, today)
    if problem is None:
        return
    before, after = safe_times(at, zone, today)
    raise ConfigError(
        f"--at {at:%H:%M}: {problem}; choose a time outside the change, such as "
        f"{before:%H:%M} or {after:%H:%M}"
    )


def console_script() -> Path:
    """The installed ``connector`` console script beside this Python."""
    name = "connector.exe" if os.name == "nt" else "connector"
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / name, Path(sys.executable).parent / name):
        if candidate.is_file():
            return candidate.absolute()
    raise ConfigError(
        f"the connector console script is not installed beside {sys.executable} "
        f"(looked in {scripts}); install connector with pip into this environment, "
        "or pass --command PATH"
    )


def current_user() -> str:
    if os.name == "nt":
        domain = os.environ.get("USERDOMAIN")
        user = os.environ.get("USERNAME") or getpass.getuser()
        return f"{domain}\\{user}" if domain else user
    return getpass.getuser()


def job_secrets(job: Job) -> dict[str, Path | None]:
    """The secrets the job looks up, with their file in ``[secrets] folder``."""
    from .secrets import named_secrets

    folder = job.secrets_folder
    return {
        name: (folder / name if folder is not None else None)
        for _setting, name in named_secrets(job)
    }


def build_schedule(
    job: Job,
    at: dt.time,
    *,
    name: str = "connector",
    user: str | None = None,
    command: Path | None = None,
    today: dt.date | None = None,
) -> Schedule:
    """The schedule of ``job`` at ``at`` in the schools' zone (else the local one)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"--name {name!r}: use letters, digits, '.', '_' and '-' (a unit or task "
            "name)"
        )
    zone = (job.source.time_zone if job.has_database else None) or local_zone_name()
    check_start_time(at, zone, today)
    if command is not None and not command.is_absolute():
        raise ConfigError(f"--command {command}: give an absolute path")
    return Schedule(
        command=command or console_script(),
        config=job.path,
        working_folder=job.folder,
        at=at,
        zone=zone,
        user=user or current_user(),
        name=name,
        secret_files=job_secrets(job),
    )


def cron_files(schedule: Schedule) -> list[ScheduleFile]:
    """The crontab entry: a comment with the zone, CRON_TZ when it differs."""
    from crontab import CronTab

    tab = CronTab(tab="")
    job = tab.new(command=cron_command(schedule), comment=cron_marker(schedule))
    job.setall(f"{schedule.at.minute} {schedule.at.hour} * * *")
    lines = [
        f"# {schedule.name}: connector run every day at {schedule.at:%H:%M} "
        f"{schedule.zone}, from {schedule.working_folder}",
    ]
    if schedule.zone != local_zone_name():
        lines += [
            "# CRON_TZ is honoured by cronie (RHEL, Fedora, Arch); Debian's and "
            "Ubuntu's cron ignore it",
            "# and use the machine's zone. It also applies to the lines after it.",
            f"CRON_TZ={schedule.zone}",
        ]
    lines.append(str(job.render()))
    return [ScheduleFile(f"{schedule.name}.crontab", "\n".join(lines) + "\n")]


def cron_marker(schedule: Schedule) -> str:
    """The comment that identifies this job's line in a crontab."""
    return f"connector:{schedule.name}"


def cron_command(schedule: Schedule) -> str:
    # cron runs the line with /bin/sh from $HOME: change folder first, by path.
    command = shlex.join([str(schedule.command), *schedule.arguments])
    return f"cd {shlex.quote(str(schedule.working_folder))} && {command}"


def systemd_files(schedule: Schedule, *, system: bool = False) -> list[ScheduleFile]:
    """A oneshot service and its daily timer.

    Each secret is handed over with ``LoadCredential=``: from its file in
    ``[secrets] folder``, else from systemd's credential store
    (``/etc/credstore/<name>``); the job finds it in ``$CREDENTIALS_DIRECTORY``.
    A system unit runs as ``User=``, the account that owns the state folder.
    """
    exec_start = " ".join(
        _systemd_quote(part) for part in [str(schedule.command), *schedule.arguments]
    )
    credentials = []
    for secret, path in schedule.secret_files.items():
        source = f"{secret}:{path}" if path is not None else secret
        credentials.append(f"LoadCredential={_no_specifiers(source)}")
    account = [f"User={schedule.user}"] if system else []
    service = "\n".join(
        [
            "[Unit]",
            f"Description=connector nightly sync ({schedule.config})",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            *account,
            f"WorkingDirectory={_no_specifiers(str(schedule.working_folder))}",
            f"ExecStart={exec_start}",
            *credentials,
            "Environment=LANG=C.UTF-8",
            "UMask=0077",
            "TimeoutStartSec=4h",
            "",
        ]
    )
    timer = "\n".join(
        [
            "[Unit]",
            f"Description=connector nightly sync at {schedule.at:%H:%M} "
            f"{schedule.zone}",
            "",
            "[Timer]",
            f"OnCalendar=*-*-* {schedule.at:%H:%M}:00 {schedule.zone}",
            "Persistent=true",
            f"Unit={schedule.name}.service",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    return [
        ScheduleFile(f"{schedule.name}.service", service),
        ScheduleFile(f"{schedule.name}.timer", timer),
    ]


def _no_specifiers(value: str) -> str:
    # systemd expands %-specifiers in most settings: a literal % is written %%.
    return value.replace("%", "%%")


def _systemd_quote(value: str) -> str:
    # ExecStart= is split on spaces and expands % and $: quote and escape.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = _no_specifiers(escaped).replace("$", "$$")
    return f'"{escaped}"' if re.search(r'[\s"\\]', value) else escaped


def windows_files(
    schedule: Schedule, today: dt.date | None = None
) -> list[ScheduleFile]:
    """A Task Scheduler 1.2 task, run whether the account is logged on or not.

    ``LogonType`` is ``Password`` so the task runs with the account's own profile:
    its Credential Manager entries (the keyring) belong to that account alone.
    """
    today = today or dt.date.today()
    start = dt.datetime.combine(today + dt.timedelta(days=1), schedule.at)
    arguments = " ".join(_windows_quote(a) for a in schedule.arguments)
    xml = f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="{TASK_NAMESPACE}">
  <RegistrationInfo>
    <Author>{escape(schedule.user)}</Author>
    <Description>connector nightly sync of {escape(str(schedule.config))}, \
{schedule.at:%H:%M} {escape(schedule.zone)}</Description>
    <URI>\\{escape(schedule.name)}</URI>
  </RegistrationInfo>
  <Triggers>
    <CalendarTrigger>
      <StartBoundary>{start:%Y-%m-%dT%H:%M:%S}</StartBoundary>
      <ScheduleByDay>
        <DaysInterval>1</DaysInterval>
      </ScheduleByDay>
    </CalendarTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{escape(schedule.user)}</UserId>
      <LogonType>Password</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <StartWhenAvailable>true</StartWhenAvailable>
    <ExecutionTimeLimit>PT4H</ExecutionTimeLimit>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{escape(str(schedule.command))}</Command>
      <Arguments>{escape(arguments)}</Arguments>
      <WorkingDirectory>{escape(str(schedule.working_folder))}</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
"""
    return [ScheduleFile(f"{schedule.name}.xml", xml, encoding="utf-16")]


def _windows_quote(value: str) -> str:
    return f'"{value}"' if re.search(r"\s", value) or not value else value


def schtasks_command(schedule: Schedule, xml: Path) -> str:
    """The ``schtasks`` line that registers the task from its XML file."""
    return (
        f'schtasks /Create /TN "{schedule.name}" /XML "{xml}" '
        f'/RU "{schedule.user}" /RP *'
    )


def schedule_files(
    schedule: Schedule, kind: Kind, *, system: bool = False
) -> list[ScheduleFile]:
    if kind == "cron":
        return cron_files(schedule)
    if kind == "systemd":
        return systemd_files(schedule, system=system)
    return windows_files(schedule)


def systemd_folder(system: bool) -> Path:
    """Where systemd looks for user units (``~/.config/systemd/user``) or system
    units (``/etc/systemd/system``)."""
    if system:
        return Path("/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def write_files(
    files: list[ScheduleFile], folder: Path, *, replace: bool = False
) -> list[Path]:
    """Write each file into ``folder``; an existing different file needs ``replace``."""
    written = []
    for item in files:
        path = folder / item.name
        data = item.text.encode(item.encoding)
        if path.exists() and path.read_bytes() != data and not replace:
            raise ConfigError(
                f"{path} exists with other content; check it, then give --yes to "
                "replace it"
            )
    folder.mkdir(parents=True, exist_ok=True)
    for item in files:
        path = folder / item.name
        tmp = path.with_name(f".{item.name}.tmp")
        tmp.write_bytes(item.text.encode(item.encoding))
        os.replace(tmp, path)
        written.append(path)
    return written


def install_cron(schedule: Schedule, tabfile: Path | None = None) -> str:
    """Put the job into the user's crontab (or ``tabfile``), replacing its old line.

    Returns the line installed. Other lines of the crontab are kept as they are.
    """
    from crontab import CronTab

    try:
        tab = CronTab(tabfile=str(tabfile)) if tabfile else CronTab(user=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the crontab ({exc}); is cron installed (the crontab command)?"
        ) from None
    tab.remove_all(comment=cron_marker(schedule))
    job = tab.new(command=cron_command(schedule), comment=cron_marker(schedule))
    job.setall(f"{schedule.at.minute} {schedule.at.hour} * * *")
    if schedule.zone != local_zone_name():
        # Written just before this line, at the end: earlier lines keep their zone.
        job.env["CRON_TZ"] = schedule.zone
    try:
        tab.write(str(tabfile)) if tabfile else tab.write_to_user(user=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot write the crontab: {exc}") from None
    return str(job.render())
