"""Lowering expressions: Python AST -> typed IR, with the language's typing rules.

``ExprLowering`` is the expression half of ``lower.FunctionLowering``; it knows the function's
parameters and locals through ``self.scope`` and raises ``HandlerError`` through ``self.diag``.
"""

from __future__ import annotations

import ast
import math
from typing import Optional

import numpy as np

from ..schema import spec_of
from ..types import SCALARS, ScalarType, i64
from . import ir
from .consts import const_of  # noqa: F401  (lower_expr.const_of, as before)
from .diagnostics import module_value_message
from .lower_call import lower_call
from .resolve import Resolved
from .typesys import (
    BOOL,
    WEAK_FLOAT,
    WEAK_INT,
    ArrayT,
    ListT,
    MsgT,
    OutboxT,
    Scalar,
    StrT,
    Type,
    describe,
    from_field_type,
    literal_fits,
    promote_arith,
    promote_compare,
)

_BINOPS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


class ExprLowering:
    """Expression lowering; mixed into the statement lowering, which provides the scope."""

    # -------------------------------------------------------------- conversions

    def coerce(self, e: ir.Expr, t: Scalar, node: ast.AST) -> ir.Expr:
        """Convert operand ``e`` to the operation type ``t`` chosen by promotion (always allowed)."""
        if e.type == t:
            return e
        if isinstance(e.type, Scalar) and e.type.t is t.t and not isinstance(e, ir.Const):
            return e  # weak and strong i64/f64 are the same C type
        if isinstance(e, ir.Const) and isinstance(e.type, Scalar):
            return self.const_as(e, t, node)
        checked = e.type.weak and e.type.is_int and t.is_int and not t.weak and t.t is not i64
        return ir.Convert(e, t, checked)

    def const_as(self, c: ir.Const, t: Scalar, node: ast.AST) -> ir.Const:
        """A literal given the type its context needs (an error when it does not fit)."""
        v = c.value
        if t.is_bool:
            return ir.Const(bool(v), t)
        if t.is_float:
            return ir.Const(float(v), t)
        if isinstance(v, float):
            raise self.diag.error(
                node,
                f"the float {v!r} cannot be used as {describe(t)}",
                hint=f"convert explicitly: {t.t.name}(...)",
            )
        if not t.weak and not literal_fits(int(v), t.t):
            raise self.diag.error(
                node,
                f"the literal {v} does not fit {t.t.name}",
                hint=f"use a wider type, or wrap it explicitly: {t.t.name}({v})",
            )
        return ir.Const(int(v), t)

    def assignable(self, e: ir.Expr, dst: Type, node: ast.AST, what: str) -> ir.Expr:
        """``e`` converted for storing into ``dst`` (a local, field, parameter or return value).

        Allowed: the same type; a Python int or float literal/expression into a number of the same
        kind (ints also into floats); a strong int into a wider int that holds all its values; f32
        into f64. Anything else needs an explicit cast.
        """
        src = e.type
        if src == dst:
            return e
        if isinstance(src, Scalar) and isinstance(dst, Scalar):
            if src.weak and (src.is_int and not dst.is_bool or src.is_float and dst.is_float):
                if isinstance(e, ir.Const):
                    return self.const_as(e, dst, node)
                return ir.Convert(e, dst)
            if not src.weak and _widens(src.t, dst.t):
                return ir.Convert(e, dst)
            hint = None
            if not dst.weak:
                hint = f"convert explicitly: {dst.t.name}(...)"
            if isinstance(e, ir.Var) and self.is_inferred_local(e.name):
                hint = (
                    f"local '{e.name}' is {describe(src)}, the type that holds every value "
                    f"assigned to it; declare it `{e.name}: {describe(dst)} = ...`, or convert: "
                    f"{describe(dst)}({e.name})"
                )
            raise self.diag.error(
                node,
                f"cannot assign a value of type {describe(src)} to {what} of type {describe(dst)}",
                hint=hint,
            )
        if isinstance(src, StrT) and isinstance(dst, StrT):
            return e  # a shorter or longer bound: copied with a length check
        if isinstance(src, ArrayT) and isinstance(dst, ArrayT) and src.length == dst.length:
            if src.elem == dst.elem:
                return e
        if isinstance(src, ListT) and isinstance(dst, ListT) and src.elem == dst.elem:
            return e
        raise self.diag.error(
            node, f"cannot assign a value of type {describe(src)} to {what} of type {describe(dst)}"
        )

    def is_inferred_local(self, name: str) -> bool:
        """True for a local whose type was inferred (overridden by the scope)."""
        return False

    def value_for(self, node: ast.AST, dst: Type, what: str) -> ir.Expr:
        """Lower ``node`` as a value stored into ``dst`` (a string literal may fill a Str)."""
        if isinstance(dst, StrT) and isinstance(node, ast.Constant) and isinstance(node.value, str):
            data = node.value.encode("utf-8")
            if len(data) > dst.max_bytes:
                raise self.diag.error(
                    node,
                    f"this string is {len(data)} bytes long; {what} holds "
                    f"at most {dst.max_bytes}",
                    hint="shorten it",
                )
            return ir.Const(data, StrT(len(data)))
        if isinstance(dst, ListT) and isinstance(node, ast.List) and not node.elts:
            return ir.Const((), ListT(dst.elem, 0))
        if isinstance(dst, ArrayT) and isinstance(node, ast.List):
            return self.array_literal(node, dst, what)
        return self.assignable(self.expr(node), dst, node, what)

    # -------------------------------------------------------------- entry

    def expr(self, node: ast.AST, *, allow_atomic: bool = False) -> ir.Expr:
        """Lower an expression node (statement-level intrinsics only when ``allow_atomic``)."""
        method = getattr(self, "expr_" + type(node).__name__, None)
        if method is None:
            raise self.unsupported(node)
        if isinstance(node, ast.Call):
            return method(node, allow_atomic=allow_atomic)
        return method(node)

    def scalar_expr(self, node: ast.AST, what: str) -> ir.Expr:
        e = self.expr(node)
        if not isinstance(e.type, Scalar):
            raise self.diag.error(node, f"{what} must be a number or bool_, not {describe(e.type)}")
        return e

    def int_expr(self, node: ast.AST, what: str) -> ir.Expr:
        e = self.expr(node)
        if not (isinstance(e.type, Scalar) and e.type.is_int):
            raise self.diag.error(
                node,
                f"{what} must be an integer, not {describe(e.type)}",
                hint="convert explicitly, e.g. i32(x)",
            )
        return e

    # -------------------------------------------------------------- leaves

    def expr_List(self, node: ast.List) -> ir.Expr:
        # a list literal is a value only where it is stored (value_for, an assignment to a local)
        raise self.diag.error(
            node,
            "a list literal can only be stored: into an Array field or local "
            "(one value per element), or `[]` into a List field",
            hint="e.g. out = Msg(pos=[x, y, z]), or v = [a, b, c] and then index v",
        )

    def expr_Tuple(self, node: ast.Tuple) -> ir.Expr:
        # tuples are taken apart where they are written (unpack.py); there are no tuple values
        raise self.diag.error(
            node,
            "a tuple can only be unpacked where it is written (a, b = x, y), returned by a "
            "@rg.device function, or tested with `in`",
            hint="index an Array of Arrays one dimension at a time: grid[i][j]",
        )

    def expr_Constant(self, node: ast.Constant) -> ir.Expr:
        v = node.value
        if isinstance(v, (bool, int, float)):
            return const_of(v)
        if isinstance(v, str):
            raise self.diag.error(
                node,
                "a string literal can only be compared with a Str field "
                "(==, !=, .startswith) or stored into one",
                hint='e.g. if msg.name == "stop": ...',
            )
        if v is None:
            raise self.diag.error(node, "None is only allowed as `return None`")
        raise self.diag.error(node, f"literal {v!r} is not supported in handlers")

    def expr_Name(self, node: ast.Name) -> ir.Expr:
        local = self.read_local(node)
        if local is not None:
            return local
        res = self.resolver.lookup(node.id)
        if res is None:
            raise self.diag.error(
                node,
                f"unknown name '{node.id}'",
                hint="define it as a local before this line, or at module level",
            )
        if res.kind == "const":
            return self.const_global(res, node)
        known = module_value_message(node.id, res.value) if res.kind == "other" else None
        if known is not None:
            raise self.diag.error(node, known[0], hint=known[1])
        raise self.diag.error(node, f"'{node.id}' ({_kind_text(res)}) cannot be used as a value")

    def const_global(self, res: Resolved, node: ast.AST) -> ir.Const:
        v = res.value
        if isinstance(v, float) and not math.isfinite(v):
            raise self.diag.error(
                node,
                f"{res.name} is not finite; handlers cannot spell it in C",
                hint="compare with a large finite bound instead",
            )
        return const_of(v)

    def expr_Attribute(self, node: ast.Attribute) -> ir.Expr:
        if isinstance(node.value, ast.Name) and self.read_local(node.value, probe=True) is None:
            res = self.resolver.lookup(node.value.id)
            if res is not None and res.kind in ("math_module", "rg_module", "other"):
                sub = self.resolver.attribute(res, node.attr)
                if sub is not None and sub.kind == "const":
                    return self.const_global(sub, node)
                raise self.diag.error(
                    node,
                    (
                        f"'{node.value.id}.{node.attr}' cannot be used as a value"
                        if sub is not None
                        else f"'{node.value.id}' has no attribute '{node.attr}'"
                    ),
                )
        base = self.expr(node.value)
        return self.field_of(base, node.attr, node)

    def field_of(self, base: ir.Expr, name: str, node: ast.AST) -> ir.Expr:
        if not isinstance(base.type, MsgT):
            what = "a message" if not isinstance(base.type, OutboxT) else "an Outbox (use out.emit)"
            raise self.diag.error(node, f"'.{name}' needs {what}; this is a {describe(base.type)}")
        spec = spec_of(base.type.cls)
        names = [f.name for f in spec.fields]
        if name not in names:
            raise self.diag.error(
                node,
                f"{spec.name} has no field '{name}'",
                hint=f"its fields are: {', '.join(names)}",
            )
        return ir.Field(base, name, from_field_type(spec.field(name).type))

    def expr_Subscript(self, node: ast.Subscript) -> ir.Expr:
        base = self.expr(node.value)
        if isinstance(node.slice, ast.Slice):
            raise self.unsupported(node.slice)
        if isinstance(base.type, StrT):
            raise self.diag.error(
                node,
                "indexing a Str is not supported",
                hint="compare it (==, !=, .startswith) or copy it whole",
            )
        if not isinstance(base.type, (ArrayT, ListT)):
            raise self.diag.error(
                node.value,
                f"only Array and List fields can be indexed, not " f"{describe(base.type)}",
            )
        index = self.int_expr(node.slice, "an index")
        if isinstance(base.type, ArrayT):
            n = base.type.length
            if isinstance(index, ir.Const):
                i = int(index.value)
                if not -n <= i < n:
                    raise self.diag.error(
                        node.slice, f"index {i} is out of range for " f"{describe(base.type)}"
                    )
                return ir.Index(base, ir.Const(i % n, WEAK_INT), base.type.elem, n, False)
            if isinstance(index, ir.Var) and index.name in self.safe_ranges:
                lo, hi = self.safe_ranges[index.name]
                if 0 <= lo and hi < n:  # a range loop variable known to stay in bounds
                    return ir.Index(base, index, base.type.elem, n, False)
            return ir.Index(base, index, base.type.elem, n, True)
        return ir.Index(base, index, base.type.elem, None, True)

    # -------------------------------------------------------------- operators

    def expr_BinOp(self, node: ast.BinOp) -> ir.Expr:
        if isinstance(node.op, ast.Pow):
            return self.power(node)
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.unsupported(node.op, at=node)
        self.check_not_string(node.left, op, node)
        self.check_not_string(node.right, op, node)
        left = self.scalar_expr(node.left, f"the left operand of {op}")
        right = self.scalar_expr(node.right, f"the right operand of {op}")
        return self.binary(op, left, right, node)

    def binary(self, op: str, left: ir.Expr, right: ir.Expr, node: ast.AST) -> ir.Expr:
        lt, rt = left.type, right.type
        if op in ("&", "|", "^") and lt.is_bool and rt.is_bool:
            return ir.Binary(op, left, right, BOOL)
        t, why = promote_arith(lt, rt)
        if t is None:
            hint = "convert one side explicitly, e.g. f32(n) or i64(x)"
            raise self.diag.error(
                node,
                f"cannot apply {op} to {describe(lt)} and {describe(rt)}: " f"{why}",
                hint=hint,
            )
        if op == "/" and t.is_int:
            raise self.diag.error(
                node,
                "/ on integers is not supported (Python's true division " "would make a float)",
                hint="use // for floor division, or convert first: f32(a) / b",
            )
        if op in ("&", "|", "^", "<<", ">>") and t.is_float:
            raise self.diag.error(node, f"{op} needs integer operands, not {describe(t)}")
        left, right = self.coerce(left, t, node), self.coerce(right, t, node)
        if isinstance(left, ir.Const) and isinstance(right, ir.Const) and t.weak and op in "+-*":
            return ir.Const(eval(f"{left.value!r} {op} {right.value!r}"), t)  # noqa: S307
        checked = False
        if op in ("//", "%") and t.is_int:
            if isinstance(right, ir.Const):
                if right.value == 0:
                    raise self.diag.error(node, f"integer {op} by zero")
            else:
                checked = True
        return ir.Binary(op, left, right, t, checked)

    def check_not_string(self, operand: ast.AST, op: str, node: ast.AST) -> None:
        """Raise for a Str or a string literal used as an operand of an arithmetic operator."""
        if isinstance(operand, ast.Constant) and isinstance(operand.value, str):
            is_str = True
        elif isinstance(operand, (ast.Attribute, ast.Name, ast.Subscript)):
            is_str = isinstance(self.expr(operand).type, StrT)
        else:
            is_str = False
        if is_str:
            raise self.diag.error(
                node,
                f"strings cannot be combined with {op} in handlers",
                hint='write the whole string into a Str field (out.name = "..."), or copy a '
                "Str field; build other text on the host",
            )

    def expr_UnaryOp(self, node: ast.UnaryOp) -> ir.Expr:
        if isinstance(node.op, ast.Not):
            x = self.scalar_expr(node.operand, "the operand of not")
            if isinstance(x, ir.Const):
                return ir.Const(not x.value, BOOL)
            return ir.Unary("not", x, BOOL)
        x = self.scalar_expr(node.operand, "the operand")
        if x.type.is_bool:
            raise self.diag.error(
                node, "arithmetic on bool_ values is not supported", hint="use `not x` for a bool_"
            )
        if isinstance(node.op, ast.UAdd):
            return x
        if isinstance(node.op, ast.USub):
            if isinstance(x, ir.Const) and x.type.weak:
                return ir.Const(-x.value, x.type)
            return ir.Unary("-", x, x.type)
        if x.type.is_float:
            raise self.diag.error(node, "~ needs an integer operand")
        if isinstance(x, ir.Const) and x.type.weak:
            return ir.Const(~x.value, x.type)
        return ir.Unary("~", x, x.type)

    def expr_BoolOp(self, node: ast.BoolOp) -> ir.Expr:
        op = "and" if isinstance(node.op, ast.And) else "or"
        values = []
        for v in node.values:
            e = self.scalar_expr(v, f"an operand of {op}")
            if not e.type.is_bool:
                raise self.diag.error(
                    v,
                    f"the operands of {op} must be bool_, not {describe(e.type)}",
                    hint="compare explicitly, e.g. (n != 0)",
                )
            values.append(e)
        return ir.BoolOp(op, tuple(values), BOOL)

    def expr_Compare(self, node: ast.Compare) -> ir.Expr:
        parts = []
        left_node = node.left
        if len(node.ops) > 1 and any(isinstance(o, (ast.In, ast.NotIn)) for o in node.ops):
            raise self.diag.error(
                node,
                "an `in` test cannot be part of a chain of comparisons",
                hint="write it on its own: (a < b) and (b in (1, 2))",
            )
        for op_node, right_node in zip(node.ops, node.comparators):
            if isinstance(op_node, (ast.In, ast.NotIn)):
                parts.append(self.membership(left_node, op_node, right_node, node))
                left_node = right_node
                continue
            op = _CMPOPS.get(type(op_node))
            if op is None:
                raise self.unsupported(op_node, at=node)
            parts.append(self.compare(op, left_node, right_node, node))
            left_node = right_node
        if len(parts) == 1:
            return parts[0]
        return ir.BoolOp("and", tuple(parts), BOOL)

    def compare(self, op: str, left_node: ast.AST, right_node: ast.AST, node: ast.AST) -> ir.Expr:
        def is_str_lit(n):
            return isinstance(n, ast.Constant) and isinstance(n.value, str)

        if is_str_lit(left_node) or is_str_lit(right_node):
            lit_node, other_node = (
                (left_node, right_node) if is_str_lit(left_node) else (right_node, left_node)
            )
            other = self.expr(other_node)
            if not isinstance(other.type, StrT) or op not in ("==", "!="):
                raise self.diag.error(
                    node,
                    f"a string literal can only be compared with == or != "
                    f"against a Str field, not with {op} against "
                    f"{describe(other.type)}",
                )
            lit = ir.Const(lit_node.value.encode("utf-8"), StrT(len(lit_node.value.encode())))
            return ir.StrEq(other, lit, op == "!=", BOOL)
        left, right = self.expr(left_node), self.expr(right_node)
        if isinstance(left.type, StrT) or isinstance(right.type, StrT):
            if not (isinstance(left.type, StrT) and isinstance(right.type, StrT)) or op not in (
                "==",
                "!=",
            ):
                raise self.diag.error(
                    node,
                    f"Str values support only == and != against another Str "
                    f"or a literal (got {describe(left.type)} {op} "
                    f"{describe(right.type)})",
                )
            return ir.StrEq(left, right, op == "!=", BOOL)
        for e, n in ((left, left_node), (right, right_node)):
            if not isinstance(e.type, Scalar):
                raise self.diag.error(
                    n,
                    f"cannot compare a {describe(e.type)} with {op}",
                    hint="compare fields one by one",
                )
        t, why = promote_compare(left.type, right.type)
        for lit, other in (
            (left, right),
            (right, left),
        ):  # a literal that fits: compare in its type
            if (
                isinstance(lit, ir.Const)
                and lit.type.weak
                and lit.type.is_int
                and not other.type.weak
                and other.type.is_int
                and literal_fits(int(lit.value), other.type.t)
            ):
                t = other.type
        if t is None:
            raise self.diag.error(
                node,
                f"cannot compare {describe(left.type)} with " f"{describe(right.type)}: {why}",
                hint="convert one side explicitly",
            )
        if t.is_bool and op not in ("==", "!="):
            raise self.diag.error(node, f"bool_ values support only == and !=, not {op}")
        return ir.Compare(op, self.coerce(left, t, node), self.coerce(right, t, node), t, BOOL)

    def expr_IfExp(self, node: ast.IfExp) -> ir.Expr:
        cond = self.scalar_expr(node.test, "a condition")
        a = self.scalar_expr(node.body, "a branch of a conditional expression")
        b = self.scalar_expr(node.orelse, "a branch of a conditional expression")
        if a.type.is_bool and b.type.is_bool:
            t = BOOL
        else:
            t, why = promote_arith(a.type, b.type)
            if t is None:
                raise self.diag.error(
                    node,
                    f"the branches have types {describe(a.type)} and " f"{describe(b.type)}: {why}",
                    hint="convert one branch",
                )
        return ir.Select(cond, self.coerce(a, t, node), self.coerce(b, t, node), t)

    # -------------------------------------------------------------- calls

    def expr_Call(self, node: ast.Call, *, allow_atomic: bool = False) -> ir.Expr:
        return lower_call(self, node, allow_atomic)

    def unsupported(self, node: ast.AST, at: Optional[ast.AST] = None):
        from .diagnostics import unsupported_node_message

        msg, hint = unsupported_node_message(node)
        return self.diag.error(
            at if at is not None and not hasattr(node, "lineno") else node, msg, hint=hint
        )


def _widens(src: ScalarType, dst: ScalarType) -> bool:
    """True when every value of ``src`` is exactly a value of ``dst`` (a lossless C conversion)."""
    if src.is_float or dst.is_float:
        return src.is_float and dst.is_float and dst.size >= src.size
    if src.kind == "bool" or dst.kind == "bool":
        return False
    if src.is_signed == dst.is_signed:
        return dst.size >= src.size
    return (not src.is_signed) and dst.is_signed and dst.size > src.size


def _kind_text(res: Resolved) -> str:
    return {
        "scalar_type": "a type",
        "message": "a message class",
        "device": "a device function",
        "math_module": "a module",
        "rg_module": "a module",
        "math_fn": "a function",
        "intrinsic": "an intrinsic",
        "builtin": "a builtin",
    }.get(res.kind, "a Python object")
