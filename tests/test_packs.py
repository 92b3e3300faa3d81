"""Every query pack, parsed in its own SQL dialect by sqlglot.

The packs that cannot run here (PowerSchool on Oracle, the SQL Server ones) are
checked only this way: each template, rendered as the connector renders it,
parses in its dialect and selects exactly the data set's query columns. The
open-source packs get the same check on top of their live tests.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlglot
from sqlglot import exp

from connector.datasets import DATASETS
from connector.init import list_packs
from connector.templates import render_query

DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "sqlserver": "tsql"}
DIALECTS["oracle"] = "oracle"
PARAMS = {
    "school_year": 2025,
    "start_date": dt.date(2025, 8, 18),
    "end_date": dt.date(2025, 10, 3),
}
PACKS = list_packs()
CASES = [(p, d) for p in PACKS for d in DATASETS]
COMMERCIAL = ["powerschool", "infinitecampus", "aeries", "eschoolplus"]


def output_columns(sql: str, dialect: str) -> list[str]:
    [tree] = sqlglot.parse(sql, read=dialect, error_level=sqlglot.ErrorLevel.RAISE)
    assert tree is not None
    select = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    assert isinstance(select, exp.Select), "the template is not a SELECT"
    names = []
    for projection in select.expressions:
        assert projection.alias_or_name, f"unnamed column {projection.sql()}"
        names.append(projection.alias_or_name.lower())
    return names


@pytest.mark.parametrize(
    ("pack", "dataset"), CASES, ids=[f"{p.name}-{d}" for p, d in CASES]
)
@pytest.mark.parametrize("schools", [False, True], ids=["all", "schools"])
def test_template_parses_and_selects_the_data_set_columns(
    pack: object, dataset: str, schools: bool
) -> None:
    from connector.init import Pack

    assert isinstance(pack, Pack)
    params = {name: p.value for name, p in ((p.name, p) for p in pack.params)}
    params |= {k: v for k, v in PARAMS.items() if k in params}
    if schools:
        params["schools"] = ["101", "102"]
    query = render_query(pack.template(dataset), params)

    columns = output_columns(query.sql, DIALECTS[pack.database])

    assert sorted(columns) == sorted(DATASETS[dataset].selected_names)
    assert len(columns) == len(set(columns))
    assert query.sql.count("?") == query.param_count  # values bound, not written


def test_commercial_packs_are_there_and_say_they_are_untried() -> None:
    by_name = {p.name: p for p in PACKS}
    for name in COMMERCIAL:
        pack = by_name[name]
        assert not pack.tested_live
        readme = (pack.folder / "README.md").read_text()
        assert "not yet tried on a live database" in readme
        assert "https://" in readme.split("## Source", 1)[1], "cites its source"
    databases = {by_name[n].database for n in COMMERCIAL}
    assert databases == {"oracle", "sqlserver"}
