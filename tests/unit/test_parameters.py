"""Runbook parameters are typed by their declaration; the command line converts strictly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgkit.errors import UsageError
from bgkit.runbook.parameters import (
    Declared,
    convert_text,
    declared_parameters,
    parse_cell,
    typed_value,
)
from bgkit.runbook.runner import cli_parameters
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
APPROVE = Declared("approve", "bool", False, "")
VERSION = Declared("version", "str", "", "")
COUNT = Declared("samples_per_host", "int", 0, "")
RATIO = Declared("ratio", "float", 1.0, "")


@pytest.mark.parametrize("text", ["no", "off", "yes", "on", "0", "1", "y", "", " true"])
def test_a_bool_parameter_refuses_anything_but_true_or_false(text: str) -> None:
    with pytest.raises(UsageError, match=r"parameter approve is a bool: got .*true or false"):
        convert_text(APPROVE, text)


@pytest.mark.parametrize(("text", "value"), [("true", True), ("TRUE", True), ("True", True),
                                             ("false", False), ("FALSE", False),
                                             ("False", False)])
def test_a_bool_parameter_takes_true_or_false_in_any_case(text: str, value: bool) -> None:
    assert convert_text(APPROVE, text) is value


@pytest.mark.parametrize("text", ["1.10", "007", "True", "None", "1e3", " spaced ", ""])
def test_a_str_parameter_keeps_the_text_exactly_as_typed(text: str) -> None:
    assert convert_text(VERSION, text) == text


@given(st.text())
def test_any_text_given_to_a_str_parameter_comes_back_unchanged(text: str) -> None:
    assert convert_text(VERSION, text) == text


@pytest.mark.parametrize("text", ["1.0", "1e3", "ten", "", "0x10", "nan", "1_000"])
def test_an_int_parameter_parses_strictly(text: str) -> None:
    with pytest.raises(UsageError, match="is a int: got"):
        convert_text(COUNT, text)


def test_int_and_float_parameters_take_plain_numbers() -> None:
    assert convert_text(COUNT, "-42") == -42
    assert convert_text(RATIO, "2.5") == 2.5 and convert_text(RATIO, "3") == 3.0
    for text in ("nan", "inf", "-inf", "1,5"):
        with pytest.raises(UsageError, match="ratio is a float"):
            convert_text(RATIO, text)


def test_python_values_must_already_have_the_declared_type() -> None:
    assert typed_value(APPROVE, True) is True
    assert typed_value(RATIO, 2) == 2.0
    for declared, value in ((APPROVE, "no"), (APPROVE, 1), (COUNT, True), (COUNT, 1.5),
                            (VERSION, 1.1), (RATIO, math.nan)):
        with pytest.raises(UsageError, match=f"parameter {declared.name} is a"):
            typed_value(declared, value)


def test_declarations_carry_type_default_and_help() -> None:
    found = parse_cell('# a comment line\napprove: bool = False  # True switches\n'
                       'name: str = "x#y"  # the name')
    assert found["approve"] == Declared("approve", "bool", False, "True switches")
    assert found["name"] == Declared("name", "str", "x#y", "the name")


@pytest.mark.parametrize(("source", "problem"), [
    ("approve = False", "expected a typed declaration"),
    ("approve: Bool = False", "declared as Bool; expected one of str, bool, int, float"),
    ("approve: list = []", "declared as list"),
    ("approve: bool", "expected a typed declaration"),
    ("approve: bool = 'no'", "parameter approve is a bool"),
    ("import os", "expected a typed declaration"),
    ("n: int = len('x')", "must be a literal"),
    ("n: int = (", "not valid Python"),
])
def test_an_undeclared_or_mistyped_parameter_is_an_error_in_the_notebook(
        source: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_cell(source, where="x.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_shipped_notebook_declares_a_type_and_a_safe_default_for_each_parameter(
        path: Path) -> None:
    declared = declared_parameters(path)
    assert "run_id" in declared
    assert declared.get("approve", APPROVE).default is False
    assert declared.get("interactive", Declared("interactive", "bool", True, "")).type_name \
        == "bool"
    assert all(spec.help for spec in declared.values()), "every parameter says what it is"


def test_the_command_line_converts_by_declaration_and_raw_keeps_text() -> None:
    build = REPO / "notebooks" / "01_build.ipynb"
    assert cli_parameters(build, typed=[("version", "1.10")], raw=[]) == {"version": "1.10"}
    switch = REPO / "notebooks" / "04_switch.ipynb"
    assert cli_parameters(switch, typed=[("approve", "FALSE")], raw=[("release", "1.0")]) == \
        {"approve": False, "release": "1.0"}
    with pytest.raises(UsageError, match="-r passes raw text, but approve is a bool"):
        cli_parameters(switch, typed=[], raw=[("approve", "true")])
    with pytest.raises(UsageError, match="approve is given twice"):
        cli_parameters(switch, typed=[("approve", "true")], raw=[("approve", "x")])
