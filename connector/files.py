"""Read a data set from a file: an SIS export (CSV or text) or an Excel workbook.

``FileSource`` gives the same interface as a database source (``describe``,
``stream``, ``count``, ``close``), so a file's rows go through the same field rules,
validation, safety gate, packaging and transfer. What the config does not state is
detected: the encoding (a byte-order mark, else UTF-8 if the bytes are valid UTF-8,
else ``charset-normalizer`` among Windows-1252, Latin-1 and UTF-16), the delimiter
(``csv.Sniffer`` among comma, semicolon, tab and pipe) and the header row (the first
row holding the mapped column names, so a title row above it is passed over).

The daily file is the same name every day, overwritten by the SIS: before a run
sends it, ``check_fresh`` makes sure it is there, no longer being written (its size
and time hold still for ``settle`` seconds), not older than ``max_age`` and not the
very file sent last time (its SHA-256 is kept in the state folder after each
verified send). While it is read, a change of its size or time stops the run.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import FileSourceSettings, Job, MapEntry
from .database import Batches, ServerInfo
from .datasets import DataSet
from .errors import AlreadyDoneError, ExitCode, SourceFileError
from .mapping import Plan, check_pinned, fold, resolve
from .templates import ParamStyle, Query

log = logging.getLogger(__name__)

SAMPLE_BYTES = 64 * 1024
HEADER_SEARCH_ROWS = 20
DELIMITERS = ",;\t|"
SENT_NAME = "file-sources.json"
# What a spreadsheet the file source does not read starts with: the old binary
# Excel (.xls, an OLE2 compound file) and OpenDocument (.ods, a zip archive).
NOT_READ = {b"\xd0\xcf\x11\xe0": "an old binary Excel (.xls)", b"PK": "a zip archive"}
WAIT_HINT = ", or wait for it with `connector run --wait SECONDS`"
_SHOWN = {",": ",", ";": ";", "\t": "tab", "|": "|"}


@dataclass(frozen=True)
class FileInfo:
    """One look at a source file: its size, time and SHA-256 (never its rows)."""

    path: Path
    size: int
    mtime_ns: int
    sha256: str

    @property
    def modified(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.mtime_ns / 1e9, dt.UTC)

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.mtime_ns / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size": self.size,
            "modified": self.modified.isoformat(timespec="seconds"),
            "sha256": self.sha256,
        }


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise SourceFileError(
            f"no file at {path}; has the SIS export run? Check "
            f"file_source.path{WAIT_HINT}"
        ) from None
    except OSError as exc:
        raise SourceFileError(f"{path} cannot be read: {exc}") from exc


def inspect_file(path: Path, *, settle: float = 0.0) -> FileInfo:
    """Stat and hash ``path``; with ``settle``, first make sure it holds still.

    A file whose size or time changes within ``settle`` seconds is still being
    written: ``SourceFileError`` with exit code 4 (try again later).
    """
    first = _stat(path)
    if settle > 0:
        time.sleep(settle)
        check_unchanged(_info(path, first, ""), during=f"within {settle:g} s")
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise SourceFileError(f"{path} cannot be read: {exc}") from exc
    info = _info(path, first, digest.hexdigest())
    check_unchanged(info, during="while it was hashed")
    return info


def _info(path: Path, stat: os.stat_result, sha256: str) -> FileInfo:
    return FileInfo(path, stat.st_size, stat.st_mtime_ns, sha256)


def check_unchanged(info: FileInfo, during: str = "while it was read") -> None:
    """The file must be as it was when it was first looked at; a file whose size
    or time moved is still being written (exit 4, try again later)."""
    now = _stat(info.path)
    if (now.st_size, now.st_mtime_ns) != (info.size, info.mtime_ns):
        raise SourceFileError(
            f"{info.path} is still being written: it changed {during} (size "
            f"{info.size} then {now.st_size} bytes); nothing was written or sent. "
            "Run again once the SIS export has finished",
            exit_code=ExitCode.RETRY_LATER,
        )


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days} d"] if days else []
    if hours or days:
        parts.append(f"{hours} h")
    parts.append(f"{minutes} min")
    return " ".join(parts)


# -- detection -------------------------------------------------------------


def detect_encoding(sample: bytes) -> str:
    """The text encoding of a file that starts with ``sample``."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" not in sample:
        try:
            # Not final: the sample may end inside a multi-byte character.
            codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
            return "utf-8"
        except UnicodeDecodeError:
            pass
    import charset_normalizer

    best = charset_normalizer.from_bytes(
        sample, cp_isolation=["cp1252", "latin_1", "utf_16_le", "utf_16_be"]
    ).best()
    if best is None:
        raise SourceFileError(
            "the text encoding cannot be told; set file_source.encoding (utf-8, "
            "cp1252, latin-1 or utf-16)"
        )
    return str(best.encoding)


