"""What connector knows about each ODBC driver, kept apart from the connection code.

Pure functions, so that what cannot run on the development machine (SQL Server,
Oracle, Progress) is still tested: the family a driver belongs to, the attributes
added to its connection string, the text decoding it needs, the conversion of SQL
Server's ``DATETIMEOFFSET`` values, and the hints added to its error messages.
``drivers.md`` explains each of them per database.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import sys
from dataclasses import dataclass
from typing import Literal

Family = Literal[
    "mssql", "freetds", "postgres", "mariadb", "mysql", "sqlite", "oracle", "progress"
]
SQL_SERVER_FAMILIES = ("mssql", "freetds")

# ODBC type code of SQL Server's DATETIMEOFFSET (SQL_SS_TIMESTAMPOFFSET), which
# pyodbc hands over as raw bytes unless an output converter is registered.
SQL_SS_TIMESTAMPOFFSET = -155
# The driver's SQL_SS_TIMESTAMPOFFSET_STRUCT: year, month, day, hour, minute,
# second (SQLSMALLINT/SQLUSMALLINT), fraction in nanoseconds (SQLUINTEGER), then
# the offset's hours and minutes (SQLSMALLINT), little-endian, 20 bytes.
_DATETIMEOFFSET = struct.Struct("<6hI2h")

# (family, pattern) in order: the first match wins. The pattern is searched in the
# driver's name (odbcinst.ini name or library file) and, after connecting, in the
# DBMS name the driver reports.
_FAMILIES: tuple[tuple[Family, re.Pattern[str]], ...] = (
    ("freetds", re.compile(r"freetds|tdsodbc", re.IGNORECASE)),
    ("mssql", re.compile(r"\bsql server|msodbcsql|sqlncli|sqlsrv32", re.IGNORECASE)),
    ("postgres", re.compile(r"postgres|psqlodbc", re.IGNORECASE)),
    ("mariadb", re.compile(r"mariadb|maodbc", re.IGNORECASE)),
    ("mysql", re.compile(r"mysql|myodbc", re.IGNORECASE)),
    ("sqlite", re.compile(r"sqlite", re.IGNORECASE)),
    ("oracle", re.compile(r"oracle|sqora|instantclient", re.IGNORECASE)),
    ("progress", re.compile(r"progress|openedge|pgoe|ivoe", re.IGNORECASE)),
)


def driver_family(*names: str | None) -> Family | None:
    """The database family of the first name that tells (driver, then DBMS)."""
    for name in names:
        if not name:
            continue
        for family, pattern in _FAMILIES:
            if pattern.search(name):
                return family
    return None


def odbc_keys(conn_str: str) -> dict[str, str]:
    """The attributes of an ODBC connection string, keys upper-cased.

    Values may be braced (``PWD={a;b}``, a ``}`` inside doubled), as the ODBC
    specification allows; a key given twice keeps its first value, as the driver
    manager does.
    """
    keys: dict[str, str] = {}
    pos, size = 0, len(conn_str)
    while pos < size:
        eq = conn_str.find("=", pos)
        if eq < 0:
            break
        key = conn_str[pos:eq].strip().strip(";").strip().upper()
        pos = eq + 1
        if conn_str[pos : pos + 1] == "{":
            value, pos = _braced(conn_str, pos + 1)
            end = conn_str.find(";", pos)
            pos = size if end < 0 else end + 1
        else:
            end = conn_str.find(";", pos)
            end = size if end < 0 else end
            value, pos = conn_str[pos:end].strip(), end + 1
        if key:
            keys.setdefault(key, value)
    return keys


def _braced(text: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == "}":
            if text[pos + 1 : pos + 2] == "}":
                out.append("}")
                pos += 2
                continue
            return "".join(out), pos + 1
        out.append(char)
        pos += 1
    return "".join(out), pos


@dataclass(frozen=True)
class Tls:
    """SQL Server's encryption settings, as ``[source]`` gives them."""

    encrypt: bool | Literal["strict"] | None = None
    trust_server_certificate: bool | None = None

    @property
    def is_set(self) -> bool:
        return self.encrypt is not None or self.trust_server_certificate is not None


