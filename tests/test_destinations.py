"""Destinations other than the HTTPS receiver, the verification minimum, the
spool's reuse of a payload, age encryption and the manifest (sample SIS)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from connector.config import load_job
from connector.errors import ConfigError, ExitCode, UploadError, VerificationError
from connector.pipeline import pending_exports, run, send_pending

from .conftest import require
from .test_pipeline import district, make_job  # noqa: F401 - district is a fixture


def folder_job(tmp_path: Path, district: Path, extra: str = "") -> tuple:  # noqa: F811
    dropbox = tmp_path / "dropbox"
    job = make_job(
        tmp_path,
        district,
        "",
        Path(),
        destination=f'kind = "folder"\npath = "{dropbox}"\n'
        f'recipient_cert = "{district / "keys" / "recipient.asc"}"\n'
        f"attempts = 2\nbackoff = 0.01\n{extra}",
    )
    return job, dropbox


def log_lines(job: object) -> list[dict[str, object]]:
    path = job.upload_log  # type: ignore[attr-defined]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_destination_copies_renames_and_reads_back(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    job, dropbox = folder_job(tmp_path, district)
    dropbox.mkdir()

    report = run(job)

    assert sorted(p.name for p in dropbox.iterdir()) == sorted(
        f"{n}.csv{s}"
        for n in ("students", "attendance", "staff")
        for s in (".gz.pgp", ".manifest.json")
    )
    assert {r.verified for r in report.receipts} == {"read-back"}
    assert {r.destination for r in report.receipts} == {"folder"}
    manifest = json.loads((dropbox / "students.csv.manifest.json").read_text())
    assert manifest["rows"] == report.export("students").written  # type: ignore[union-attr]
    assert list(job.spool_folder.iterdir()) == []


def test_a_missing_folder_keeps_the_payload_and_the_next_send_reuses_it(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    job, dropbox = folder_job(tmp_path, district)
    with pytest.raises(UploadError) as info:
        run(job)
    assert info.value.exit_code == ExitCode.RETRY_LATER
    assert "check that the folder exists" in str(info.value)
    first = [e for e in log_lines(job) if e["file"] == "students.csv.gz.pgp"]
    assert [e["outcome"] for e in first] == ["retry", "failed"]
    assert pending_exports(job)

    dropbox.mkdir()
    send_pending(job)

    sent = [e for e in log_lines(job) if e["file"] == "students.csv.gz.pgp"]
    # The same bytes: the payload kept in the spool was sent, not a new one.
    assert sent[-1]["outcome"] == "verified"
    assert sent[-1]["sha256"] == first[0]["sha256"]


def test_below_the_minimum_verification_fails_with_its_own_code(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    job, dropbox = folder_job(tmp_path, district, 'min_verification = "receipt"')
    dropbox.mkdir()
    with pytest.raises(VerificationError) as info:
        run(job)
    assert info.value.exit_code == ExitCode.VERIFICATION_FAILED
    assert "verified only to level 'read-back', below destination.min_verification" in (
        str(info.value)
    )
    assert (job.spool_folder / "students.csv.gz.pgp").exists()


def test_keep_sent_false_leaves_no_plaintext(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    job, dropbox = folder_job(tmp_path, district)
    dropbox.mkdir()
    config = job.path.read_text().replace(
        "[state]", "[output]\nkeep_sent = false\n[state]"
    )
    job.path.write_text(config)
    job = load_job(job.path)

    run(job)

    assert sorted(p.name for p in job.output_folder.iterdir()) == [
        "attendance-changes.json",
        "run-report.json",
        "staff-changes.json",
        "students-changes.json",
    ]
    assert list(job.pending_folder.iterdir()) == []


def test_age_encryption_decrypts_with_the_age_command(
    tmp_path: Path,
    district: Path,  # noqa: F811
) -> None:
    require(shutil.which("age-keygen") is not None, "age is not installed")
    identity = tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = identity.read_text().split("# public key: ")[1].split()[0]
    dropbox = tmp_path / "dropbox"
    dropbox.mkdir()
    job = make_job(
        tmp_path,
        district,
        "",
        Path(),
        destination=f'kind = "folder"\npath = "{dropbox}"\nencryption = "age"\n'
        f'age_recipient = "{public}"\n',
    )

    run(job)

    for name in ("students", "attendance", "staff"):
        plain = subprocess.run(
            ["age", "-d", "-i", str(identity), str(dropbox / f"{name}.csv.gz.age")],
            check=True,
            capture_output=True,
        ).stdout
        csv = (job.output_folder / f"{name}.csv").read_bytes()
        assert gzip.decompress(plain) == csv
        manifest = json.loads((dropbox / f"{name}.csv.manifest.json").read_text())
        assert manifest["format"] == "age+gzip"
        assert manifest["key_fingerprint"] == public


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ('kind = "sftp"\nhost = "h"\nuser = "u"\nkey_file = "k"', "known_hosts or"),
        ('kind = "sftp"\nhost = "h"', "needs user, key_file"),
        ('kind = "tus"', "kind = 'tus' needs url"),
        ('kind = "folder"\npath = "x"\nencryption = "age"', "needs age_recipient"),
        ('url = "http://x/"', "must start with https://"),
        ('kind = "ftp"', "destination.kind: Input should be"),
    ],
)
def test_destination_mistakes_name_the_setting(
    tmp_path: Path,
    district: Path,  # noqa: F811
    destination: str,
    message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_job(
            tmp_path,
            district,
            "",
            Path(),
            destination=destination
            + f'\nrecipient_cert = "{district / "keys" / "recipient.asc"}"',
        )
