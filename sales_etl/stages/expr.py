"""Arithmetic over columns for derived values (``derive`` in a dataset file)."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np

_OPERATORS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate(expression: str, columns: dict[str, np.ndarray], exact: bool = False) -> np.ndarray:
    """Arithmetic over columns: + - * / ( ), numbers and column names, nothing else (no
    calls, no attributes): a dataset file cannot run code. ``exact``: the columns hold
    ``Decimal`` objects and so does the result (constants become decimals too)."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name) and node.id in columns:
            return columns[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Decimal(str(node.value)) if exact else node.value
        raise ValueError(f"not allowed in a derived column: {ast.dump(node)[:60]}")

    return np.asarray(walk(ast.parse(expression, mode="eval")), dtype=object if exact else float)


def check(expression: str, names: set[str]) -> None:
    """Raise ValueError unless the expression is arithmetic over ``names``."""
    evaluate(expression, {n: np.zeros(1) for n in names})
