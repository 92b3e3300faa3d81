"""``connector run`` with the Gibbon pack (queries/gibbon/) on the real MariaDB.

Needs MariaDB on its socket with ``sis_gibbon`` loaded from ../shared/sis (the
``sis_loaded`` fixture loads it when it is missing), the MariaDB Unicode ODBC
driver and GnuPG. On a developer machine without them the test skips; in CI it
fails. The end-to-end checks shared with the other packs are in
test_integration.py.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from connector.receiver import Receiver

from .conftest import Keys
from .sis_expectations import SIS
from .test_integration import count, run_connector, write_config


@pytest.mark.integration
def test_gibbon_phones_and_duplicate_contacts_are_reported(
    sis_loaded: None, tmp_path: Path, receiver: Receiver, gpg_keys: Keys
) -> None:
    """The malformed phones and the parent recorded twice in Gibbon's data are
    counted in the run report and never reach the export."""
    assert receiver.ca_file is not None
    config = write_config(
        tmp_path, "gibbon", receiver.url, receiver.ca_file, gpg_keys.public
    )

    result = run_connector("run", "--config", str(config))

    assert result.returncode == 0, result.stderr
    exports = tmp_path / "exports"
    report = json.loads((exports / "run-report.json").read_text())
    students = report["datasets"]["students"]
    expected = {k: count("gibbon", sql) for k, sql in SIS["gibbon"]["report"].items()}

    def left_empty(column: str) -> int:
        return sum(
            n
            for rule, n in students["warnings"].items()
            if rule.startswith(f"{column}:phone_")
            and rule != f"{column}:phone_duplicate"
        )

    assert left_empty("phone") == expected["students_phone_malformed"]
    assert left_empty("alt_phone") == expected["students_alt_phone_malformed"]
    assert (
        students["warnings"]["alt_phone:phone_duplicate"]
        == (expected["students_alt_equals_phone"])
    )
    # Each warning names its row and ID, and the export holds no bad phone.
    noted = [n for n in students["rows"] if n["rule"].startswith("phone_")]
    assert len(noted) == sum(
        n for k, n in students["warnings"].items() if ":phone_" in k
    )
    rows = list(csv.DictReader(io.StringIO((exports / "students.csv").read_text())))
    by_id = {r["Student ID"]: r for r in rows}
    for note in noted:
        header = "Phone" if note["column"] == "phone" else "Alternate Phone"
        assert by_id[note["id"]][header] == ""
    for row in rows:
        for header in ("Phone", "Alternate Phone"):
            assert row[header] == "" or (
                row[header].isdigit() and len(row[header]) == 10
            )
        assert row["Phone"] != row["Alternate Phone"] or row["Phone"] == ""

    # INT ZEROFILL ids come without their zeros; staff ids are 'T' + person id
    staff = list(csv.DictReader(io.StringIO((exports / "staff.csv").read_text())))
    assert all(i.isdigit() and not i.startswith("0") for i in by_id)
    assert all(r["Staff ID"].startswith("T") for r in staff)