# The connection-string key each TLS setting becomes, per SQL Server driver.
TLS_KEYS: dict[Family, tuple[str, str | None]] = {
    "mssql": ("Encrypt", "TrustServerCertificate"),
    # FreeTDS has Encryption= (off, request, require, strict) and no trust switch:
    # it verifies the certificate only when freetds.conf names a "ca file".
    "freetds": ("Encryption", None),
}


def tls_attributes(
    family: Family | None, tls: Tls, keys: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """The ``Encrypt=`` and ``TrustServerCertificate=`` attributes, and warnings.

    ``keys`` are the attributes the connection string (or URL query) already has:
    trusting written there is warned about too. Raises ``ValueError`` when the
    settings are given for a driver that is not a SQL Server one (the caller
    turns it into a configuration error).
    """
    warnings: list[str] = []
    if tls.trust_server_certificate:
        warnings.append(_trust_warning("source.trust_server_certificate = true"))
    if trust_written_in(keys or {}):
        warnings.append(_trust_warning("TrustServerCertificate=yes in the source"))
    if not tls.is_set:
        return [], warnings
    if family not in SQL_SERVER_FAMILIES:
        raise ValueError(
            "source.encrypt and source.trust_server_certificate apply to SQL "
            "Server drivers (ODBC Driver 17 or 18 for SQL Server, FreeTDS) only"
        )
    encrypt_key, trust_key = TLS_KEYS[family]
    parts: list[str] = []
    if tls.encrypt is not None:
        words = {True: "yes", False: "no", "strict": "strict"}
        if family == "freetds":
            words = {True: "require", False: "off", "strict": "strict"}
        parts.append(f"{encrypt_key}={words[tls.encrypt]}")
    if tls.trust_server_certificate is not None:
        if trust_key is None:
            warnings.append(
                "FreeTDS has no TrustServerCertificate: it verifies the server's "
                'certificate only when freetds.conf sets "ca file" (see drivers.md)'
            )
        else:
            word = "yes" if tls.trust_server_certificate else "no"
            parts.append(f"{trust_key}={word}")
    return parts, warnings


def _trust_warning(where: str) -> str:
    return (
        f"{where}: the SQL Server's certificate is NOT verified, so a machine "
        "posing as the server could read the student data and the password; "
        "install the server's CA certificate on this machine and remove the "
        "setting (see drivers.md)"
    )


def tls_conflicts(family: Family | None, keys: dict[str, str], tls: Tls) -> list[str]:
    """Settings given both in ``[source]`` and in the connection string itself."""
    found: list[str] = []
    names = (("Encrypt", "Encryption"), ("TrustServerCertificate",))
    for setting, value, words in zip(
        ("encrypt", "trust_server_certificate"),
        (tls.encrypt, tls.trust_server_certificate),
        names,
        strict=True,
    ):
        if value is None:
            continue
        for word in words:
            if word.upper() in keys:
                found.append(f"source.{setting} and {word}= in the connection string")
    return found


def trust_written_in(keys: dict[str, str]) -> bool:
    """True when the connection string itself turns certificate checks off."""
    value = keys.get("TRUSTSERVERCERTIFICATE", "").strip().lower()
    return value in ("yes", "true", "1")


def driver_attributes(family: Family | None, keys: dict[str, str]) -> list[str]:
    """Attributes a driver needs for correct text, unless the string sets them."""
    if family == "freetds" and "CLIENTCHARSET" not in keys:
        # FreeTDS converts text to ISO 8859-1 by default, losing other letters.
        return ["ClientCharset=UTF-8"]
    return []


@dataclass(frozen=True)
class Decoding:
    """How pyodbc decodes ``SQL_CHAR`` and ``SQL_WCHAR`` data, and encodes text.

    ``char_as_wide`` asks the driver for ``SQL_CHAR`` columns as UTF-16 (pyodbc's
    ``ctype=SQL_WCHAR``), so the driver converts from the server's code page
    itself, whatever the client's locale, ``NLS_LANG`` or ANSI code page says.
    """

    char: str
    wchar: str
    encode: str
    char_as_wide: bool = False


def decoding_for(family: Family | None, forced: str | None = None) -> Decoding | None:
    """The decoding a driver family needs on unixODBC (and Windows); None: pyodbc's."""
    if forced:
        return Decoding(forced, forced, forced)
    if family in ("mariadb", "mysql", "sqlite"):
        # These drivers return UTF-8 for both C types on unixODBC; decoding their
        # SQL_WCHAR data as UTF-16 (pyodbc's default) loses characters.
        return Decoding("utf-8", "utf-8", "utf-8")
    if family == "postgres":
        return Decoding("utf-8", "utf-16le", "utf-8")
    if family == "freetds":
        # With ClientCharset=UTF-8 (added to the string), narrow text is UTF-8.
        return Decoding("utf-8", "utf-16le", "utf-16le")
    if family in ("mssql", "oracle", "progress"):
        # Their narrow text follows the client's code page (locale, NLS_LANG,
        # IANAAppCodePage): ask for UTF-16 instead.
        return Decoding("utf-16le", "utf-16le", "utf-16le", char_as_wide=True)
    return None


def datetimeoffset(raw: bytes | None) -> dt.datetime | None:
    """A SQL Server ``DATETIMEOFFSET`` value (raw ODBC bytes) as an aware datetime.

    Registered as pyodbc's output converter for type -155; the time-zone rule of
    the date fields then gives the date in ``source.time_zone``. ``None`` (a NULL,
    which some pyodbc versions pass on) stays ``None``.
    """
    if raw is None:
        return None
    year, month, day, hour, minute, second, nanos, off_h, off_m = (
        _DATETIMEOFFSET.unpack(raw[: _DATETIMEOFFSET.size])
    )
    zone = dt.timezone(dt.timedelta(hours=off_h, minutes=off_m))
    return dt.datetime(
        year, month, day, hour, minute, second, nanos // 1000, tzinfo=zone
    )


_CERTIFICATE = re.compile(
    r"certificate verify failed|certificate chain was issued by an authority"
    r"|self[- ]signed certificate|SSL Provider|unable to get local issuer",
    re.IGNORECASE,
)
_PROGRESS_WIDTH = re.compile(
    r"Column (\S+) in table (\S+) has value exceeding its? max length or precision",
    re.IGNORECASE,
)


def connect_hint(text: str) -> str | None:
    """The fix for a connection failure a driver trap explains, if any."""
    if _CERTIFICATE.search(text):
        return (
            "the server's TLS certificate did not verify (ODBC Driver 18 for SQL "
            "Server encrypts and verifies by default); install the server's CA "
            "certificate on this machine, or set source.encrypt = false or "
            "source.trust_server_certificate = true if the district accepts that "
            "risk (see drivers.md)"
        )
    return None


LOST_HINT = (
    "the connection to the database was lost during the query (the server "
    "restarted or ended the session, or the network dropped); run again, and if "
    "it happens again look in the database server's log"
)
_LOST = re.compile(
    r"connection (?:has been |was )?lost|lost connection|server closed the "
    r"connection|gone away|terminating connection|connection was killed|"
    r"communication link failure|connection reset|broken pipe|"
    r"no connection to the server",
    re.IGNORECASE,
)
# SQLSTATE class 08 (connection exception) and PostgreSQL's operator
# intervention: the session was ended by an administrator or a shutdown.
_LOST_STATES = ("57P01", "57P02", "57P03")


def lost_connection(state: str, text: str) -> bool:
    """Whether a query failed because its connection went, not because of its SQL."""
    return state.startswith("08") or state in _LOST_STATES or bool(_LOST.search(text))


def query_hint(text: str) -> str | None:
    """The fix for a query failure a driver trap explains, if any."""
    match = _PROGRESS_WIDTH.search(text)
    if match:
        column, table = match.groups()
        return (
            f"Progress OpenEdge holds a value in {table}.{column} wider than the "
            "column's SQL width; cast the column in the template, for example "
            f"SUBSTRING({column}, 1, 255), or have the Progress DBA run dbtool's "
            '"SQL Width Scan w/Fix Option" on the database (see drivers.md)'
        )
    return None


def bitness() -> int:
    """32 or 64: ODBC drivers and DSNs of the other size are invisible to us."""
    return struct.calcsize("P") * 8


def bitness_note() -> str:
    """What ``connector drivers`` says about driver sizes on this platform."""
    bits = bitness()
    note = f"Python is {bits}-bit: only {bits}-bit ODBC drivers and DSNs are visible"
    if sys.platform == "win32":
        admin = "System32" if bits == 64 else "SysWOW64"
        note += f" (set them up with the ODBC Data Source Administrator in {admin})"
    return note
