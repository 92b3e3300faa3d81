"""File sources: SIS exports and spreadsheets through the same pipeline.

The tests write the files themselves, from the same invented rows, in the shapes
SIS exports come in, and compare the exports byte for byte with the one made from
the same rows in a SQLite database read over the real SQLite3 ODBC driver. Runs
send to the real reference receiver, which shows what arrived.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pyodbc
import pytest
from typer.testing import CliRunner

from connector.cli import app
from connector.config import Job, load_job
from connector.datasets import STUDENTS
from connector.errors import (
    AlreadyDoneError,
    ConfigError,
    ExitCode,
    ExportError,
    SourceFileError,
)
from connector.files import (
    SENT_NAME,
    detect_delimiter,
    detect_encoding,
    open_file_source,
)
from connector.package import make_keypair
from connector.pipeline import extract, run
from connector.receiver import Receiver

from .conftest import TOKEN, connector_command, require

# The SIS's own column names, as its export writes them.
HEADER = [
    "STUDENT_NUMBER",
    "FIRST",
    "LAST",
    "HOME_PHONE",
    "SCHOOL",
    "LANG",
    "CELL",
    "EMAIL",
    "GRADE",
    "GENDER",
]
# Invented people; accents that Windows-1252, Latin-1 and UTF-16 all hold.
ROWS = [
    ["1001", "Zoë", "Müller", "(312) 555-0142", "101", "de", "", "zoe@example.org"]
    + ["05", "F"],
    ["1002", "José", "Núñez", "312.555.0177", "101", "es", "217-555-0199", ""]
    + ["04", "M"],
    ["1003", "Amélie", "Lefèvre", "", "101", "fr", "", "amelie@example.org"]
    + ["K", "F"],
    ["1004", "Björn", "Ångström", "2175550123", "101", "", "", ""] + ["12", "M"],
    ["1005", "Ana María", "Peña", "217 555 0188", "101", "es", "", ""] + ["03", ""],
]
# The mapping kept in the config: data set column = the SIS's column.
NAME_MAP = """[datasets.students.map]
student_id = "STUDENT_NUMBER"
first_name = "FIRST"
last_name = "LAST"
phone = "HOME_PHONE"
school = "SCHOOL"
language = "LANG"
alt_phone = "CELL"
email = "EMAIL"
grade = "GRADE"
gender = "GENDER"
"""
POSITION_MAP = "[datasets.students.map]\n" + "".join(
    f"{name} = {i}\n"
    for i, name in enumerate(
        STUDENTS.column_names,
        start=1,
    )
)
PINNED = "columns = [" + ", ".join(f'"{h}"' for h in HEADER) + "]\n"


def write_text(
    path: Path,
    header: list[str] | None,
    rows: list[list[str]],
    *,
    delimiter: str,
    encoding: str,
    newline: str,
    quoted: bool,
    bom: bytes = b"",
) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        delimiter=delimiter,
        lineterminator=newline,
        quoting=csv.QUOTE_ALL if quoted else csv.QUOTE_MINIMAL,
    )
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(bom + buffer.getvalue().encode(encoding))
    return path


def write_xlsx(
    path: Path,
    header: list[str],
    rows: list[list[str]],
    *,
    title: str | None = None,
    sheet: str = "Students",
) -> Path:
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.title = sheet
    if title:
        ws.append([title])
        ws.append([])
    ws.append(header)
    for row in rows:
        ws.append(row)
    book.create_sheet("Notes").append(["kept by the school office"])
    book.save(path)
    return path


# name: (file, delimiter, encoding, line end, every field quoted, byte-order mark)
TEXT_SHAPES = {
    "semicolon-cp1252-crlf": ("students.csv", ";", "cp1252", "\r\n", True, b""),
    "tab-utf16-bom": (
        "students.txt",
        "\t",
        "utf-16-le",
        "\r\n",
        False,
        codecs.BOM_UTF16_LE,
    ),
    "comma-unquoted-utf8-lf": ("students.csv", ",", "utf-8", "\n", False, b""),
    "pipe-utf8-bom-quoted": (
        "students.txt",
        "|",
        "utf-8",
        "\r\n",
        True,
        codecs.BOM_UTF8,
    ),
    "semicolon-latin1-lf": ("students.csv", ";", "latin-1", "\n", False, b""),
}


def write_shape(folder: Path, shape: str) -> Path:
    if shape == "xlsx-title-row":
        return write_xlsx(
            folder / "students.xlsx", HEADER, ROWS, title="Lincoln Elementary contacts"
        )
    name, delimiter, encoding, newline, quoted, bom = TEXT_SHAPES[shape]
    return write_text(
        folder / name,
        HEADER,
        ROWS,
        delimiter=delimiter,
        encoding=encoding,
        newline=newline,
        quoted=quoted,
        bom=bom,
    )


SHAPES = [*TEXT_SHAPES, "xlsx-title-row"]


def file_config(
    folder: Path,
    path: Path,
    *,
    source: str = "",
    mapping: str = NAME_MAP,
    destination: str = "",
) -> Job:
    config = folder / "connector.toml"
    config.write_text(
        f"""
