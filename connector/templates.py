"""Render a Jinja template into a query whose every value is a bound parameter.

Inside a template, each ``{{ expression }}`` becomes a placeholder and its value goes
into the parameter list: values never reach the SQL text. A list or tuple becomes one
placeholder per item, so ``IN ({{ schools }})`` works. Control statements
(``{% if %}``, ``{% for %}``) work on the values as usual.
"""

from __future__ import annotations

import datetime as dt
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2 import meta

from .errors import TemplateError

ParamStyle = Literal["qmark", "named", "numeric"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT = re.compile(r"^-?\d+$")


@dataclass
class Query:
    """A rendered query: SQL text with placeholders, and the values to bind."""

    sql: str
    params: list[Any] | dict[str, Any]
    template: Path
    key: tuple[str, ...] = ()
    """Result columns that identify a row, for sources that fetch in key order
    chunks (MariaDB); other sources ignore it."""

    @property
    def param_count(self) -> int:
        return len(self.params)


@dataclass
class _Binder:
    style: ParamStyle
    values: list[Any] = field(default_factory=list)

    def bind(self, value: Any) -> str:
        if isinstance(value, jinja2.Undefined):
            # StrictUndefined raises on str(); reaching here means a plain Undefined.
            str(value)
        if isinstance(value, list | tuple | set | frozenset):
            items = list(value)
            if not items:
                raise TemplateError(
                    "an empty list cannot be bound in IN (...); "
                    "give at least one value or guard it with {% if %}"
                )
            return ", ".join(self._one(v) for v in items)
        return self._one(value)

    def _one(self, value: Any) -> str:
        self.values.append(value)
        if self.style == "qmark":
            return "?"
        if self.style == "numeric":
            return f"${len(self.values)}"
        return f":p{len(self.values)}"


def parse_param(text: str) -> tuple[str, Any]:
    """Split a ``--param name=value`` string into a name and a text value.

    ``YYYY-MM-DD`` becomes a date and a comma-separated value (``schools=101,102``)
    a list; everything else stays text until ``typed_like`` gives it the type of
    the same name in the config's ``[params]``.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise TemplateError(
            f"--param {text!r} is not name=value; write for example "
            "--param school_year=2025"
        )
    if "," in raw:
        return name, [_typed(part.strip()) for part in raw.split(",") if part.strip()]
    value = _typed(raw.strip())
    if name.endswith("date") and not isinstance(value, dt.date):
        raise TemplateError(
            f"--param {name}={raw!r} is not a date; write it as YYYY-MM-DD, "
            "for example 2025-08-04"
        )
    return name, value


def parse_params(items: list[str]) -> dict[str, Any]:
    """Parse repeated ``--param`` options; a name given twice is an error."""
    params: dict[str, Any] = {}
    for item in items:
        name, value = parse_param(item)
        if name in params:
            raise TemplateError(
                f"--param {name} is given twice; give it once (a list is a,b,c)"
            )
        params[name] = value
    return params


def template_names(path: Path) -> set[str]:
    """The names a template reads from its parameters."""
    try:
        source = path.read_text(encoding="utf-8")
        return set(meta.find_undeclared_variables(jinja2.Environment().parse(source)))
    except (OSError, UnicodeDecodeError, jinja2.TemplateError):
        return set()  # render_query reports the problem with its details


def _typed(raw: str) -> Any:
    if _DATE.match(raw):
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            return raw
    return raw


def typed_like(name: str, value: Any, like: Any) -> Any:
    """``value`` from ``--param`` in the type of ``like``, the config's value.

    An integer in the config makes the override an integer (``school_year``);
    anything else stays as parsed, so a code such as ``0427`` or ``101`` stays
    text. A list in the config makes a single value a one-item list.
    """
    if isinstance(like, list):
        items = value if isinstance(value, list) else [value]
        first = like[0] if like else ""
        return [typed_like(name, item, first) for item in items]
    if isinstance(like, bool) or not isinstance(like, int):
        return value
    if isinstance(value, str) and _INT.match(value):
        return int(value)
    raise TemplateError(
        f"--param {name}={value!r} is not a whole number, as {name} is in [params]"
    )


def render_query(
    path: Path, params: Mapping[str, Any], *, style: ParamStyle = "qmark"
) -> Query:
    """Render the template at ``path`` with ``params`` bound as query parameters.

    Raises ``TemplateError`` naming the file (and line, where Jinja knows it) when the
    template is missing, malformed or uses a name that ``params`` lacks.
    """
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(
            f"template {path} does not exist; check the data set's 'template' setting"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"template {path} cannot be read: {exc}") from exc

    binder = _Binder(style)
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        finalize=binder.bind,
        autoescape=False,
        keep_trailing_newline=True,
    )
    _check_no_quoted_placeholder(env, source, path)
    try:
        template = env.from_string(source)
        template.filename = str(path)
        sql = template.render(**params)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template {path}, line {exc.lineno}: {exc.message}"
        ) from exc
    except jinja2.UndefinedError as exc:
        line = _template_line(exc, path)
        where = f", line {line}" if line else ""
        raise TemplateError(
            f"template {path}{where}: {exc.message}; define it under [params] in "
            "the config or pass --param NAME=VALUE"
        ) from exc
    except TemplateError as exc:
        line = _template_line(exc, path)
        where = f", line {line}" if line else ""
        raise TemplateError(f"template {path}{where}: {exc}") from exc
    except jinja2.TemplateError as exc:
        line = _template_line(exc, path)
        where = f", line {line}" if line else ""
        raise TemplateError(f"template {path}{where}: {exc}") from exc

    if not sql.strip():
        raise TemplateError(
            f"template {path} is empty (it renders no SQL); write the data set's "
            "SELECT in it"
        )
    if style in ("qmark", "numeric"):
        bound: list[Any] | dict[str, Any] = binder.values
    else:
        bound = {f"p{i}": v for i, v in enumerate(binder.values, start=1)}
    return Query(sql=sql, params=bound, template=path)


def _check_no_quoted_placeholder(
    env: jinja2.Environment, source: str, path: Path
) -> None:
    """A ``{{ ... }}`` inside SQL quotes (``'{{ start_date }}'``) would be a
    placeholder inside a string literal: the driver then counts the wrong number
    of parameters. Follows the SQL text between Jinja tags: strings, comments."""
    state = ""  # "" (SQL), "'" (in a string), "--" or "/*" (in a comment)
    try:
        tokens = list(env.lex(source))
    except jinja2.TemplateSyntaxError:
        return  # rendering reports it with its line
    for line, token, value in tokens:
        if token == "variable_begin" and state == "'":
            raise TemplateError(
                f"template {path}, line {line}: a placeholder is inside SQL quotes; "
                "remove the quotes around it ({{ name }}, not '{{ name }}'): "
                "every value is bound as a parameter, and a date or text needs none"
            )
        if token != "data":
            continue
        i = 0
        while i < len(value):
            pair = value[i : i + 2]
            if state == "'":
                state = "" if value[i] == "'" else state
            elif state == "--":
                state = "" if value[i] == "\n" else state
            elif state == "/*":
                if pair == "*/":
                    state, i = "", i + 1
            elif value[i] == "'":
                state = "'"
            elif pair in ("--", "/*"):
                state, i = pair, i + 1
            i += 1


def _template_line(exc: BaseException, path: Path) -> int | None:
    """The template line of the innermost frame that Jinja mapped to ``path``."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    return line
