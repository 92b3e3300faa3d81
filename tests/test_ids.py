"""The compact ID index: bulk appends and lookups agree with a plain dict."""

from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.ids import MAX_CHUNKS, IdIndex, as_index

_KEYS = st.text(alphabet="SAB12é|", max_size=3)


def test_focused_and_unfocused_lookups_agree() -> None:
    index = IdIndex()
    index.extend(["S1", "S2"], [1, 2])
    index.add("S3", 3)
    assert index.focus(pa.array(["S2", "S3", "S9"])) == 2
    assert index.missing() == ["S9"]
    assert "S2" in index and "S3" in index and "S9" not in index
    assert index["S2"] == 2 and index["S3"] == 3
    # Outside the focus: scanned, still right.
    assert "S1" in index and index["S1"] == 1 and "S7" not in index
    index.add("S9", 9)
    assert "S9" in index and index["S9"] == 9
    assert dict(index.items()) == {"S1": 1, "S2": 2, "S3": 3, "S9": 9}
    assert len(index) == 4 and sorted(index) == ["S1", "S2", "S3", "S9"]


def test_an_extend_ends_the_focus() -> None:
    index = IdIndex()
    index.focus(pa.array(["S1"]))
    index.extend(["S1"], [5])
    assert "S1" in index and index["S1"] == 5


def test_many_chunks_are_joined() -> None:
    index = IdIndex()
    for n in range(MAX_CHUNKS * 2):
        index.extend([f"S{n}"], [n])
    assert len(index._keys) <= MAX_CHUNKS
    assert index.focus(pa.array([f"S{n}" for n in range(MAX_CHUNKS * 2)])) == (
        MAX_CHUNKS * 2
    )
    # Each ID alone, the joined arrays' first and last among them.
    for n in range(MAX_CHUNKS * 2):
        assert index.focus(pa.array([f"S{n}"])) == 1
        assert f"S{n}" in index and index[f"S{n}"] == n


def test_ids_outside_every_arrays_range_are_not_held() -> None:
    # In order, as from a template with ORDER BY: each batch lies past the
    # arrays held, and is found in none of them; one back in range is found.
    index = IdIndex()
    for start in range(0, 400, 40):
        batch = [f"S{n:04d}" for n in range(start, start + 40)]
        assert index.focus(pa.array(batch)) == 0
        index.extend(batch, range(start, start + 40))
    assert index.focus(pa.array(["S0000", "S0399", "S0400", "A", "T"])) == 2
    assert sorted(index.missing()) == ["A", "S0400", "T"]


def test_a_plain_mapping_becomes_an_index_and_an_index_stays() -> None:
    index = as_index({"S1": 4})
    assert isinstance(index, IdIndex) and index["S1"] == 4
    assert as_index(index) is index and as_index(None) is None


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("extend"), st.lists(_KEYS, unique=True, max_size=6)),
            st.tuples(st.just("add"), _KEYS),
            st.tuples(st.just("focus"), st.lists(_KEYS, unique=True, max_size=6)),
        ),
        max_size=12,
    ),
    probes=st.lists(_KEYS, max_size=6),
)
def test_it_answers_as_a_dict_would(
    steps: list[tuple[str, Any]], probes: list[str]
) -> None:
    index, model = IdIndex(), dict[str, int]()
    row = 0
    for step, value in steps:
        if step == "extend":
            fresh = [k for k in value if k not in model]
            rows = list(range(row, row + len(fresh)))
            row += len(fresh)
            index.extend(fresh, rows)
            model.update(zip(fresh, rows, strict=True))
        elif step == "add" and value not in model:
            row += 1
            index.add(value, row)
            model[value] = row
        elif step == "focus":
            assert index.focus(pa.array(value, pa.string())) == sum(
                k in model for k in value
            )
            assert sorted(index.missing()) == sorted(k for k in value if k not in model)
        for key in probes:
            assert (key in index) == (key in model)
            if key in model:
                assert index[key] == model[key]
    assert dict(index.items()) == model and len(index) == len(model)
