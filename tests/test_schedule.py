"""Scheduling: the files that cron, systemd and Task Scheduler are given."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from croniter import croniter
from crontab import CronTab
from typer.testing import CliRunner

from connector.cli import app
from connector.config import load_job
from connector.schedule import (
    TASK_NAMESPACE,
    build_schedule,
    check_start_time,
    cron_files,
    install_cron,
    parse_time,
    windows_files,
)

from .conftest import require

runner = CliRunner()
QUERIES = Path(__file__).parents[1] / "queries" / "rosariosis"
TASK_SCHEMA = Path(__file__).parent / "data" / "task-scheduler-subset.xsd"
TODAY = dt.date(2026, 12, 4)


def write_config(folder: Path, zone: str | None = "America/Chicago") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "secrets").mkdir(mode=0o700, exist_ok=True)
    zone_line = f'time_zone = "{zone}"' if zone else ""
    config = folder / "connector.toml"
    config.write_text(
        f"""
[source]
odbc = "DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;DATABASE=sis"
password_secret = "sis-db"
{zone_line}

[datasets.students]
template = "{QUERIES / "students.sql.j2"}"

[secrets]
folder = "secrets"
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "district one")


def show(config: Path, kind: str, *more: str) -> str:
    result = runner.invoke(
        app, ["schedule", "show", "--kind", kind, "-c", str(config), *more]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    ("at", "zone", "suggested"),
    [
        ("02:30", "America/Chicago", "00:30 or 03:30"),  # skipped in spring
        ("01:30", "America/Chicago", "00:30 or 03:30"),  # twice in autumn
        ("01:30", "Europe/London", "00:30 or 02:30"),
    ],
    ids=["spring-gap", "autumn-repeat", "london"],
)
def test_schedule_refuses_a_time_in_a_dst_change(
    at: str, zone: str, suggested: str
) -> None:
    with pytest.raises(Exception, match=suggested) as caught:
        check_start_time(parse_time(at), zone, TODAY)
    assert zone in str(caught.value)


def test_schedule_accepts_any_time_in_a_zone_without_dst() -> None:
    check_start_time(parse_time("02:30"), "America/Phoenix", TODAY)
    check_start_time(parse_time("02:30"), "UTC", TODAY)


