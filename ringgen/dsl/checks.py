"""Checks on a whole function: the AST allow-list, and whether every path returns."""

from __future__ import annotations

import ast

from . import ir
from .diagnostics import Diagnostics, unsupported_node_message

__all__ = ["ALLOWED_NODES", "always_returns", "check_allowed"]

#: Every AST node a handler may contain; anything else gets one clear error (Warp's allow-list).
ALLOWED_NODES: frozenset = frozenset(
    {
        # structure
        ast.FunctionDef,
        ast.arguments,
        ast.arg,
        ast.keyword,
        ast.Load,
        ast.Store,
        # statements
        ast.Assign,
        ast.AnnAssign,
        ast.AugAssign,
        ast.Expr,
        ast.If,
        ast.For,
        ast.While,
        ast.Break,
        ast.Continue,
        ast.Return,
        ast.Pass,
        # expressions
        ast.Constant,
        ast.List,  # stored into an Array or List, or the right side of `in` (lower_forms)
        ast.Tuple,  # multiple assignment, `in`, enumerate targets, returns (unpack, lower_forms)
        ast.Name,
        ast.Attribute,
        ast.Subscript,
        ast.Call,
        ast.BinOp,
        ast.UnaryOp,
        ast.BoolOp,
        ast.Compare,
        ast.IfExp,
        # operators
        ast.Add,
        ast.Sub,
        ast.Mult,
        ast.Div,
        ast.FloorDiv,
        ast.Mod,
        ast.BitAnd,
        ast.BitOr,
        ast.BitXor,
        ast.LShift,
        ast.RShift,
        ast.USub,
        ast.UAdd,
        ast.Not,
        ast.Invert,
        ast.And,
        ast.Or,
        ast.Lt,
        ast.LtE,
        ast.Gt,
        ast.GtE,
        ast.Eq,
        ast.NotEq,
        ast.Pow,
        ast.In,
        ast.NotIn,
    }
)

# Parts of the signature (annotations, decorators) are Python evaluated at declaration time.
_SIGNATURE_FIELDS = ("decorator_list", "returns", "type_params")


def check_allowed(fn: ast.FunctionDef, diag: Diagnostics) -> None:
    """Raise ``HandlerError`` at the first node outside ``ALLOWED_NODES`` (in source order)."""
    for arg in fn.args.args:
        arg.annotation = None
    for field in _SIGNATURE_FIELDS:
        if hasattr(fn, field):
            setattr(fn, field, [] if field != "returns" else None)
    bad = [n for n in ast.walk(fn) if type(n) not in ALLOWED_NODES]
    nested = [(n, _locatable(fn, n)) for n in bad if n is not fn]
    if nested:
        first, at = min(nested, key=lambda pair: (pair[1].lineno, pair[1].col_offset))
        msg, hint = unsupported_node_message(first)
        raise diag.error(at, msg, hint=hint)


def _locatable(fn: ast.AST, node: ast.AST) -> ast.AST:
    """``node`` if it has a position, else the nearest ancestor that does (operators have none)."""
    if hasattr(node, "lineno"):
        return node
    for parent in ast.walk(fn):
        for child in ast.iter_child_nodes(parent):
            if child is node:
                return _locatable(fn, parent)
    return fn


def always_returns(body: tuple) -> bool:
    """True when every path through ``body`` (IR statements) ends in a return."""
    for s in body:
        if isinstance(s, ir.Return):
            return True
        if isinstance(s, ir.If) and always_returns(s.then) and always_returns(s.orelse):
            return True
        if (
            isinstance(s, ir.While)
            and isinstance(s.cond, ir.Const)
            and s.cond.value is True
            and not _breaks(s.body)
        ):
            return True
    return False


def _breaks(body: tuple) -> bool:
    for s in body:
        if isinstance(s, ir.Break):
            return True
        if isinstance(s, ir.If) and (_breaks(s.then) or _breaks(s.orelse)):
            return True
    return False