def detect_delimiter(text: str) -> str:
    """The field delimiter among comma, semicolon, tab and pipe."""
    lines = [line for line in text.splitlines() if line.strip()][:50]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        pass
    # The Sniffer gives up on some files (a title line, few rows): take the
    # delimiter that splits most lines into the same number of fields.
    best, score = "", 0
    for delimiter in DELIMITERS:
        counts = [line.count(delimiter) for line in lines if delimiter in line]
        if counts:
            common = max(set(counts), key=counts.count)
            if common and counts.count(common) > score:
                best, score = delimiter, counts.count(common)
    if not best:
        raise SourceFileError(
            "the delimiter cannot be told; set file_source.delimiter "
            '(",", ";", "tab" or "|")'
        )
    return best


@dataclass
class Layout:
    """How a file is read: what was pinned in the config and what was detected."""

    format: str
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    header_row: int = 1
    detected: list[str] = field(default_factory=list)

    def pin_lines(self) -> list[str]:
        """The config lines that pin this layout, for ``connector test``."""
        lines = [f'format = "{self.format}"']
        if self.encoding is not None:
            lines.append(f'encoding = "{self.encoding}"')
        if self.delimiter is not None:
            lines.append(f'delimiter = "{_SHOWN[self.delimiter]}"')
        if self.sheet is not None:
            lines.append(f"sheet = {json.dumps(self.sheet)}")
        lines.append(f"header_row = {self.header_row}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cell_text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _is_blank(cells: Sequence[Any]) -> bool:
    return all(_cell_text(c) == "" for c in cells)


def find_header(
    rows: Sequence[Sequence[Any]], candidates: Sequence[Sequence[str]]
) -> int:
    """The index of the row holding most of the expected column names.

    ``candidates`` has, per expected column, the names it may have. A row must
    hold at least half of them; else -1.
    """
    if not candidates:
        return -1
    best, score = -1, 0
    for i, row in enumerate(rows):
        have = {fold(_cell_text(c)) for c in row}
        found = sum(1 for names in candidates if any(fold(n) in have for n in names))
        if found > score:
            best, score = i, found
    return best if score * 2 >= len(candidates) else -1


# -- reading ---------------------------------------------------------------


class FileSource:
    """A data set read from one file, streamed in batches like a query result.

    Opening it looks at the file (``inspect_file``, unless ``info`` is given from
    an earlier look), detects what the config leaves out, finds the header and
    resolves the column mapping: a header that no longer matches raises before a
    row is read. ``stream`` yields the rows already mapped to the data set's
    query columns.
    """

    param_style: ParamStyle = "qmark"

    def __init__(
        self,
        settings: FileSourceSettings,
        path: Path,
        dataset: DataSet,
        entries: Mapping[str, MapEntry],
        *,
        info: FileInfo | None = None,
        settle: float = 0.0,
    ) -> None:
        self.settings = settings
        self.path = path
        self.dataset = dataset
        self.where = str(path)
        self._line = 0  # the line (sheet row) of the file last read
        self.info = info or inspect_file(path, settle=settle)
        if info is not None:
            check_unchanged(info)
        if self.info.size == 0:
            raise SourceFileError(
                f"data set {dataset.name}: {path} is empty; has the SIS export run? "
                "Nothing was written or sent"
            )
        self.layout = self._layout()
        self.header, self._width = self._read_header(entries)
        if self.layout.sheet is not None:
            self.where = f"{path} (sheet {self.layout.sheet!r})"
        pinned = settings.columns
        by_position = any(isinstance(e.column, int) for e in entries.values())
        if pinned is not None:
            if self.layout.header_row:
                check_pinned(
                    self.where, dataset, self.header, pinned, in_order=by_position
                )
            self.header = [p.strip() for p in pinned] if by_position else self.header
        self.plan: Plan = resolve(
            self.where, dataset, self.header, entries, strict=not entries
        )
        if self.plan.unused:
            log.info(
                "data set %s: %d column(s) of %s are not mapped and left out: %s",
                dataset.name,
                len(self.plan.unused),
                path.name,
                ", ".join(self.plan.unused),
            )
        log.info(
            "data set %s: reading %s (%s, %d bytes, sha256 %s)",
            dataset.name,
            path.name,
            self.describe().dbms_version,
            self.info.size,
            self.info.sha256[:16],
        )

    # The layout: what the config pins, the rest detected.

    def _layout(self) -> Layout:
        settings = self.settings
        layout = Layout(format=settings.kind, header_row=settings.header_row or 0)
        if settings.header_row is None:
            layout.detected.append("header_row")
        if layout.format == "xlsx":
            layout.sheet = settings.sheet
            return layout
        with self.path.open("rb") as f:
            sample = f.read(SAMPLE_BYTES)
        _refuse_spreadsheet(self.path, sample)
        layout.encoding = settings.encoding
        if layout.encoding is None:
            try:
                layout.encoding = detect_encoding(sample)
            except SourceFileError as exc:
                raise SourceFileError(f"{self.path}: {exc}") from None
            layout.detected.append("encoding")
        layout.delimiter = settings.delimiter
        if layout.delimiter is None:
            text = sample.decode(layout.encoding, errors="ignore")
            try:
                layout.delimiter = detect_delimiter(text)
            except SourceFileError as exc:
                hint = self._pinned_hint()
                message = (
                    f"the delimiter cannot be told{hint}; else set "
                    "file_source.delimiter"
                    if hint
                    else str(exc)
                )
                raise SourceFileError(f"{self.path}: {message}") from None
            layout.detected.append("delimiter")
        return layout

    def _pinned_hint(self) -> str:
        """When the encoding or delimiter was pinned: say it may be the cause."""
        pinned = [
            f"{key} = {json.dumps(_SHOWN.get(value, value))}"
            for key, value in (
                ("encoding", self.settings.encoding),
                ("delimiter", self.settings.delimiter),
            )
            if value is not None
        ]
        if not pinned:
            return ""
        return (
            f"; the pinned file_source.{' and '.join(pinned)} may be wrong for this "
            "file: `connector test` without it shows what detection would pick"
        )

    def _read_header(self, entries: Mapping[str, MapEntry]) -> tuple[list[str], int]:
        pinned = self.settings.columns
        layout = self.layout
        first = self._first_rows(max(HEADER_SEARCH_ROWS, layout.header_row))
        if "header_row" in layout.detected:
            index = find_header(first, _candidates(self.dataset, entries, pinned))
            if index < 0:
                expected = pinned or _labels(self.dataset, entries)
                hint = self._pinned_hint()
                raise SourceFileError(
                    f"data set {self.dataset.name}: no header row with the expected "
                    f"columns ({', '.join(repr(e) for e in expected)}) in the first "
                    f"{HEADER_SEARCH_ROWS} rows of {self.where}"
                    f"{hint + '; else' if hint else ';'} set "
                    "file_source.header_row (its row number, or 0 for a file "
                    "without a header) and check datasets."
                    f"{self.dataset.name}.map"
                )
            layout.header_row = index + 1
        if layout.header_row == 0:
            assert pinned is not None  # checked with the config
            names = [p.strip() for p in pinned]
            if first and [_cell_text(c).lower() for c in first[0]] == [
                n.lower() for n in names
            ]:
                # A header read as data would be sent as a student.
                raise SourceFileError(
                    f"data set {self.dataset.name}: the first row of {self.where} "
                    "is the header (file_source.columns), but file_source.header_row"
                    " = 0 says the file has none; set header_row = 1"
                )
            return names, len(names)
        if layout.header_row > len(first):
            raise SourceFileError(
                f"{self.where} has no row {layout.header_row} "
                "(file_source.header_row); it is empty or shorter"
            )
        header = [_cell_text(c) for c in first[layout.header_row - 1]]
        if "header_row" not in layout.detected:
            wanted = _candidates(self.dataset, entries, pinned)
            if wanted and find_header([header], wanted) < 0:
                # Not a header: never quote its cells, they may be a student's.
                raise SourceFileError(
                    f"data set {self.dataset.name}: row {layout.header_row} of "
                    f"{self.where} does not hold the mapped column names; check "
                    "file_source.header_row (0 for a file without a header)"
                )
        while header and header[-1] == "":
            header.pop()  # a trailing delimiter or formatted empty cells
        if not header:
            raise SourceFileError(
                f"{self.where}: row {layout.header_row} (the header) is empty; "
                "set file_source.header_row"
            )
        return header, len(header)

    def _first_rows(self, count: int) -> list[Sequence[Any]]:
        with contextlib.closing(self._raw_rows()) as rows:
            return [cells for _, cells in itertools.islice(rows, count)]

    def _raw_rows(self) -> Generator[tuple[int, Sequence[Any]], None, None]:
        """Every row of the file with its row (CSV: record) number from 1."""
        if self.layout.format == "xlsx":
            yield from self._sheet_rows()
        else:
            yield from self._text_rows()

    def _text_rows(self) -> Generator[tuple[int, Sequence[Any]], None, None]:
        layout = self.layout
        assert layout.encoding is not None and layout.delimiter is not None
        number = 0
        try:
            with self.path.open(encoding=layout.encoding, newline="") as f:
                reader = csv.reader(f, delimiter=layout.delimiter, strict=False)
                for number, cells in enumerate(reader, start=1):  # noqa: B007
                    self._line = reader.line_num
                    yield number, cells
        except UnicodeDecodeError:
            raise SourceFileError(
                f"{self.where}: record {number + 1} is not valid {layout.encoding} "
                "text; set file_source.encoding to the file's encoding (utf-8, "
                "cp1252, latin-1 or utf-16)"
            ) from None
        except csv.Error as exc:
            raise SourceFileError(
                f"{self.where}: record {number + 1} cannot be read as CSV ({exc}); "
                "check file_source.delimiter"
            ) from None

    def _sheet_rows(self) -> Generator[tuple[int, Sequence[Any]], None, None]:
        import zipfile

        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            # Read-only streams the sheet's XML: memory stays flat however long.
            book = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
            raise SourceFileError(
                f"{self.path} is not an Excel .xlsx workbook ({exc}); save it as "
                ".xlsx, or as CSV with format = 'csv'"
            ) from None
        try:
            name = self.layout.sheet
            if name is None:
                sheet = book.worksheets[0]
                self.layout.sheet = sheet.title
            elif name in book.sheetnames:
                sheet = book[name]
            else:
                raise SourceFileError(
                    f"{self.path} has no sheet {name!r} (file_source.sheet); its "
                    f"sheets: {', '.join(book.sheetnames)}"
                )
            # Trust no stored size: without one (files not written by Excel)
            # openpyxl would read the whole sheet once just to compute it.
            sheet.reset_dimensions()
            rows = sheet.iter_rows(min_row=1, values_only=True)
            for number, cells in enumerate(rows, start=1):
                self._line = number
                yield number, cells
        finally:
            book.close()

    def _records(self) -> Generator[tuple[int, Sequence[Any]], None, None]:
        """The data records after the header, blank rows left out, each as wide
        as the header."""
        width = self._width
        start = self.layout.header_row
        is_text = self.layout.format == "csv"
        record = 0  # the data record's number, as the run report counts rows
        with contextlib.closing(self._raw_rows()) as rows:
            for number, cells in rows:
                if number <= start or _is_blank(cells):
                    continue
                record += 1
                if len(cells) != width:
                    extra = cells[width:]
                    if len(cells) > width and _is_blank(extra):
                        cells = cells[:width]
                    elif len(cells) < width and not is_text:
                        cells = (*cells, *([None] * (width - len(cells))))
                    else:
                        raise SourceFileError(
                            f"data set {self.dataset.name}: {self.where}, "
                            f"{'record' if is_text else 'row'} {record} ("
                            f"{'line' if is_text else 'sheet row'} {self._line} of "
                            f"the file) has "
                            f"{len(cells)} fields where the header has {width} (a "
                            "delimiter inside an unquoted value, or a broken "
                            "record); nothing was written or sent"
                        )
                yield number, cells

    # The Source interface.

    def describe(self) -> ServerInfo:
        layout = self.layout
        if layout.format == "xlsx":
            import openpyxl

            shape = f"xlsx, sheet {layout.sheet!r}" if layout.sheet else "xlsx"
            reader, version = "openpyxl", openpyxl.__version__
        else:
            shape = (
                f"csv, {layout.encoding}, delimiter "
                f"{_SHOWN.get(layout.delimiter or '', layout.delimiter)}"
            )
            reader, version = "csv", "Python"
        return ServerInfo(
            dbms="file",
            dbms_version=f"{shape}, header row {layout.header_row}",
            driver=reader,
            driver_version=version,
        )

    def stream(self, query: Query | None, batch_size: int) -> tuple[list[str], Batches]:
        """The mapped column names and the rows in batches; ``query`` is unused.

        Once the last row is read, the file must still be as it was at the start.
        """
        records = self._records()
        plan = self.plan

        def batches() -> Batches:
            with contextlib.closing(records):
                batch: list[tuple[Any, ...]] = []
                for _, cells in records:
                    batch.append(tuple(cells))
                    if len(batch) >= batch_size:
                        yield plan.apply(batch)
                        batch = []
                if batch:
                    yield plan.apply(batch)
            check_unchanged(self.info)

        return plan.names, batches()

    def count(self, query: Query | None = None) -> int:
        """The number of data records (what ``COUNT(*)`` is for a query)."""
        with contextlib.closing(self._records()) as records:
            return sum(1 for _ in records)

    def preview(self, rows: int) -> list[tuple[Any, ...]]:
        """The first ``rows`` records, mapped (for ``connector test``)."""
        with contextlib.closing(self._records()) as records:
            first = [tuple(c) for _, c in itertools.islice(records, rows)]
        return self.plan.apply(first)

    def close(self) -> None:
        pass

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FileSource(path={str(self.path)!r}, format={self.layout.format!r})"


def _refuse_spreadsheet(path: Path, sample: bytes) -> None:
    """An .xls or .ods file read as text would give a misleading error."""
    what = next((w for m, w in NOT_READ.items() if sample.startswith(m)), None)
    suffix = path.suffix.lower()
    if suffix in (".xls", ".ods") or what is not None:
        shown = what or f"a {suffix} spreadsheet"
        raise SourceFileError(
            f"{path} is {shown} file, which is not read (only .xlsx workbooks and "
            "CSV or text files are); open it in the spreadsheet program and save it "
            "as .xlsx or CSV"
        )


def _candidates(
    dataset: DataSet, entries: Mapping[str, MapEntry], pinned: Sequence[str] | None
) -> list[list[str]]:
    """Per expected column, the header names it may have (to find the header)."""
    if pinned is not None:
        return [[p] for p in pinned]
    names = []
    for column in dataset.columns:
        entry = entries.get(column.name)
        if not column.is_selected or (entry is not None and entry.column is None):
            continue
        if entry is None:
            names.append([column.name, column.header])
        elif isinstance(entry.column, str):
            names.append([entry.column])
    return names


def _labels(dataset: DataSet, entries: Mapping[str, MapEntry]) -> list[str]:
    return [c[-1] for c in _candidates(dataset, entries, None)]


def open_file_source(
    job: Job, name: str, *, info: FileInfo | None = None, settle: bool = True
) -> FileSource:
    """The file source of data set ``name``, as its config describes it."""
    settings = job.file_source(name)
    if settings is None:
        raise ValueError(f"data set {name} has no file_source")
    return FileSource(
        settings,
        job.file_path(name),
        job.dataset(name),
        job.column_map(name),
        info=info,
        settle=settings.settle if settle else 0.0,
    )


def file_datasets(job: Job, names: Sequence[str]) -> list[str]:
    return [n for n in names if job.file_source(n) is not None]


# -- the same-name daily file -----------------------------------------------


def sent_files(job: Job) -> dict[str, dict[str, Any]]:
    """What ``record_sent`` kept: per data set, the source file last sent."""
    path = job.state_folder / SENT_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SourceFileError(
            f"{path} cannot be read ({exc}); remove it to forget which source "
            "files were sent"
        ) from None
    return data if isinstance(data, dict) else {}


def write_sources(path: Path, entries: Mapping[str, dict[str, Any]]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    staging.chmod(0o600)
    os.replace(staging, path)


def record_sent(job: Job, sources: Mapping[str, dict[str, Any]], run_id: str) -> None:
    """After a verified send: remember each source file's hash, for the next run."""
    if not sources:
        return
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    sent = sent_files(job)
    for name, source in sources.items():
        sent[name] = {**source, "sent": now, "run_id": run_id}
    write_sources(job.state_folder / SENT_NAME, sent)


def check_fresh(
    job: Job,
    names: Sequence[str],
    *,
    force: bool = False,
    wait: float | None = None,
    poll: float = 2.0,
) -> dict[str, FileInfo]:
    """Look at each data set's source file before a run sends it.

    Raises when a file is missing or still being written, older than its
    ``max_age``, or the very file that was sent last (exit 7); ``force`` lets the
    last two through. ``wait`` (default: the largest ``file_source.wait``) is how
    long to keep looking for a fresh file before giving up.
    """
    chosen = file_datasets(job, names)
    if not chosen:
        return {}
    limit = wait if wait is not None else max(_setting(job, n).wait for n in chosen)
    deadline = time.monotonic() + limit
    while True:
        try:
            return {name: _fresh(job, name, force) for name in chosen}
        except (SourceFileError, AlreadyDoneError) as exc:
            left = deadline - time.monotonic()
            if left <= 0 and limit > 0:
                # Waiting longer is the hint no more: say how long it waited.
                message = str(exc).replace(WAIT_HINT, "")
                raise type(exc)(
                    f"{message} (waited {limit:g} s; the file is still not fresh)",
                    exit_code=exc.exit_code,
                ) from None
            if left <= 0:
                raise
            log.info("waiting for a fresh file (%s); %.0f s left", exc, left)
            time.sleep(min(poll, left))


def _setting(job: Job, name: str) -> FileSourceSettings:
    settings = job.file_source(name)
    assert settings is not None
    return settings


def check_daily_file(
    job: Job, name: str, *, force: bool = False, settle: float | None = None
) -> FileInfo:
    """The daily file of data set ``name``: present, holding still for ``settle``
    seconds (default: its ``file_source.settle``) and not older than ``max_age``
    (unless ``force``). ``doctor`` runs this with a short settle."""
    settings = _setting(job, name)
    wait = settings.settle if settle is None else min(settle, settings.settle)
    info = inspect_file(job.file_path(name), settle=wait)
    max_age = settings.max_age_seconds
    if max_age is not None and info.age() > max_age and not force:
        raise SourceFileError(
            f"data set {name}: {info.path} was last changed "
            f"{format_age(info.age())} ago ({info.modified:%Y-%m-%d %H:%M} UTC), "
            f"more than file_source.max_age ({settings.max_age}); has the SIS "
            "export run? Nothing was sent; `connector run --force` sends it anyway"
        )
    return info


def _fresh(job: Job, name: str, force: bool) -> FileInfo:
    info = check_daily_file(job, name, force=force)
    max_age = _setting(job, name).max_age_seconds
    last = sent_files(job).get(name)
    if last and last.get("sha256") == info.sha256 and not force:
        raise AlreadyDoneError(
            f"data set {name}: {info.path} is the same file (sha256 "
            f"{info.sha256[:16]}...) that was sent at {last.get('sent', '?')}; has "
            "the SIS export run since? Nothing was sent; `connector run --force` "
            "sends it again"
        )
    if max_age is not None and info.age() > max_age:
        log.warning("data set %s: %s is old; sent anyway (--force)", name, info.path)
    return info


def describe_file(source: FileSource) -> list[str]:
    """What ``connector test`` shows about a file: look, layout and columns."""
    info = source.info
    detected = source.layout.detected
    lines = [
        f"file: {info.path} ({info.size} bytes, changed {format_age(info.age())} "
        f"ago, sha256 {info.sha256[:16]}...)",
        f"read as: {source.describe().dbms_version}"
        + (f" (detected: {', '.join(detected)})" if detected else ""),
        "to pin it, in file_source: " + "; ".join(source.layout.pin_lines()),
        f"columns = {json.dumps(source.header)}",
    ]
    if source.plan.unused:
        lines.append(f"not mapped (left out): {', '.join(source.plan.unused)}")
    max_age = source.settings.max_age_seconds
    if max_age is not None and info.age() > max_age:
        lines.append(
            f"warning: older than file_source.max_age ({source.settings.max_age}); "
            "`connector run` would not send it"
        )
    return lines
