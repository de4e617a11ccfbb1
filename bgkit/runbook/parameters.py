"""Runbook parameters, typed by their declaration in the notebook's ``parameters`` cell.

A step notebook declares each parameter with a type and a safe default::

    approve: bool = False  # headless approval: True switches when the gates pass

Only ``str``, ``bool``, ``int`` and ``float`` are allowed; anything else in the cell
(a bare assignment, another type, code) is an error in the notebook. Values given on the
command line (``bgkit run STEP -p NAME VALUE``) are converted to the declared type, or
refused with the parameter, the value and what is accepted:

- ``bool`` takes only ``true`` or ``false``, in any case (never ``yes``, ``off``, ``0``);
- ``str`` keeps the text exactly as typed (``1.10`` stays the text ``1.10``);
- ``int`` and ``float`` parse strictly (``1e3`` is no int; ``nan`` and ``inf`` are refused).

Values given from Python (``bgkit release``) must already have the declared type.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bgkit.errors import UsageError

__all__ = ["TYPES", "Declared", "convert_text", "declared_parameters", "parse_cell",
           "typed_value"]

TYPES: dict[str, type] = {"str": str, "bool": bool, "int": int, "float": float}
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class Declared:
    """One parameter as the notebook declares it."""

    name: str
    type_name: str  # a key of TYPES
    default: object
    help: str

    def accepted(self) -> str:
        """What a command-line value of this parameter may be, in words."""
        return {"bool": "true or false (any case)", "int": "a whole number such as 42",
                "float": "a number such as 2.5", "str": "any text"}[self.type_name]


def declared_parameters(path: Path) -> dict[str, Declared]:
    """The parameters declared in the cell tagged ``parameters`` of the notebook ``path``.

    Raises:
        UsageError: the notebook has no such cell, or the cell declares something that is
            not ``NAME: str|bool|int|float = <literal>`` (the message names the line).
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    if not cells:
        raise UsageError(f"{path.name}: no cell is tagged 'parameters'")
    return parse_cell(str(cells[0].source), where=path.name)


def parse_cell(source: str, *, where: str = "parameters cell") -> dict[str, Declared]:
    """The declarations in a parameters cell's ``source`` (see the module docstring).

    Raises:
        UsageError: a statement is not a typed declaration with a literal default of
            that type.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise UsageError(f"{where}: the parameters cell is not valid Python: {error}") \
            from None
    lines = source.splitlines()
    found: dict[str, Declared] = {}
    for node in tree.body:
        line = node.lineno
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(node.annotation, ast.Name) and node.value is not None):
            raise UsageError(f"{where} line {line}: expected a typed declaration like "
                             "`approve: bool = False`, got "
                             f"{lines[line - 1].strip()!r}")
        name, type_name = node.target.id, node.annotation.id
        if type_name not in TYPES:
            raise UsageError(f"{where} line {line}: parameter {name} is declared as "
                             f"{type_name}; expected one of {', '.join(TYPES)}")
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise UsageError(f"{where} line {line}: the default of {name} must be a "
                             "literal value") from None
        declared = Declared(name, type_name, default, _comment(lines[line - 1]))
        typed_value(declared, default)  # the default must have the declared type too
        found[name] = declared
    return found


def convert_text(declared: Declared, text: str) -> object:
    """``text`` from the command line as a value of the declared type.

    Raises:
        UsageError: ``text`` is not a value of that type; the message names the
            parameter, the value and what is accepted.
    """
    kind = declared.type_name
    value: object | None = None
    if kind == "str":
        value = text
    elif kind == "bool" and text.lower() in ("true", "false"):
        value = text.lower() == "true"
    elif kind == "int" and _INT.fullmatch(text):
        value = int(text)
    elif kind == "float" and _FLOAT.fullmatch(text):
        value = float(text)
    if value is None:
        raise UsageError(f"parameter {declared.name} is a {kind}: got {text!r}, expected "
                         f"{declared.accepted()}")
    return value


def typed_value(declared: Declared, value: object) -> object:
    """``value`` checked against the declared type (an int is accepted as a float).

    Raises:
        UsageError: the value has another type, or is a float that is not finite.
    """
    kind = declared.type_name
    ok = (isinstance(value, bool) if kind == "bool" else
          isinstance(value, int) and not isinstance(value, bool) if kind == "int" else
          isinstance(value, int | float) and not isinstance(value, bool) if kind == "float"
          else isinstance(value, str))
    if ok and kind == "float":
        ok = math.isfinite(float(value))  # type: ignore[arg-type]
        value = float(value)  # type: ignore[arg-type]
    if not ok:
        raise UsageError(f"parameter {declared.name} is a {kind}: got {value!r} "
                         f"({type(value).__name__}), expected {declared.accepted()}")
    return value


def _comment(line: str) -> str:
    """The trailing ``# comment`` of a declaration line (the parameter's help)."""
    try:
        tokens = list(_tokens(line))
    except Exception:  # an unusual line: no help rather than a crash
        return ""
    comments = [text for kind, text in tokens if kind == "COMMENT"]
    return comments[-1].lstrip("#").strip() if comments else ""


def _tokens(line: str) -> Any:
    import io
    import tokenize

    for token in tokenize.generate_tokens(io.StringIO(line + "\n").readline):
        yield tokenize.tok_name[token.type], token.string