[datasets.students.file_source]
path = "{path}"
settle = 0
{source}
{mapping}
{destination}
[output]
folder = "exports"
[state]
folder = "state"
""",
        encoding="utf-8",
    )
    return load_job(config)


@pytest.fixture(scope="module")
def database_export(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The students export made from ROWS in SQLite, over the SQLite3 ODBC driver,
    through the same mapping (a view's columns renamed)."""
    require("SQLite3" in pyodbc.drivers(), "the SQLite3 ODBC driver is missing")
    folder = tmp_path_factory.mktemp("database")
    db = folder / "sis.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE export ({', '.join(f'{h} TEXT' for h in HEADER)})")
        conn.executemany(
            f"INSERT INTO export VALUES ({', '.join('?' * len(HEADER))})",
            [[v or None for v in row] for row in ROWS],
        )
    (folder / "students.sql.j2").write_text("SELECT * FROM export ORDER BY rowid\n")
    (folder / "connector.toml").write_text(
        f"""
[source]
odbc = "DRIVER={{SQLite3}};Database={db}"
[datasets.students]
template = "students.sql.j2"
{NAME_MAP.replace("[datasets.students.map]", "[datasets.students.map]")}
[output]
folder = "exports"
""",
        encoding="utf-8",
    )
    job = load_job(folder / "connector.toml")
    [result] = extract(job)
    assert result.written == len(ROWS)
    return result.path.read_bytes()


@pytest.mark.parametrize("shape", SHAPES)
def test_file_export_equals_the_database_export(
    tmp_path: Path, shape: str, database_export: bytes
) -> None:
    path = write_shape(tmp_path, shape)
    job = file_config(tmp_path, path)
    [result] = extract(job)
    assert result.path.read_bytes() == database_export
    assert (result.fetched, result.written, result.expected) == (5, 5, 5)


def test_constant_and_default_fill_a_single_school_sheet(
    tmp_path: Path, database_export: bytes
) -> None:
    without_school = [h for h in HEADER if h != "SCHOOL"]
    rows = [[v for h, v in zip(HEADER, r, strict=True) if h != "SCHOOL"] for r in ROWS]
    rows[3][4] = ""  # a language left blank: the default fills it
    path = write_xlsx(tmp_path / "office.xlsx", without_school, rows)
    mapping = NAME_MAP.replace('school = "SCHOOL"', 'school = { value = "101" }')
    job = file_config(tmp_path, path, mapping=mapping, source='sheet = "Students"')
    [result] = extract(job)
    assert result.path.read_bytes() == database_export

    defaulted = mapping.replace(
        'language = "LANG"', 'language = { column = "LANG", default = "en" }'
    )
    job = file_config(tmp_path, path, mapping=defaulted)
    [result] = extract(job)
    assert b'"1004","Bjorn","Angstrom","2175550123","101","en"' in (
        result.path.read_bytes()
    )


