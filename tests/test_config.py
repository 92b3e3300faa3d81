from pathlib import Path

import pytest

from connector.config import load_job
from connector.errors import ConfigError

GOOD = """
[source]
odbc = "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;DATABASE=sis"
password_secret = "sis-db"

[params]
school_year = 2024
start = 2024-09-01

[datasets.students]
template = "q/students.sql.j2"

[output]
folder = "out"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "students.sql.j2").write_text(
        "SELECT {{ school_year }}, {{ start }}", encoding="utf-8"
    )
    return tmp_path


def test_paths_resolve_from_the_config_folder(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "connector.toml").write_text(GOOD, encoding="utf-8")
    monkeypatch.chdir("/")
    job = load_job(folder / "connector.toml")
    assert job.template_path("students") == folder / "q" / "students.sql.j2"
    assert job.output_folder == folder / "out"
    assert job.export_name("students") == "students.csv"
    assert "sis-db" in repr(job.source) and "DRIVER" not in repr(job.source)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("template =", "tempalte ="), "datasets.students.tempalte"),
        (("school_year = 2024", "school_year = {a = 1}"), "params.school_year"),
        (('folder = "out"', "folder = 5"), "output.folder"),
        (("q/students.sql.j2", "q/nope.sql.j2"), "datasets.students.template"),
        (("[datasets.students]", "[datasets.pupils]"), "datasets"),
        (('password_secret = "sis-db"', 'url = "sqlite:///x.db"'), "source"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "wrong-type-path",
        "missing-file",
        "bad-set",
        "two-kinds",
    ],
)
def test_config_errors_name_the_key_and_file(
    folder: Path, change: tuple[str, str], key: str
) -> None:
    path = folder / "connector.toml"
    path.write_text(GOOD.replace(*change), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_job(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_a_config_given_by_a_relative_path_is_named_in_full(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "connector.toml").write_text(GOOD.replace("template =", "tempalte ="))
    monkeypatch.chdir(folder)
    with pytest.raises(ConfigError) as info:
        load_job(Path("connector.toml"))
    assert str(info.value).startswith(f"{folder / 'connector.toml'}")


def test_password_in_connection_string_is_refused(folder: Path) -> None:
    path = folder / "connector.toml"
    path.write_text(
        GOOD.replace("DATABASE=sis", "DATABASE=sis;PWD=hunter2"), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="password_secret") as info:
        load_job(path)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://connector:hunter2@sis-db/sis",
        "postgresql://connector:hun/ter2@sis-db/sis",  # a "/" in the password
        "mariadb://connector:9/hunter2@sis-db/sis",
        "postgresql://connector@sis-db/sis?password=hunter2",
        "mysql://connector@sis-db/sis?PWD=hunter2",
    ],
)
def test_password_in_a_url_is_refused(folder: Path, url: str) -> None:
    path = folder / "connector.toml"
    odbc = GOOD.split("odbc = ", 1)[1].split("\n", 1)[0]
    path.write_text(GOOD.replace(odbc, f'"{url}"').replace("odbc = ", "url = "))
    with pytest.raises(ConfigError, match="the URL holds a password") as info:
        load_job(path)
    assert "hunter2" not in str(info.value) and "ter2" not in str(info.value)


@pytest.mark.parametrize(
    ("table", "says"),
    [
        (
            '[notify.webhook]\nurl = "https://hook:hunter2@hooks.example/x"',
            "notify.webhook.url: .*must not carry credentials.*token_secret",
        ),
        (
            '[destination]\nproxy = "http://pu:hunter2@proxy.example:3128"',
            "destination.proxy: .*must not carry credentials.*without a login",
        ),
        (
            '[destination]\nproxy = "socks5://proxy.example:1080"',
            "destination.proxy: .*http:// or https:// URL",
        ),
    ],
    ids=["webhook", "proxy", "proxy-scheme"],
)
def test_credentials_in_a_notice_or_proxy_url_are_refused(
    folder: Path, table: str, says: str
) -> None:
    path = folder / "connector.toml"
    path.write_text(GOOD + table + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=says) as info:
        load_job(path)
    assert "hunter2" not in str(info.value)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://connector@[::1/sis", "does not parse: Invalid IPv6 URL"),
        ("postgresql://connector@sis-db:99999/sis", "Port out of range"),
    ],
)
def test_a_url_that_does_not_parse_says_so(folder: Path, url: str, says: str) -> None:
    path = folder / "connector.toml"
    odbc = GOOD.split("odbc = ", 1)[1].split("\n", 1)[0]
    path.write_text(GOOD.replace(odbc, f'"{url}"').replace("odbc = ", "url = "))
    with pytest.raises(ConfigError, match=says) as info:
        load_job(path)
    assert info.value.exit_code == 2


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_job(tmp_path / "connector.toml")


def test_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "connector.toml"
    path.write_text("[source\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_job(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[[datasets.students.columns]]\nname = "ext"\nheader = "Ext"\n'
            'kind = "extension"\nsource = "email"',
            "connector.toml: datasets.students.columns: extension column 'ext' "
            "needs source = one of the phone columns (alt_phone, phone)",
        ),
        (
            '[[datasets.students.columns]]\nname = "phone"\nheader = "P"\n'
            'kind = "phone"',
            "column 'phone' is already in data set students",
        ),
        (
            '[[datasets.students.columns]]\nname = "Bad Name"\nheader = "B"\n'
            'kind = "text"',
            "datasets.students.columns[1].name: must be a query column name",
        ),
        ('[datasets.students.x]\nkind = "id"', "datasets.students.x: unknown key"),
        ('periods = "event"', "datasets.students.periods: only attendance has"),
        ("period_columns = 3", "datasets.students.period_columns: only attendance"),
        ("max_drop = 2", "datasets.students.max_drop: Input should be less than"),
        ('max_drop = "0.5"', "datasets.students.max_drop: Input should be a valid"),
        ('allow_empty = "yes"', "datasets.students.allow_empty: Input should be a"),
        ("enabled = false", "students data set is required and cannot be disabled"),
        ('file = "run-report.json"', "must be a plain file name ending in .csv"),
        (
            '[[datasets.students.columns]]\nname = "p2"\nheader = "Phone"\n'
            'kind = "text"',
            "datasets.students.columns: the header 'phone' appears twice",
        ),
        (
            '[[datasets.students.columns]]\nname = "p2"\nheader = "P2"\n'
            'kind = "phone"\nmax_length = 12',
            "a phone column is always 10 digits",
        ),
        (
            '[[datasets.students.columns]]\nname = "p2"\nheader = "Say \\"hi\\""\n'
            'kind = "text"',
            "without a double quote",
        ),
    ],
    ids=[
        "extension-source",
        "repeat",
        "name",
        "unknown",
        "periods",
        "period-columns",
        "max-drop",
        "max-drop-text",
        "bool-text",
        "students-off",
        "reserved-file",
        "same-header",
        "phone-length",
        "quote-in-header",
    ],
)
def test_dataset_settings_mistakes_name_the_key(
    folder: Path, extra: str, message: str
) -> None:
    text = GOOD.replace(
        '[datasets.students]\ntemplate = "q/students.sql.j2"\n',
        f'[datasets.students]\ntemplate = "q/students.sql.j2"\n{extra}\n',
    )
    (folder / "connector.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_job(folder / "connector.toml")
    assert message in str(info.value)


def test_added_columns_shape_the_data_set(folder: Path) -> None:
    text = GOOD.replace(
        '[datasets.students]\ntemplate = "q/students.sql.j2"\n',
        '[datasets.students]\ntemplate = "q/students.sql.j2"\n'
        '[[datasets.students.columns]]\nname = "phone_ext"\nheader = "Phone Ext"\n'
        'kind = "extension"\nsource = "phone"\nmax_length = 6\n'
        '[[datasets.students.columns]]\nname = "custom"\nheader = "Custom"\n'
        'kind = "text"\nrequired = true\n',
    )
    (folder / "connector.toml").write_text(text, encoding="utf-8")
    dataset = load_job(folder / "connector.toml").dataset("students")
    assert dataset.headers[-2:] == ("Phone Ext", "Custom")
    assert dataset.selected_names[-1] == "custom"
    assert "phone_ext" not in dataset.selected_names
    assert dataset.column("custom").is_required


def test_two_data_sets_cannot_share_a_file(folder: Path) -> None:
    (folder / "q" / "staff.sql.j2").write_text("SELECT 1", encoding="utf-8")
    text = GOOD.replace(
        '[datasets.students]\ntemplate = "q/students.sql.j2"\n',
        '[datasets.students]\ntemplate = "q/students.sql.j2"\nfile = "people.csv"\n'
        '[datasets.staff]\ntemplate = "q/staff.sql.j2"\nfile = "people.csv"\n',
    )
    (folder / "connector.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="datasets.staff.file: people.csv is also"):
        load_job(folder / "connector.toml")


def test_gate_limits_default_per_data_set(folder: Path) -> None:
    (folder / "connector.toml").write_text(GOOD, encoding="utf-8")
    job = load_job(folder / "connector.toml")
    assert job.gate_limits("students") == (0.10, False)
