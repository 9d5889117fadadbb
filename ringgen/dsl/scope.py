"""A function's locals: their names, their one type (declared or unified) and how values reach them.

Python locals are function-scoped, so each becomes one C local declared at the top of the function.
A local's type is either declared (``acc: f32 = 0.0``, once per function, as Python scopes an
annotation) or inferred from every assignment to it, Numba's way (``typesys.unify_local``):
``total = 0`` then ``total += msg.hist[i]`` over i16 values makes ``total`` an i64, never an i16.
The reference backend applies the same types (``reference.py`` casts every assignment to a typed
local), so a local never narrows on one side and not on the other.
"""

from __future__ import annotations

import ast
from typing import Optional

from . import ir
from .diagnostics import Diagnostics
from .lower_forms import FormsLowering
from .typesys import (
    VOID,
    ArrayT,
    ListT,
    MsgT,
    OutboxT,
    Scalar,
    StrT,
    TupleT,
    Type,
    describe,
    unify_local,
)

__all__ = ["ScopeLowering", "assigned_names", "first_store"]


class ScopeLowering(FormsLowering):
    """The scope half of ``lower.FunctionLowering``: reading, defining and declaring locals.

    Expects ``params``, ``local_names``, ``seen``, ``pinned``, ``assigned`` and ``declared``
    (name -> declared type) set by the driver (``FunctionLowering.run``).
    """

    def read_local(self, node: ast.Name, probe: bool = False) -> Optional[ir.Expr]:
        name = node.id
        if name in self.params:
            return self.params[name]
        if name not in self.local_names:
            return None
        if probe:
            return ir.Var(name, VOID)
        t = self.pinned.get(name) or self.seen.get(name)
        if t is None or name not in self.assigned:
            raise self.diag.error(
                node,
                f"local '{name}' may be used before it is assigned",
                hint="assign it on every path before this line",
            )
        return ir.Var(name, t)

    def define_local(self, name: str, value: ir.Expr, node: ast.AST) -> ir.Var:
        """Record an assignment of ``value`` to local ``name``; returns the local with its type."""
        vt = value.type
        if isinstance(vt, TupleT):
            raise self.diag.error(
                node,
                f"this call returns {len(vt.elems)} values ({describe(vt)})",
                hint="unpack them: " + ", ".join(f"v{i}" for i in range(len(vt.elems))) + " = ...",
            )
        if isinstance(vt, (OutboxT,)) or vt == VOID:
            raise self.diag.error(node, f"a local cannot hold {describe(vt)}")
        if isinstance(vt, MsgT) and vt.is_state:
            raise self.diag.error(
                node,
                "kernel state cannot be copied into a local",
                hint="read and write its fields directly",
            )
        if isinstance(vt, (ArrayT, ListT, StrT)) and not isinstance(value, ir.ArrayLit):
            if isinstance(vt, ArrayT):
                raise self.diag.error(
                    node,
                    f"a local cannot refer to an existing {describe(vt)} (Python would share "
                    "it, the device would copy it)",
                    hint="index the field directly, or make a new Array local from a list "
                    "literal: v = [a, b, c]",
                )
            raise self.diag.error(
                node,
                f"a local cannot hold a {describe(vt)}",
                hint="index the field directly, or build a message local and "
                "assign its elements",
            )
        self.assigned.add(name)
        if name in self.declared:
            if isinstance(vt, Scalar):  # a loop variable too must fit the declared type
                at = getattr(node, "value", None) or node
                self.assignable(value, self.declared[name], at, f"local '{name}'")
            self.seen[name] = self.declared[name]
            return ir.Var(name, self.declared[name])
        prev = self.seen.get(name)
        self.seen[name] = join_types(prev, vt, self.diag, node, name)
        t = self.pinned.get(name) or self.seen[name]
        return ir.Var(name, t)

    def local_value(self, value: ir.Expr, var: ir.Var, node: ast.AST) -> ir.Expr:
        """``value`` converted to local ``var``'s type: a declared local takes what a store takes
        (``assignable``); an inferred one every value its type was unified from."""
        src, dst = value.type, var.type
        if (
            var.name not in self.declared
            and isinstance(src, Scalar)
            and isinstance(dst, Scalar)
            and src != dst
            and unify_local(src, dst)[0] == dst
        ):
            if isinstance(value, ir.Const):
                return self.const_as(value, dst, node)
            return ir.Convert(value, dst)
        return self.assignable(value, dst, node, f"local '{var.name}'")

    def is_inferred_local(self, name: str) -> bool:
        return name in self.local_names and name not in self.params and name not in self.declared

    def collect_declared(self, fn: ast.FunctionDef) -> dict[str, Type]:
        """Every annotated local (``x: T = v``) and its type; raises at a second, different one."""
        declared: dict[str, Type] = {}
        for n in ast.walk(fn):
            if not isinstance(n, ast.AnnAssign):
                continue
            if not isinstance(n.target, ast.Name):
                raise self.diag.error(
                    n.target,
                    "only a local name can be annotated",
                    hint="annotate a new local: `x: f32 = ...`, then store it",
                )
            name = n.target.id
            if name in self.params:
                raise self.diag.error(
                    n.target,
                    f"parameter '{name}' already has a type",
                    hint="assign to a new local instead",
                )
            t = self.annotation_type(n.annotation)
            if name in declared and declared[name] != t:
                raise self.diag.error(
                    n,
                    f"local '{name}' is declared {describe(declared[name])} and {describe(t)}",
                    hint="declare a local's type once; use a new local for the other",
                )
            if n.value is None:
                raise self.diag.error(
                    n,
                    f"local '{name}' is declared without a value",
                    hint=f"give it one: `{name}: {describe(t)} = ...`",
                )
            declared[name] = t
        return declared

    def annotation_type(self, node: ast.AST) -> Type:
        """The type an annotation names: a scalar type, as ``f32`` or ``rg.f32``."""
        res = None
        if isinstance(node, ast.Name):
            res = self.resolver.lookup(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = self.resolver.lookup(node.value.id)
            res = self.resolver.attribute(base, node.attr) if base is not None else None
        if res is not None and res.kind == "scalar_type":
            return Scalar(res.value)
        raise self.diag.error(
            node,
            "a local can be declared only with a scalar type (i8..u64, f32, f64, bool_)",
            hint="e.g. `acc: f32 = 0.0`; build messages with Msg(...) and let their type be inferred",
        )

    def stmt_AnnAssign(self, node: ast.AnnAssign):
        return self.assign(node.target, self.expr(node.value), node)


def join_types(
    prev: Optional[Type], new: Type, diag: Diagnostics, node: ast.AST, name: str
) -> Type:
    """The type of local ``name`` once it is also assigned a ``new`` value (``unify_local``)."""
    if prev is None or prev == new:
        return new
    if isinstance(prev, Scalar) and isinstance(new, Scalar):
        t, why = unify_local(prev, new)
        if t is not None:
            return t
        raise diag.error(
            node,
            f"local '{name}' is assigned both {describe(prev)} and {describe(new)} values: {why}",
            hint=f"convert one of them explicitly, or declare the local's type once: "
            f"`{name}: {_suggest(prev, new)} = ...`",
        )
    raise diag.error(
        node,
        f"local '{name}' holds {describe(prev)}; it cannot also hold {describe(new)}",
        hint="use a new local",
    )


def _suggest(a: Scalar, b: Scalar) -> str:
    """A type to suggest for a local whose values do not unify."""
    for t in (a, b):
        if not t.weak and not t.is_bool:
            return t.t.name
    return "i64"


def assigned_names(fn: ast.FunctionDef) -> set:
    names = set()
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
    return names


def first_store(fn, name):
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store):
            return n
    return fn