def test_detection_of_encodings_and_delimiters() -> None:
    text = "a;b;c\r\n1;Zoë;x\r\n"
    assert detect_encoding(text.encode("cp1252")) == "cp1252"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"
    assert detect_encoding(codecs.BOM_UTF8 + text.encode("utf-8")) == "utf-8-sig"
    assert detect_encoding(codecs.BOM_UTF16_LE + text.encode("utf-16-le")) == "utf-16"
    assert detect_encoding(text.encode("utf-16-be")) == "utf_16_be"
    for delimiter in ",;\t|":
        assert detect_delimiter(text.replace(";", delimiter)) == delimiter


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("CONNECTOR_SECRET_UPLOAD_TOKEN", TOKEN)
    with Receiver(tmp_path / "received", TOKEN, tls_dir=tmp_path / "tls") as r:
        yield r


def destination(tmp_path: Path, live: Receiver) -> str:
    public, _ = make_keypair(tmp_path / "keys")
    return f"""[destination]
url = "{live.url}"
token_secret = "upload-token"
ca_file = "{live.ca_file}"
recipient_cert = "{public}"
attempts = 1
"""


def received(live: Receiver) -> list[str]:
    return sorted(p.name for p in live.folder.glob("*") if p.is_file())


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def script(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as the scheduler starts it."""
    return subprocess.run(
        [*connector_command(), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "CONNECTOR_SECRET_UPLOAD_TOKEN": TOKEN},
        timeout=120,
    )


def semicolon_file(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    return write_text(
        path,
        header,
        rows,
        delimiter=";",
        encoding="cp1252",
        newline="\r\n",
        quoted=True,
    )


def test_a_renamed_column_stops_the_run_and_nothing_is_sent(
    tmp_path: Path, live: Receiver
) -> None:
    renamed = ["FIRST_NAME" if h == "FIRST" else h for h in HEADER]
    path = semicolon_file(tmp_path / "students.csv", renamed, ROWS)
    job = file_config(tmp_path, path, destination=destination(tmp_path, live))

    code, _, stderr = cli("run", "-c", str(job.path))

    assert code == ExitCode.FAILURE
    # The token comes from the environment here: its warning comes first.
    assert stderr.splitlines()[-1].startswith(
        "error: data set students: the columns of "
    )
    assert "missing 'FIRST' (for first_name)" in stderr
    assert "'FIRST_NAME'" in stderr and "Traceback" not in stderr
    assert received(live) == []
    assert not (job.output_folder / "students.csv").exists()


def test_a_new_column_in_the_middle_stops_a_mapping_by_position(
    tmp_path: Path, live: Receiver
) -> None:
    header = [*HEADER[:3], "MIDDLE", *HEADER[3:]]
    rows = [[*r[:3], "Q", *r[3:]] for r in ROWS]
    path = semicolon_file(tmp_path / "students.csv", header, rows)
    job = file_config(
        tmp_path,
        path,
        source=PINNED,
        mapping=POSITION_MAP,
        destination=destination(tmp_path, live),
    )

    code, _, stderr = cli("run", "-c", str(job.path))

    assert code == ExitCode.FAILURE
    assert "no longer match datasets.students.file_source.columns" in stderr
    assert "not expected 'MIDDLE'" in stderr
    assert received(live) == []


def test_a_new_column_in_a_file_without_header_stops_the_run(tmp_path: Path) -> None:
    rows = [[*r[:3], "Q", *r[3:]] for r in ROWS]
    path = semicolon_file(tmp_path / "students.csv", None, rows)
    job = file_config(
        tmp_path, path, source=PINNED + "header_row = 0", mapping=POSITION_MAP
    )
    with pytest.raises(
        SourceFileError, match=r"record 1 \(line 1 of the file\) has 11 fields"
    ):
        extract(job)


def test_swapped_columns_by_name_give_the_same_export_by_position_stop(
    tmp_path: Path, database_export: bytes
) -> None:
    swap = [1, 0, *range(2, len(HEADER))]  # STUDENT_NUMBER and FIRST swapped
    header = [HEADER[i] for i in swap]
    rows = [[r[i] for i in swap] for r in ROWS]
    path = semicolon_file(tmp_path / "students.csv", header, rows)

    [result] = extract(file_config(tmp_path, path))
    assert result.path.read_bytes() == database_export

    job = file_config(tmp_path, path, source=PINNED, mapping=POSITION_MAP)
    with pytest.raises(ExportError, match="in another order") as caught:
        extract(job)
    assert "'FIRST' is column 1 (pinned: 2)" in str(caught.value)


def test_position_mapping_reads_a_file_without_header(
    tmp_path: Path, database_export: bytes
) -> None:
    path = semicolon_file(tmp_path / "students.csv", None, ROWS)
    job = file_config(
        tmp_path, path, source=PINNED + "header_row = 0", mapping=POSITION_MAP
    )
    [result] = extract(job)
    assert result.path.read_bytes() == database_export


def test_a_header_read_as_data_under_header_row_0_stops(tmp_path: Path) -> None:
    """header_row = 0 on a file that has one would send the header as a student."""
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    job = file_config(
        tmp_path, path, source=PINNED + "header_row = 0", mapping=POSITION_MAP
    )
    with pytest.raises(SourceFileError, match="is the header .* set header_row = 1"):
        extract(job)
    assert not (job.output_folder / "students.csv").exists()


def test_a_file_that_grows_while_it_is_read_is_not_used(tmp_path: Path) -> None:
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    job = file_config(tmp_path, path)
    source = open_file_source(job, "students")
    _, batches = source.stream(None, 2)
    next(batches)
    with path.open("ab") as f:
        f.write(b'"1006";"Late";"Row";"";"101";"";"";"";"01";""\r\n')
    with pytest.raises(SourceFileError, match="changed while it was read") as caught:
        list(batches)
    assert caught.value.exit_code == ExitCode.RETRY_LATER


def test_a_file_still_being_written_is_not_sent(tmp_path: Path, live: Receiver) -> None:
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    job = file_config(
        tmp_path, path, source="", destination=destination(tmp_path, live)
    )
    config = job.path.read_text().replace("settle = 0", "settle = 0.5")
    job.path.write_text(config)
    stop = threading.Event()

    def export_still_running() -> None:
        while not stop.is_set():
            with path.open("ab") as f:
                f.write(b'"2001";"Still";"Writing";"";"101";"";"";"";"01";""\r\n')
            time.sleep(0.05)

    writer = threading.Thread(target=export_still_running)
    writer.start()
    try:
        code, _, stderr = cli("run", "-c", str(job.path))
    finally:
        stop.set()
        writer.join()
    assert code == ExitCode.RETRY_LATER
    assert "is still being written" in stderr
    assert received(live) == []


def test_an_old_file_is_reported_with_its_age_and_force_sends_it(
    tmp_path: Path, live: Receiver
) -> None:
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    three_days = time.time() - 3 * 86400 - 2 * 3600
    os.utime(path, (three_days, three_days))
    job = file_config(
        tmp_path,
        path,
        source='max_age = "26h"',
        destination=destination(tmp_path, live),
    )

    code, _, stderr = cli("run", "-c", str(job.path))
    assert code == ExitCode.FAILURE
    assert "was last changed 3 d 2 h 0 min ago" in stderr
    assert "more than file_source.max_age (26h)" in stderr
    assert received(live) == []

    code, stdout, stderr = cli("run", "-c", str(job.path), "--force")
    assert code == 0, stderr
    assert "students.csv.gz.pgp" in received(live)


def test_the_same_file_is_not_sent_twice_without_force(
    tmp_path: Path, live: Receiver
) -> None:
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    job = file_config(tmp_path, path, destination=destination(tmp_path, live))

    code, stdout, stderr = cli("run", "-c", str(job.path))
    assert code == 0, stderr
    first = (live.folder / "students.csv.gz.pgp").stat().st_mtime_ns
    assert (job.state_folder / SENT_NAME).is_file()

    code, _, stderr = cli("run", "-c", str(job.path))
    assert code == ExitCode.ALREADY_DONE  # the business date was sent already
    assert "was sent already" in stderr and "--force" in stderr
    # Past the business date check (pipeline.run), the same file is refused too.
    with pytest.raises(AlreadyDoneError, match=r"is the same file \(sha256 .*--force"):
        run(job)
    assert (live.folder / "students.csv.gz.pgp").stat().st_mtime_ns == first

    code, _, stderr = cli("run", "-c", str(job.path), "--force")
    assert code == 0, stderr
    assert (live.folder / "students.csv.gz.pgp").stat().st_mtime_ns != first

    # Tomorrow's export, one row more: sent without --force.
    semicolon_file(path, HEADER, [*ROWS, ["1006", "Ida", "Lind", "", "101"] + [""] * 5])
    run(job)


def test_run_waits_for_a_fresh_file(tmp_path: Path, live: Receiver) -> None:
    path = tmp_path / "students.csv"
    job = file_config(tmp_path, path, destination=destination(tmp_path, live))
    with pytest.raises(SourceFileError, match="no file at"):
        run(job)

    later = threading.Timer(
        0.5, lambda: semicolon_file(path, HEADER, ROWS)
    )  # the SIS export lands while the run waits
    later.start()
    try:
        report = run(job, wait=10)
    finally:
        later.cancel()
    assert report.outcome == "sent"
    assert report.sources["students"]["sha256"]


def test_the_same_file_after_a_held_run_is_recorded_by_send(
    tmp_path: Path, live: Receiver
) -> None:
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    job = file_config(tmp_path, path, destination=destination(tmp_path, live))
    run(job)
    semicolon_file(path, HEADER, ROWS[:2])  # three of five students gone: held
    code, _, stderr = cli("run", "-c", str(job.path))
    assert code == ExitCode.HELD, stderr
    code, _, stderr = cli("send", "-c", str(job.path), "--accept-change")
    assert code == 0, stderr
    with pytest.raises(AlreadyDoneError):
        run(job)


def test_connector_test_shows_what_was_detected(tmp_path: Path) -> None:
    path = write_shape(tmp_path, "semicolon-cp1252-crlf")
    job = file_config(tmp_path, path)

    code, stdout, stderr = cli("test", "-c", str(job.path), "--rows", "2")

    assert code == 0, stderr
    assert "server:" not in stdout  # no database in this job
    assert "students: file: " in stdout and "sha256 " in stdout
    assert "detected: header_row, encoding, delimiter" in stdout
    assert 'format = "csv"; encoding = "cp1252"; delimiter = ";"' in stdout
    assert 'columns = ["STUDENT_NUMBER", "FIRST", "LAST"' in stdout
    assert "students: ok: columns match, 5 record(s) in the file" in stdout
    assert '"1001","Zoe","Muller"' in stdout


def test_connector_test_shows_an_xlsx_sheet_and_title_row(tmp_path: Path) -> None:
    path = write_shape(tmp_path, "xlsx-title-row")
    job = file_config(tmp_path, path)
    code, stdout, stderr = cli("test", "-c", str(job.path))
    assert code == 0, stderr
    assert 'format = "xlsx"; sheet = "Students"; header_row = 3' in stdout


def test_extract_writes_the_run_report_with_the_source(tmp_path: Path) -> None:
    path = write_shape(tmp_path, "tab-utf16-bom")
    job = file_config(tmp_path, path)
    code, stdout, stderr = cli("extract", "-c", str(job.path))
    assert code == 0, stderr
    import json

    report = json.loads((job.output_folder / "run-report.json").read_text())
    source = report["sources"]["students"]
    assert source["layout"]["encoding"] == "utf-16"
    assert source["layout"]["delimiter"] == "\t"
    counts = report["datasets"]["students"]
    assert (counts["fetched"], counts["written"], counts["expected"]) == (5, 5, 5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "[datasets.students]\ntemplate = 'students.sql.j2'\n",
            "[source] is missing: data set students runs a template",
        ),
        (
            "[datasets.students.file_source]\npath = 'a.csv'\n"
            "[datasets.students.map]\nfirst_name = 2\n",
            "a mapping by position needs file_source.columns",
        ),
        (
            "[datasets.students.file_source]\npath = 'a.csv'\n"
            "[datasets.students.map]\nnickname = 'NICK'\n",
            "datasets.students.map.nickname: not a column of students",
        ),
        (
            "[datasets.students.file_source]\npath = 'a.csv'\nencoding = 'klingon'\n",
            "unknown encoding 'klingon'",
        ),
        (
            "[datasets.students.file_source]\npath = 'a.xlsx'\ndelimiter = ';'\n",
            "a workbook has no delimiter",
        ),
        (
            "[datasets.students.file_source]\npath = 'a.csv'\nheader_row = 0\n",
            "header_row = 0 (no header) needs columns",
        ),
    ],
    ids=[
        "no-source",
        "position-unpinned",
        "unknown-column",
        "encoding",
        "xlsx-delim",
        "no-header",
    ],
)
def test_config_mistakes_name_the_key(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "students.sql.j2").write_text("SELECT 1")
    config = tmp_path / "connector.toml"
    config.write_text(extra)
    with pytest.raises(
        ConfigError,
        match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)"),
    ):
        load_job(config)


def test_a_file_only_job_needs_no_source_and_missing_file_is_clear(
    tmp_path: Path,
) -> None:
    job = file_config(tmp_path, tmp_path / "nothing.csv")
    assert not job.has_database
    code, _, stderr = cli("extract", "-c", str(job.path))
    assert code == ExitCode.FAILURE
    assert stderr.splitlines()[-1].startswith(
        f"error: no file at {tmp_path / 'nothing.csv'}"
    )


def test_a_wrong_header_row_never_quotes_a_record(tmp_path: Path) -> None:
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    job = file_config(tmp_path, path, source="header_row = 2")
    with pytest.raises(SourceFileError, match="row 2 of .* does not hold") as caught:
        extract(job)
    assert "Zo" not in str(caught.value) and "1001" not in str(caught.value)


def test_a_template_mapping_that_no_longer_matches_the_view_stops(
    tmp_path: Path,
) -> None:
    require("SQLite3" in pyodbc.drivers(), "the SQLite3 ODBC driver is missing")
    db = tmp_path / "sis.db"
    renamed = ["GIVEN" if h == "FIRST" else h for h in HEADER]
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE export ({', '.join(renamed)})")
    (tmp_path / "students.sql.j2").write_text("SELECT * FROM export\n")
    (tmp_path / "connector.toml").write_text(
        f'[source]\nodbc = "DRIVER={{SQLite3}};Database={db}"\n'
        f'[datasets.students]\ntemplate = "students.sql.j2"\n{NAME_MAP}'
    )
    job = load_job(tmp_path / "connector.toml")
    with pytest.raises(ExportError, match=r"missing 'FIRST' \(for first_name\)"):
        extract(job)


def test_an_empty_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "students.csv"
    path.write_bytes(b"")
    with pytest.raises(SourceFileError, match="is empty; has the SIS export run"):
        extract(file_config(tmp_path, path))


def test_run_waits_for_todays_file_to_replace_yesterdays(
    tmp_path: Path, live: Receiver
) -> None:
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    job = file_config(tmp_path, path, destination=destination(tmp_path, live))
    run(job)
    today = [*ROWS, ["1006", "Ida", "Lind", "", "101"] + [""] * 5]
    later = threading.Timer(0.5, lambda: semicolon_file(path, HEADER, today))
    later.start()
    try:
        report = run(job, wait=10)
    finally:
        later.cancel()
    assert report.outcome == "sent"
    export = report.export("students")
    assert export is not None and export.written == 6


def test_an_xlsx_header_row_can_be_pinned(
    tmp_path: Path, database_export: bytes
) -> None:
    path = write_shape(tmp_path, "xlsx-title-row")
    job = file_config(tmp_path, path, source='header_row = 3\nsheet = "Students"')
    [result] = extract(job)
    assert result.path.read_bytes() == database_export


def test_a_job_mixes_a_database_and_a_file(tmp_path: Path) -> None:
    require("SQLite3" in pyodbc.drivers(), "the SQLite3 ODBC driver is missing")
    db = tmp_path / "sis.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE export ({', '.join(HEADER)})")
        conn.executemany(f"INSERT INTO export VALUES ({', '.join('?' * 10)})", ROWS)
    (tmp_path / "students.sql.j2").write_text("SELECT * FROM export\n")
    absences = tmp_path / "absences.txt"
    write_text(
        absences,
        ["Student", "Code", "Date", "Periods"],
        [["1001", "ILL", "2025-09-03", ""], ["1002", "UNX", "09/04/2025", "1,3"]]
        + [["9999", "ILL", "2025-09-04", ""]],
        delimiter="\t",
        encoding="utf-8",
        newline="\r\n",
        quoted=False,
    )
    (tmp_path / "connector.toml").write_text(
        f'[source]\nodbc = "DRIVER={{SQLite3}};Database={db}"\n'
        f'[datasets.students]\ntemplate = "students.sql.j2"\n{NAME_MAP}'
        '[datasets.attendance]\nunknown_students = "reject"\nmax_rejected = 0.5\n'
        '[datasets.attendance.file_source]\npath = "absences.txt"\n'
        '[datasets.attendance.map]\nstudent_id = "Student"\nreason_code = "Code"\n'
        'absence_date = "Date"\n'
    )
    job = load_job(tmp_path / "connector.toml")
    students, attendance = extract(job)
    assert students.written == 5
    assert attendance.path.read_bytes().splitlines()[1:] == [
        b'"1001","ILL","09/03/2025",""',
        b'"1002","UNX","09/04/2025","1,3"',
    ]
    assert (attendance.fetched, attendance.rejected, attendance.expected) == (3, 1, 3)


def test_doctor_and_schedule_take_a_file_only_job(tmp_path: Path) -> None:
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    job = file_config(tmp_path, path)

    code, stdout, stderr = cli("doctor", "-c", str(job.path))
    assert "[source] is missing" not in stdout + stderr
    assert "not needed: every data set reads a file source" in stdout

    code, stdout, stderr = cli(
        "schedule", "show", "--kind", "cron", "--at", "03:30", "-c", str(job.path)
    )
    assert code == 0, stderr
    assert str(job.path) in stdout


def test_the_readme_example_reads_the_file_it_describes(tmp_path: Path) -> None:
    """The README's File sources example, students part, on a file of its shape."""
    import tomllib

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## File sources", 1)[1].split("```toml\n", 1)[1]
    settings = tomllib.loads(block.split("```", 1)[0])
    students = settings["datasets"]["students"]
    columns = students["file_source"]["columns"]
    rows = [[r[0], r[1], r[2], r[3], r[4], r[5], r[6]] for r in ROWS]
    semicolon_file(tmp_path / "students.txt", columns, rows)
    students["file_source"]["path"] = "students.txt"
    students["file_source"]["settle"] = 0
    lines = ["[datasets.students]", f'file = "{students["file"]}"']
    lines.append("[datasets.students.file_source]")
    for key, value in students["file_source"].items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines.append("[datasets.students.map]")
    for key, value in students["map"].items():
        shown = (
            "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + " }"
            if isinstance(value, dict)
            else json.dumps(value)
        )
        lines.append(f"{key} = {shown}")
    (tmp_path / "connector.toml").write_text("\n".join(lines) + "\n")

    [result] = extract(load_job(tmp_path / "connector.toml"))

    assert result.written == len(ROWS) and result.rejected == 0
    first = result.path.read_text().splitlines()[1]
    assert first.startswith('"1001","Zoe","Muller","3125550142","101","de",')


