import datetime as dt
from pathlib import Path

import pytest

from connector.errors import TemplateError
from connector.templates import parse_param, render_query, typed_like


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "students.sql.j2"
    path.write_text(text, encoding="utf-8")
    return path


def test_render_binds_every_value_never_pastes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "SELECT * FROM s\nWHERE y = {{ school_year }} AND n = {{ name }}\n"
        "AND c IN ({{ schools }})",
    )
    query = render_query(
        path, {"school_year": 2024, "name": "x'; DROP TABLE s; --", "schools": [1, 2]}
    )
    assert query.sql == "SELECT * FROM s\nWHERE y = ? AND n = ?\nAND c IN (?, ?)"
    assert query.params == [2024, "x'; DROP TABLE s; --", 1, 2]
    assert "DROP" not in query.sql


def test_render_named_style(tmp_path: Path) -> None:
    path = write(tmp_path, "SELECT {{ a }}, {{ b }}")
    query = render_query(path, {"a": 1, "b": "two"}, style="named")
    assert query.sql == "SELECT :p1, :p2"
    assert query.params == {"p1": 1, "p2": "two"}


def test_render_control_statements_use_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "SELECT 1{% if schools is defined %} WHERE s IN ({{ schools }}){% endif %}",
    )
    assert render_query(path, {}).sql == "SELECT 1"
    assert render_query(path, {"schools": ["a"]}).params == ["a"]


def test_render_undefined_names_template_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "SELECT *\nFROM s\nWHERE y = {{ school_yeer }}\n")
    with pytest.raises(TemplateError) as info:
        render_query(path, {"school_year": 2024})
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert "school_yeer" in message
    assert "\n" not in message


def test_render_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "SELECT 1\n{% if %}\n")
    with pytest.raises(TemplateError, match="line 2"):
        render_query(path, {})


def test_render_missing_template(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        render_query(tmp_path / "nope.sql.j2", {})


def test_render_empty_list_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "SELECT 1 WHERE s IN ({{ schools }})")
    with pytest.raises(TemplateError, match="empty list"):
        render_query(path, {"schools": []})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("school_year=2025", ("school_year", "2025")),
        ("start_date=2025-08-04", ("start_date", dt.date(2025, 8, 4))),
        ("school=0427", ("school", "0427")),
        ("schools=101,102", ("schools", ["101", "102"])),
        ("term=Fall", ("term", "Fall")),
    ],
    ids=["number-as-text", "date", "leading-zero-code", "list", "text"],
)
def test_parse_param_types(text: str, expected: tuple[str, object]) -> None:
    assert parse_param(text) == expected


@pytest.mark.parametrize(
    ("value", "like", "typed"),
    [
        ("2025", 2024, 2025),
        ("101", "100", "101"),
        ("101", ["100"], ["101"]),
        (["1", "2"], [7], [1, 2]),
        ("0427", None, "0427"),
    ],
)
def test_a_param_takes_the_type_of_the_config_value(
    value: object, like: object, typed: object
) -> None:
    assert typed_like("p", value, like) == typed


def test_a_param_that_should_be_a_number_says_so() -> None:
    with pytest.raises(TemplateError, match="school_year='2O25' is not a whole number"):
        typed_like("school_year", "2O25", 2024)


@pytest.mark.parametrize("text", ["noequals", "=5", "1x=2"])
def test_parse_param_rejects(text: str) -> None:
    with pytest.raises(TemplateError, match="name=value"):
        parse_param(text)
