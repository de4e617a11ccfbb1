"""record(): what can be stored, and how it reads back from a notebook."""

from __future__ import annotations

import dataclasses
import math

import nbformat
import pandas as pd
import pytest

from bgkit.errors import RecordError
from bgkit.runbook.notebooks import read_records
from bgkit.runbook.record import RECORD_MIME, record, to_jsonable


def test_a_dataframe_is_stored_as_row_records() -> None:
    frame = pd.DataFrame({"host": ["a", "b"], "p99_ms": [1.5, 2.0]})
    assert to_jsonable(frame) == ("table", [{"host": "a", "p99_ms": 1.5},
                                            {"host": "b", "p99_ms": 2.0}])


def test_a_named_index_becomes_a_column() -> None:
    frame = pd.DataFrame({"ok": [1]}, index=pd.Index(["h1"], name="host"))
    assert to_jsonable(frame) == ("table", [{"host": "h1", "ok": 1}])


def test_dataclasses_and_plain_json_are_values() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: list[str]

    assert to_jsonable(Point(1, ["a"])) == ("value", {"x": 1, "y": ["a"]})
    assert to_jsonable({"a": [1, None, True]}) == ("value", {"a": [1, None, True]})


@pytest.mark.parametrize(("value", "message"), [
    ({"when": object()}, r"x\.when: a object cannot be recorded"),
    ({"bad": math.nan}, r"x\.bad: nan cannot be stored"),
    ({1: "int key"}, r"x: key 1 must be a string"),
])
def test_values_that_are_not_json_are_refused_naming_the_part(value: object,
                                                              message: str) -> None:
    with pytest.raises(RecordError, match=message):
        to_jsonable(value, where="x")


@pytest.mark.parametrize("name", ["", "1st", "has space", "a/b", None])
def test_bad_record_names_are_refused(name: object) -> None:
    with pytest.raises(RecordError, match="record name"):
        record(name, 1)  # type: ignore[arg-type]


def test_outside_a_kernel_record_returns_the_json_and_stores_nothing() -> None:
    assert record("answer", {"value": 42}) == {"value": 42}


def test_records_read_back_from_notebook_outputs_later_ones_winning() -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    for value in (1, 2):
        cell.outputs.append(nbformat.v4.new_output(
            "display_data", data={RECORD_MIME: {"name": "n", "kind": "value", "value": value},
                                  "text/plain": "recorded"}))
    nb.cells.append(cell)
    assert read_records(nb) == {"n": {"kind": "value", "value": 2}}


def test_a_tables_column_order_survives_the_sorted_json_of_a_notebook(
        monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[dict[str, object]] = []
    monkeypatch.setattr("bgkit.runbook.record._display", shown.append)
    record("t", pd.DataFrame({"zeta": [1], "alpha": [2]}))
    assert shown[0][RECORD_MIME] == {"name": "t", "kind": "table", "columns": ["zeta", "alpha"],
                                     "value": [{"zeta": 1, "alpha": 2}]}