def test_a_max_age_without_a_unit_says_how_to_write_it(tmp_path: Path) -> None:
    (tmp_path / "connector.toml").write_text(
        "[datasets.students.file_source]\npath = 'a.csv'\nmax_age = '1 day'\n"
    )
    with pytest.raises(ConfigError, match=r"max_age: must be a number and a unit"):
        load_job(tmp_path / "connector.toml")


@pytest.mark.parametrize(
    ("pin", "shown"),
    [
        ('encoding = "utf-16"', 'encoding = "utf-16"'),
        ('delimiter = ","', 'delimiter = ","'),
    ],
)
def test_a_wrongly_pinned_encoding_or_delimiter_is_named_as_the_likely_cause(
    tmp_path: Path, pin: str, shown: str
) -> None:
    path = semicolon_file(tmp_path / "students.csv", HEADER, ROWS)
    job = file_config(tmp_path, path, source=pin)
    with pytest.raises(SourceFileError) as caught:
        extract(job)
    message = str(caught.value)
    assert f"pinned file_source.{shown} may be wrong" in message
    assert "connector test" in message


@pytest.mark.parametrize(
    ("name", "start"),
    [
        ("students.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)),
        ("students.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)),
        ("students.ods", b"PK\x03\x04" + bytes(60)),
    ],
)
def test_an_xls_or_ods_file_says_to_save_it_as_xlsx_or_csv(
    tmp_path: Path, name: str, start: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(start)
    code, _, stderr = cli("extract", "-c", str(file_config(tmp_path, path).path))
    assert code == ExitCode.FAILURE
    last = stderr.splitlines()[-1]
    assert last.startswith(f"error: {path} is ")
    assert "save it as .xlsx or CSV" in last and "encoding" not in last


def test_a_ragged_record_is_numbered_as_the_run_report_numbers_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "students.csv"
    path.write_text(
        "Lincoln Elementary contacts\n\n"
        + ";".join(HEADER)
        + "\n"
        + ";".join(ROWS[0][:4])
        + "\n",
        encoding="utf-8",
    )
    job = file_config(tmp_path, path, source='delimiter = ";"')
    with pytest.raises(SourceFileError) as caught:
        extract(job)
    assert "record 1 (line 4 of the file) has 4 fields" in str(caught.value)


def test_a_run_that_waited_for_a_file_says_how_long(
    tmp_path: Path, live: Receiver
) -> None:
    path = tmp_path / "students.csv"
    job = file_config(tmp_path, path, destination=destination(tmp_path, live))
    result = script("run", "--wait", "1", "-c", str(job.path))
    assert result.returncode == ExitCode.FAILURE, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"error: no file at {path}") and "waited 1 s" in last
    assert "--wait SECONDS" not in last
    assert received(live) == []


def test_doctor_checks_each_file_source_as_the_run_does(tmp_path: Path) -> None:
    path = tmp_path / "students.csv"
    job = file_config(tmp_path, path, source='max_age = "1 h"')
    result = script("doctor", "-c", str(job.path))
    assert result.returncode == ExitCode.FAILURE, result.stdout + result.stderr
    assert f"FAIL  file source students: no file at {path}" in result.stdout

    semicolon_file(path, HEADER, ROWS)
    code, stdout, _ = cli("doctor", "-c", str(job.path))
    assert f"ok    file source students: {path}: " in stdout
    old = time.time() - 7200
    os.utime(path, (old, old))
    code, stdout, _ = cli("doctor", "-c", str(job.path))
    assert code == ExitCode.FAILURE
    assert "more than file_source.max_age (1 h)" in stdout
