"""``%{ ... }%`` blocks: Python assertions over a socket's ``tcpi_*`` fields
(``../shared/docs/packetdrill-language.md``, "Code blocks").

packetdrill hands these blocks to a Python interpreter. Running arbitrary code from a script file
in the runner's process would let a script do anything, so the block is parsed with :mod:`ast` and
only a small, side-effect-free subset is evaluated: ``assert`` statements, assignments to plain
names, comparisons, arithmetic, boolean logic, and the calls ``abs``, ``min``, ``max``, ``int``,
``float``, ``round`` (and ``print``, which does nothing). Names are the ``tcpi_*`` fields the
backend provides, the ``TCP_*``/``TCPI_OPT_*`` constants, and names the block assigned. Anything
else — another construct, a ``tcpi_*`` field the backend cannot provide — makes the script
UNSUPPORTED with the reason; a failed assertion makes it FAIL with the values involved.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Final

from synack.drill import symbols
from synack.drill.script import DrillError, Pos

__all__ = ["evaluate", "names_used"]

_NODES: Final = (
    ast.Module, ast.Expr, ast.Assert, ast.Assign, ast.AugAssign, ast.Compare, ast.BoolOp, ast.UnaryOp,
    ast.BinOp, ast.Name, ast.Load, ast.Store, ast.Constant, ast.Call, ast.IfExp, ast.Tuple, ast.Pass,
    ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd, ast.Invert, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift, ast.RShift,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
    ast.JoinedStr, ast.FormattedValue,
)


def _noop(*args: object) -> None:
    return None


_FUNCS: Final[Mapping[str, Callable[..., Any]]] = {
    "abs": abs, "min": min, "max": max, "int": int, "float": float, "round": round, "print": _noop,
}


def _parse(text: str, pos: Pos) -> ast.Module:
    try:
        tree = ast.parse(_dedent(text), mode="exec")
    except SyntaxError as exc:
        raise DrillError(f"code block: {exc.msg}", Pos(pos.line + (exc.lineno or 1) - 1, pos.col)) from None
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            raise DrillError(f"code block uses {type(node).__name__}, which the runner does not evaluate "
                             f"(only assertions over tcpi_* fields)", pos, unsupported=True)
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS):
            raise DrillError("code block calls a function the runner does not provide", pos, unsupported=True)
    return tree


def _dedent(text: str) -> str:
    lines = text.splitlines()
    body = [ln for ln in lines if ln.strip()]
    if not body:
        return ""
    indent = min(len(ln) - len(ln.lstrip()) for ln in body)
    return "\n".join(ln[indent:] if ln.strip() else "" for ln in lines)


def names_used(text: str, pos: Pos) -> set[str]:
    """The ``tcpi_*`` names a block reads (checked before a run: an unknown field is UNSUPPORTED)."""
    tree = _parse(text, pos)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id.startswith("tcpi_")}


def evaluate(text: str, info: Mapping[str, int], pos: Pos, backend: str) -> str | None:
    """Run the block; None when every assertion holds, else what failed (with the values)."""
    tree = _parse(text, pos)
    scope: dict[str, Any] = dict(symbols.CONSTANTS) | {"True": True, "False": False, "None": None}
    scope.update(_FUNCS)
    for name in names_used(text, pos):
        if name not in info:
            raise DrillError(f"{name} is not available on {backend} (only: {', '.join(sorted(info))})", pos,
                             unsupported=True)
    scope.update(info)
    for stmt in tree.body:
        try:
            if isinstance(stmt, ast.Assert):
                if not _eval(stmt.test, scope):
                    return _failed(stmt, info, scope)
            else:
                exec(compile(ast.Module([stmt], []), "<code>", "exec"), {"__builtins__": {}}, scope)
        except Exception as exc:  # a block that divides by zero or compares bad types: a failure
            return f"code block raised {type(exc).__name__}: {exc}"
    return None


def _eval(node: ast.expr, scope: dict[str, Any]) -> Any:
    """One checked expression, with no builtins but the scope's."""
    return eval(compile(ast.Expression(node), "<code>", "eval"), {"__builtins__": {}}, scope)


def _failed(stmt: ast.Assert, info: Mapping[str, int], scope: dict[str, Any]) -> str:
    used = sorted({n.id for n in ast.walk(stmt.test) if isinstance(n, ast.Name) and n.id in info})
    values = ", ".join(_show(n, info[n]) for n in used)
    msg = f"assertion failed: {ast.unparse(stmt.test)}"
    if stmt.msg is not None:
        with contextlib.suppress(Exception):  # the message itself failed: keep the assertion's text
            msg += f" ({_eval(stmt.msg, scope)})"
    return f"{msg}; {values}" if values else msg


def _show(name: str, value: int) -> str:
    if name == "tcpi_state":
        return f"{name} = {value} ({symbols.STATE_NAMES.get(value, '?')})"
    return f"{name} = {value}"
