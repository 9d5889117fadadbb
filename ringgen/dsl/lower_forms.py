"""Python forms the C body has no spelling for, lowered to plain IR: ``x ** 2``, ``x in (1, 2)``
and list literals of Array values (``pos=[x, y, z]``, ``v = [a, b, c]``).

- ``x ** n`` with a constant integer ``n`` in 0..``MAX_POWER`` is ``x * x * ... * x`` (left to
  right, in ``x``'s type, so integers wrap as repeated ``*`` does); the reference expands it the
  same way (``reference.py``), so floats agree bit for bit. Any other exponent is an error that
  points to ``math.pow``.
- ``x in (a, b, c)`` is ``x == a or x == b or x == c`` (each ``==`` typed as on its own), and
  ``not in`` its negation; the right side must be a tuple or list written out.
- A list literal stored into an ``Array[T, N]`` (a field, a message constructor's argument) must
  have exactly N elements, each stored as into a ``T``; one assigned to a local makes an Array
  local whose element type unifies over the elements (a Python int is i64, a float f64).
"""

from __future__ import annotations

import ast

from . import ir
from .lower_expr import ExprLowering
from .typesys import BOOL, ArrayT, Scalar, Type, describe, unify_local

__all__ = ["FormsLowering", "MAX_POWER"]

#: The largest constant exponent ``x ** n`` expands into multiplications.
MAX_POWER = 8


class FormsLowering(ExprLowering):
    """The forms above; mixed into the function lowering (``lower.FunctionLowering``)."""

    def power(self, node: ast.BinOp) -> ir.Expr:
        """``x ** n`` for a constant integer ``n`` in 0..MAX_POWER."""
        n = self.expr(node.right)  # a literal, -literal or a module constant folds to a Const
        value = n.value if isinstance(n, ir.Const) and isinstance(n.type, Scalar) else None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_POWER:
            if isinstance(value, int) and value < 0:
                why, hint = "a negative exponent", "divide: 1.0 / (x * x), or use math.pow(x, y)"
            elif isinstance(value, int):
                why, hint = f"an exponent above {MAX_POWER}", "use math.pow(x, y) or a loop"
            else:
                why, hint = "an exponent that is not a constant integer", "use math.pow(x, y)"
            raise self.diag.error(
                node,
                f"the power operator ** takes a constant integer exponent 0..{MAX_POWER}, "
                f"not {why}",
                hint=hint,
            )
        x = self.scalar_expr(node.left, "the base of **")
        if x.type.is_bool:
            raise self.diag.error(node.left, "the base of ** must be a number, not bool_")
        if isinstance(x, ir.Const) and x.type.weak:
            return ir.Const(x.value**value, x.type)
        if value == 0:
            return self.const_as(ir.Const(1, x.type), x.type, node)
        result = x
        for _ in range(value - 1):
            result = self.binary("*", result, x, node)
        return result

    def membership(self, left_node: ast.AST, op: ast.AST, seq: ast.AST, node: ast.AST) -> ir.Expr:
        """``x in (a, b)`` / ``x not in (a, b)`` over a tuple or list written out."""
        negate = isinstance(op, ast.NotIn)
        word = "not in" if negate else "in"
        if not isinstance(seq, (ast.Tuple, ast.List)) or not seq.elts:
            raise self.diag.error(
                seq,
                f"`{word}` tests a value against a tuple written out, e.g. x {word} (1, 2, 3)",
                hint="to search an Array or List, write a for loop that compares each element",
            )
        parts = [self.compare("!=" if negate else "==", left_node, e, node) for e in seq.elts]
        if len(parts) == 1:
            return parts[0]
        return ir.BoolOp("and" if negate else "or", tuple(parts), BOOL)

    def array_literal(self, node: ast.List, dst: ArrayT, what: str) -> ir.Expr:
        """A list literal stored into ``dst``: exactly N elements, each stored as into one element."""
        if len(node.elts) != dst.length:
            raise self.diag.error(
                node,
                f"{what} is {describe(dst)}: its list literal needs exactly {dst.length} "
                f"element{'s' if dst.length != 1 else ''}, not {len(node.elts)}",
                hint=f"write all {dst.length} values: [a, b, ...]",
            )
        items = []
        for e in node.elts:
            if isinstance(dst.elem, ArrayT) and isinstance(e, ast.List):
                items.append(self.array_literal(e, dst.elem, f"an element of {what}"))
            else:
                items.append(self.value_for(e, dst.elem, f"an element of {what}"))
        return ir.ArrayLit(tuple(items), dst)

    def local_array_literal(self, node: ast.List) -> ir.Expr:
        """A list literal assigned to a local: an Array of the elements' unified scalar type."""
        if not node.elts:
            raise self.diag.error(
                node,
                "an empty list literal has no element type",
                hint="`[]` can only fill a List field; a local Array needs its N values",
            )
        values = [self.scalar_expr(e, "an element of a list literal") for e in node.elts]
        t: Type = _strong(values[0].type)
        for v, e in zip(values[1:], node.elts[1:]):
            u, why = unify_local(t, _strong(v.type))
            if u is None:
                raise self.diag.error(
                    e,
                    f"the elements of this list literal have types {describe(t)} and "
                    f"{describe(v.type)}: {why}",
                    hint="convert the elements to one type, e.g. [f32(a), f32(b)]",
                )
            t = u
        items = []
        for v, e in zip(values, node.elts):
            if v.type == t:
                items.append(v)
            elif isinstance(v, ir.Const):
                items.append(self.const_as(v, t, e))
            else:
                items.append(ir.Convert(v, t))
        return ir.ArrayLit(tuple(items), ArrayT(t, len(items)))


def _strong(t: Scalar) -> Scalar:
    """A Python int as i64 and a Python float as f64 (Numba's literal types)."""
    return Scalar(t.t) if isinstance(t, Scalar) and t.weak else t
