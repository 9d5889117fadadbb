"""Tuples as Python writes them: ``a, b = x, y`` (a swap too), ``for i, v in enumerate(seq)`` and
``@rg.device`` functions returning several values (``-> tuple[i32, f32]``), unpacked at the call.

A handler has no tuple values: every tuple is taken apart where it is written. Multiple assignment
evaluates every right-hand value into a hidden temporary first, then stores them left to right, so
``a, b = b, a`` swaps as in Python. A device function returning a tuple writes its values through
hidden pointer parameters (``rg_ret0``, ``rg_ret1``, ...; ``codegen/body.py``).
"""

from __future__ import annotations

import ast

from . import ir
from .scope import ScopeLowering
from .typesys import WEAK_INT, ArrayT, ListT, MsgT, Scalar, TupleT, Type, describe

__all__ = ["UnpackLowering"]


class UnpackLowering(ScopeLowering):
    """Tuple assignment, ``enumerate`` loops and tuple returns; mixed into ``FunctionLowering``."""

    def temp(self, t: Type) -> ir.Var:
        """A fresh hidden local of type ``t`` (``rg_t<n>``), declared with the function's locals."""
        self.n_temps += 1
        var = ir.Var(f"rg_t{self.n_temps}", t)
        self.hidden_locals[var.name] = t
        return var

    def assign_tuple(self, node: ast.Assign) -> list:
        """``a, b = x, y`` or ``a, b = helper(...)``: temporaries first, then the stores."""
        targets = node.targets[0].elts
        for t in targets:
            if not isinstance(t, (ast.Name, ast.Attribute, ast.Subscript)):
                raise self.diag.error(
                    t,
                    "each target of a multiple assignment must be a name, a field or an element",
                    hint="unpack one level at a time: a, b = x, y",
                )
        value = node.value
        line = self.line(node)
        if isinstance(value, ast.Call):
            call = self.expr(value)
            if not isinstance(call, ir.CallDevice) or not isinstance(call.type, TupleT):
                raise self.diag.error(
                    value,
                    f"only a tuple written out or a @rg.device function returning a tuple can "
                    f"be unpacked; this is {describe(call.type)}",
                    hint="a, b = x, y",
                )
            if len(call.type.elems) != len(targets):
                raise self.diag.error(
                    node,
                    f"{call.fn} returns {len(call.type.elems)} values; "
                    f"{len(targets)} names unpack them",
                    hint="unpack every value: "
                    + ", ".join(f"v{i}" for i in range(len(targets)))
                    + f" = {call.fn}(...)",
                )
            temps = tuple(self.temp(t) for t in call.type.elems)
            stmts = [ir.Unpack(temps, call, line)]
            return stmts + [self.assign(t, v, node, at=value) for t, v in zip(targets, temps)]
        if not isinstance(value, (ast.Tuple, ast.List)):
            raise self.diag.error(
                value,
                "only a tuple written out (a, b = x, y) or a @rg.device function returning a "
                "tuple can be unpacked",
                hint="handlers have no tuple values; assign each value on its own line",
            )
        if len(value.elts) != len(targets):
            raise self.diag.error(
                node,
                f"{len(targets)} names but {len(value.elts)} values",
                hint="give one value per name",
            )
        stmts, values = [], []
        for e in value.elts:
            v = self.message_value(e)
            if not isinstance(v.type, Scalar):
                raise self.diag.error(
                    e,
                    f"multiple assignment takes numbers and bool_ values, not {describe(v.type)}",
                    hint="assign this value on its own line",
                )
            if isinstance(v, ir.Const):
                values.append(v)
                continue
            tmp = self.temp(v.type)
            stmts.append(ir.Assign(tmp, v, line))
            values.append(tmp)
        for t, v, e in zip(targets, values, value.elts):
            stmts.append(self.assign(t, v, node, at=e))
        return stmts

    def for_enumerate(self, node: ast.For) -> ir.Stmt:
        """``for i, v in enumerate(seq[, start])`` over an Array or a List."""
        target, it = node.target, node.iter
        is_enumerate = (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id == "enumerate"
            and it.func.id not in self.local_names
        )
        names = target.elts if isinstance(target, (ast.Tuple, ast.List)) else []
        if not is_enumerate or len(names) != 2 or not all(isinstance(n, ast.Name) for n in names):
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "zip":
                raise self.diag.error(
                    it,
                    "zip() is not supported in handlers",
                    hint="loop over the indices: for i in range(len(a)): ... a[i] ... b[i]",
                )
            raise self.diag.error(
                target,
                "a loop unpacks only `for i, v in enumerate(seq)`",
                hint="use one loop variable: for v in seq, or for i in range(len(seq))",
            )
        if it.keywords or not 1 <= len(it.args) <= 2:
            raise self.diag.error(
                it, "enumerate() takes a sequence and an optional start: enumerate(seq, 1)"
            )
        seq = self.expr(it.args[0])
        if not isinstance(seq.type, (ArrayT, ListT)):
            raise self.diag.error(
                it.args[0], f"enumerate() needs an Array or a List, not {describe(seq.type)}"
            )
        index_node, item_node = names
        if isinstance(seq.type.elem, MsgT):
            self.item_views.add(item_node.id)
        counter = self.hidden_counter()
        index = counter
        if len(it.args) == 2:
            start = self.int_expr(it.args[1], "the start of enumerate()")
            index = self.binary("+", counter, start, it.args[1])
        ivar = self.define_local(index_node.id, index, index_node)
        first = ir.Assign(ivar, self.local_value(index, ivar, index_node), self.line(node))
        var = self.define_local(item_node.id, ir.Var("", seq.type.elem), item_node)
        body = (first,) + self.loop_body(node.body)
        return ir.ForEach(var, seq, counter, body, self.line(node))

    def hidden_counter(self) -> ir.Var:
        """A fresh hidden loop counter (``rg_i<n>``, a Python int)."""
        self.hidden += 1
        idx = ir.Var(f"rg_i{self.hidden}", WEAK_INT)
        self.hidden_locals[idx.name] = WEAK_INT
        return idx

    def tuple_return(self, node: ast.Return, rt: TupleT) -> ir.Return:
        """``return a, b`` in a device function annotated ``-> tuple[...]``."""
        value = node.value
        if not isinstance(value, ast.Tuple) or len(value.elts) != len(rt.elems):
            raise self.diag.error(
                value,
                f"this function returns {describe(rt)}; return {len(rt.elems)} values: "
                + ", ".join(f"v{i}" for i in range(len(rt.elems))),
            )
        items = tuple(
            self.assignable(self.expr(e), t, e, f"return value {i + 1}")
            for i, (e, t) in enumerate(zip(value.elts, rt.elems))
        )
        return ir.Return(ir.TupleValue(items, rt), self.line(node))