def test_schedule_show_refuses_0230_in_chicago(config: Path) -> None:
    result = runner.invoke(
        app, ["schedule", "show", "--kind", "cron", "-c", str(config), "--at", "02:30"]
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: --at 02:30: ")
    assert "does not exist in America/Chicago" in result.stderr
    assert "00:30 or 03:30" in result.stderr


@pytest.mark.parametrize("at", ["3:30pm", "24:00", "03:60", ""])
def test_schedule_refuses_a_malformed_time(config: Path, at: str) -> None:
    result = runner.invoke(
        app, ["schedule", "show", "-c", str(config), "--kind", "cron", "--at", at]
    )
    assert result.exit_code == 2
    assert "HH:MM" in result.stderr


def test_cron_line_parses_with_cron_libraries(config: Path) -> None:
    text = show(config, "cron", "--at", "03:30")
    tab = CronTab(tab=text)
    [job] = list(tab)
    assert job.is_valid() and job.is_enabled()
    assert job.env["CRON_TZ"] == "America/Chicago"
    expression = str(job.slices)
    assert croniter.is_valid(expression)
    nxt = croniter(expression, dt.datetime(2026, 12, 4, 12, 0)).get_next(dt.datetime)
    assert nxt == dt.datetime(2026, 12, 5, 3, 30)
    # cron starts in $HOME with PATH=/usr/bin:/bin: everything is absolute.
    folder, command = job.command.split(" && ")
    assert folder == f"cd '{config.parent}'"
    script, run, flag, path = command.split(" ", 3)
    assert Path(script).is_absolute() and Path(script).is_file()
    assert (run, flag) == ("run", "--config")
    assert path == f"'{config}'"


def test_cron_install_replaces_its_own_line_only(config: Path, tmp_path: Path) -> None:
    tabfile = tmp_path / "crontab"
    tabfile.write_text("MAILTO=ops@example.invalid\n0 1 * * * /usr/bin/backup\n")
    schedule = build_schedule(load_job(config), parse_time("03:30"), today=TODAY)
    install_cron(schedule, tabfile)
    later = build_schedule(load_job(config), parse_time("04:15"), today=TODAY)
    install_cron(later, tabfile)

    tab = CronTab(tabfile=str(tabfile))
    commands = [(str(j.slices), j.command) for j in tab]
    assert commands[0] == ("0 1 * * *", "/usr/bin/backup")
    assert len(commands) == 2
    assert commands[1][0] == "15 4 * * *"
    text = tabfile.read_text()
    assert text.startswith("MAILTO=ops@example.invalid\n0 1 * * * /usr/bin/backup\n")
    assert text.count("CRON_TZ=America/Chicago") == 1
    assert text.index("CRON_TZ") > text.index("/usr/bin/backup")


def test_cron_names_the_zone_without_cron_tz_when_local(tmp_path: Path) -> None:
    config = write_config(tmp_path / "local", zone=None)
    [item] = cron_files(build_schedule(load_job(config), parse_time("02:00")))
    assert "CRON_TZ" not in item.text
    assert item.text.startswith("# connector: connector run every day at 02:00 ")


@pytest.fixture
def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    require(tool is not None, "systemd-analyze is not installed (Debian: systemd)")
    assert tool is not None
    return tool


def verify(tool: str, folder: Path, *units: str) -> subprocess.CompletedProcess[str]:
    # As the system manager, offline: --man=no skips the manual page lookup.
    return subprocess.run(
        [tool, "verify", "--man=no", *(str(folder / u) for u in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("system", [False, True], ids=["user-unit", "system-unit"])
def test_systemd_units_pass_systemd_analyze_verify(
    config: Path, tmp_path: Path, systemd_analyze: str, system: bool
) -> None:
    units = tmp_path / "units"
    args = ["schedule", "install", "--kind", "systemd", "-c", str(config)]
    args += ["--folder", str(units), "--user", "root"]
    result = runner.invoke(app, [*args, "--system"] if system else args)
    assert result.exit_code == 0, result.output
    assert f"wrote {units / 'connector.service'}" in result.stdout
    assert "enable --now connector.timer" in result.stdout

    checked = verify(systemd_analyze, units, "connector.service", "connector.timer")
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""

    service = (units / "connector.service").read_text()
    lines = service.splitlines()
    assert f"WorkingDirectory={config.parent}" in lines
    [exec_start] = [line for line in lines if line.startswith("ExecStart=")]
    assert exec_start.endswith(f' run --config "{config}"')
    assert exec_start.split("=", 1)[1].split(" ")[0].startswith("/")
    secret = config.parent / "secrets" / "sis-db"
    assert f"LoadCredential=sis-db:{secret}" in lines
    assert ("User=root" in lines) is system
    timer = (units / "connector.timer").read_text()
    assert "OnCalendar=*-*-* 03:30:00 America/Chicago" in timer.splitlines()


def test_systemd_analyze_rejects_a_broken_timer(
    config: Path, tmp_path: Path, systemd_analyze: str
) -> None:
    """The check above is a real one: the tool refuses a bad calendar."""
    units = tmp_path / "units"
    runner.invoke(
        app,
        ["schedule", "install", "--kind", "systemd", "-c", str(config)]
        + ["--folder", str(units)],
    )
    timer = units / "connector.timer"
    timer.write_text(timer.read_text().replace("03:30:00", "27:30:00"))
    checked = verify(systemd_analyze, units, "connector.service", "connector.timer")
    assert checked.returncode != 0
    assert "calendar" in checked.stderr


def test_install_does_not_overwrite_a_changed_file_without_yes(
    config: Path, tmp_path: Path
) -> None:
    units = tmp_path / "units"
    args = ["schedule", "install", "--kind", "systemd", "-c", str(config)]
    args += ["--folder", str(units)]
    assert runner.invoke(app, args).exit_code == 0
    (units / "connector.service").write_text("# edited by hand\n")
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert "give --yes" in refused.stderr
    assert (units / "connector.service").read_text() == "# edited by hand\n"
    assert runner.invoke(app, [*args, "--yes"]).exit_code == 0


def test_cron_install_without_yes_only_prints(config: Path) -> None:
    result = runner.invoke(
        app, ["schedule", "install", "--kind", "cron", "-c", str(config)]
    )
    assert result.exit_code == 0
    assert "30 3 * * *" in result.stdout
    assert "not installed: give --yes" in result.stderr


def task(path: Path) -> ET.Element:
    raw = path.read_bytes()
    assert raw.startswith(b"\xff\xfe"), "UTF-16 with its byte order mark"
    return ET.fromstring(raw.decode("utf-16").split("?>", 1)[1])


def test_windows_task_has_what_task_scheduler_requires(
    config: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        ["schedule", "install", "--kind", "windows", "-c", str(config)]
        + ["--at", "04:00", "--user", "DISTRICT\\svc-connector"],
    )
    assert result.exit_code == 0, result.output
    xml = config.parent / "connector.xml"
    assert f'schtasks /Create /TN "connector" /XML "{xml}"' in result.stdout
    assert '/RU "DISTRICT\\svc-connector" /RP *' in result.stdout

    root = task(xml)
    ns = {"t": TASK_NAMESPACE}
    assert root.tag == f"{{{TASK_NAMESPACE}}}Task"
    assert root.get("version") == "1.2"
    # Task Scheduler 1.2: each of these is required where its parent is present.
    trigger = root.find("t:Triggers/t:CalendarTrigger", ns)
    assert trigger is not None
    start = dt.datetime.fromisoformat(trigger.findtext("t:StartBoundary", "", ns))
    assert start.time() == dt.time(4, 0) and start.tzinfo is None
    assert trigger.findtext("t:ScheduleByDay/t:DaysInterval", "", ns) == "1"
    principal = root.find("t:Principals/t:Principal", ns)
    assert principal is not None
    assert principal.findtext("t:UserId", "", ns) == "DISTRICT\\svc-connector"
    assert principal.findtext("t:LogonType", "", ns) == "Password"
    actions = root.find("t:Actions", ns)
    assert actions is not None
    # The schema's ContextKeyRef: Actions/@Context names a Principal's id.
    assert actions.get("Context") == principal.get("id")
    command = actions.findtext("t:Exec/t:Command", "", ns)
    assert Path(command).is_absolute()
    assert actions.findtext("t:Exec/t:Arguments", "", ns) == (
        f'run --config "{config}"'
    )
    assert actions.findtext("t:Exec/t:WorkingDirectory", "", ns) == str(config.parent)
    settings = root.find("t:Settings", ns)
    assert settings is not None
    assert settings.findtext("t:MultipleInstancesPolicy", "", ns) == "IgnoreNew"
    known = {
        "RegistrationInfo",
        "Triggers",
        "Principals",
        "Settings",
        "Actions",
    }
    assert {child.tag.split("}")[1] for child in root} == known


def test_windows_task_escapes_xml_in_paths(tmp_path: Path) -> None:
    config = write_config(tmp_path / "R&D <x>")
    schedule = build_schedule(load_job(config), parse_time("05:00"), user="a&b")
    [item] = windows_files(schedule, TODAY)
    root = ET.fromstring(item.text.split("?>", 1)[1])
    ns = {"t": TASK_NAMESPACE}
    assert root.findtext("t:Actions/t:Exec/t:WorkingDirectory", "", ns) == str(
        config.parent
    )
    assert root.findtext("t:Principals/t:Principal/t:UserId", "", ns) == "a&b"


@pytest.mark.parametrize("command", ["schedule show", "schedule install"])
def test_schedule_commands_have_help_with_an_example(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert f"Example: connector {command}" in result.stdout


def test_schedule_command_must_be_absolute(config: Path) -> None:
    given = show(config, "systemd", "--command", "/opt/connector/bin/connector")
    assert "ExecStart=/opt/connector/bin/connector run --config" in given
    result = runner.invoke(
        app,
        ["schedule", "show", "-c", str(config), "--command", "bin/connector"],
    )
    assert result.exit_code == 2
    assert "--command bin/connector: give an absolute path" in result.stderr


def test_windows_task_validates_against_the_documented_schema(config: Path) -> None:
    schema = xmlschema.XMLSchema(TASK_SCHEMA)
    schedule = build_schedule(load_job(config), parse_time("04:00"), user="svc")
    [item] = windows_files(schedule, TODAY)
    body = item.text.split("?>", 1)[1]
    schema.validate(body)

    # The schema is strict where Task Scheduler is: order, enumerations, types.
    misplaced = body.replace("</StartBoundary>", "</StartBoundary><Enabled>1</Enabled>")
    assert not schema.is_valid(misplaced)
    assert not schema.is_valid(body.replace("Password", "Passwd"))
    assert not schema.is_valid(body.replace("PT4H", "4 hours"))
    assert not schema.is_valid(body.replace('Context="Author"', 'Context="Other"'))


def test_schedule_makes_a_relative_config_path_absolute(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(config.parent.parent)
    relative = Path(config.parent.name) / config.name
    text = show(relative, "systemd")
    assert "ExecStart=" in text and f'--config "{config}"' in text
    assert f"WorkingDirectory={config.parent}\n" in text
