"""Hypothesis strategies for handler expressions: source text of a given type over what is in scope.

``Scope`` lists what an expression may read (message fields, locals, loop variables, state) by type;
``expr_of`` draws an expression of one scalar type from it: literals, fields, dynamic array indexing
(which may fault), every arithmetic operator including ``//`` and ``%`` on negatives, shifts past the
width, casts (a float out of an integer's range faults), ``min``/``max``/``abs``, conditionals and
the exactly rounded ``math`` functions. ``bool_expr`` draws comparisons joined by ``and``/``or``/``not``.
Every expression has a definite type, so it can initialise a local or a field without a cast.
"""

from __future__ import annotations

from typing import Optional

import attrs
from hypothesis import strategies as st

from .schemas import BITS, FLOATS, INTEGERS

__all__ = [
    "APPROX_MATH",
    "EXACT_MATH",
    "Profile",
    "Scope",
    "bool_expr",
    "expr_of",
    "literal",
    "operand",
]

#: math functions whose result is correctly rounded on every backend (compared bit for bit).
EXACT_MATH = ("sqrt", "floor", "ceil", "trunc", "fabs")
#: math functions compared within a few ULP; the generator uses them only as a whole output field,
#: so no later arithmetic amplifies the difference.
APPROX_MATH = ("exp", "log", "sin", "cos", "atan", "tanh", "atan2", "hypot", "pow")


@attrs.frozen
class Profile:
    """What the generator may use (a backend that cannot run something turns it off).

    Attributes:
        f64: f64 fields and values (Metal has no f64; its kernels are skipped, not generated without).
        f32_division: ``/``, ``//``, ``%`` and sqrt on f32 (NVIDIA's OpenCL rounds them loosely).
        nan: NaN and infinities in messages.
        state_defaults: nonzero defaults in ``@rg.state`` classes (off: every field starts zeroed).
        narrow_negation: minus (unary and binary) on i8 and i16 (CUDA 13 on sm_90: ptxas folds a
            narrow negation or difference into a later comparison as if it could not wrap, e.g.
            ``x >= -x`` and ``(i16(0) - x) <= x`` are false for x = -32768).
        shapes: the kernel shapes to draw (``ringgen.testing.handlers.SHAPES``).
    """

    f64: bool = True
    f32_division: bool = True
    nan: bool = True
    state_defaults: bool = True
    narrow_negation: bool = True
    shapes: Optional[tuple[str, ...]] = None


@attrs.define
class Scope:
    """What an expression may read: scalar sources by type, and arrays to index dynamically.

    Attributes:
        leaves: scalar type name -> source texts of readable values of that type.
        arrays: (source text, element type, length or None for a List) of 1-D sequences of scalars.
        profile: the generator's ``Profile``.
        helpers: device helpers callable here: (name, parameter types, result type).
    """

    leaves: dict[str, list[str]] = attrs.Factory(dict)
    arrays: list[tuple[str, str, Optional[int]]] = attrs.Factory(list)
    profile: Profile = Profile()
    helpers: list[tuple[str, tuple[str, ...], str]] = attrs.Factory(list)

    def add(self, t: str, src: str) -> None:
        self.leaves.setdefault(t, []).append(src)

    def copy(self) -> "Scope":
        return Scope(
            {k: list(v) for k, v in self.leaves.items()},
            list(self.arrays),
            self.profile,
            list(self.helpers),
        )

    def types(self) -> list[str]:
        """The scalar types that something in scope has (bool_ excluded), sorted."""
        return sorted(t for t, v in self.leaves.items() if v and t != "bool_")


_CMP = ["<", "<=", ">", ">=", "==", "!="]
_INT_LITS = [0, 1, -1, 2, 3, 7, 100, -100, 127, -128, 255, 1000]
_FLOAT_LITS = [0.0, 0.5, 1.0, -2.25, 3.0, 1e-3, 100.0, -0.0]


def literal(draw, t: str) -> str:
    """Source text of a literal of type ``t`` (bare, without the ``t(...)`` cast)."""
    if t in FLOATS:
        return repr(draw(st.sampled_from(_FLOAT_LITS)))
    signed = t.startswith("i")
    lo = -(2 ** (BITS[t] - 1)) if signed else 0
    hi = 2 ** (BITS[t] - 1) - 1 if signed else 2 ** BITS[t] - 1
    pool = [v for v in _INT_LITS if lo <= v <= hi] + [lo, hi]
    return str(draw(st.sampled_from(pool)))


def _reads_scope(text: str, scope: Scope) -> bool:
    return any(leaf in text for leaves in scope.leaves.values() for leaf in leaves)


def operand(draw, t: str, scope: Scope, depth: int) -> str:
    """An expression that reads something in scope where possible: a divisor or an index the
    compiler can fold to a constant zero or out of range is a compile error, not a test."""
    text = draw(expr_of(t, scope, depth))
    for _ in range(3):
        if _reads_scope(text, scope):
            break
        text = draw(expr_of(t, scope, depth))
    return text


def _divides(t: str, scope: Scope) -> bool:
    return t != "f32" or scope.profile.f32_division


@st.composite
def expr_of(draw, t: str, scope: Scope, depth: int = 0) -> str:
    """Source text of an expression of scalar type ``t`` (not bool_) reading only ``scope``."""
    is_float = t in FLOATS
    leaf_kinds = ["field", "field", "lit"] if scope.leaves.get(t) else ["lit"]
    kinds = list(leaf_kinds)
    if depth < 3:
        kinds += ["bin", "bin", "bin", "cast", "minmax", "select", "unary"]
        if any(e == t for _, e, _ in scope.arrays):
            kinds.append("index")
        if is_float:
            kinds.append("math")
        if any(r == t for _, _, r in scope.helpers):
            kinds.append("call")
    kind = draw(st.sampled_from(kinds))
    if kind == "field":
        return draw(st.sampled_from(scope.leaves[t]))
    if kind == "lit":
        return f"{t}({literal(draw, t)})"
    if kind == "index":
        path, _, _ = draw(st.sampled_from([a for a in scope.arrays if a[1] == t]))
        idx_t = draw(st.sampled_from(["i32", "i64", "u8", "i8"]))
        return f"{path}[{operand(draw, idx_t, scope, depth + 2)}]"
    if kind == "call":
        name, params, _ = draw(st.sampled_from([h for h in scope.helpers if h[2] == t]))
        args = ", ".join(draw(expr_of(p, scope, depth + 1)) for p in params)
        return f"{name}({args})"
    if kind == "cast":
        choices = [s for s in INTEGERS + FLOATS if s != "f64" or scope.profile.f64]
        src = draw(st.sampled_from(choices))
        return f"{t}({draw(expr_of(src, scope, depth + 1))})"
    if kind == "minmax":
        fn = draw(st.sampled_from(["min", "max"]))
        return f"{fn}({draw(expr_of(t, scope, depth + 1))}, {draw(expr_of(t, scope, depth + 1))})"
    if kind == "math":
        fns = [f for f in EXACT_MATH if f != "sqrt" or _divides(t, scope)]
        fn = draw(st.sampled_from(fns))
        return f"math.{fn}({draw(expr_of(t, scope, depth + 1))})"
    if kind == "unary":
        signed = (
            is_float or t in ("i32", "i64") or (t.startswith("i") and scope.profile.narrow_negation)
        )
        op = draw(st.sampled_from(["-", "abs"])) if signed else "~"
        inner = draw(expr_of(t, scope, depth + 1))
        return f"abs({inner})" if op == "abs" else f"({op}{inner})"
    if kind == "select":
        return (
            f"({draw(expr_of(t, scope, depth + 1))} if {draw(bool_expr(scope, depth + 1))} "
            f"else {draw(expr_of(t, scope, depth + 1))})"
        )
    narrow_minus = t in ("i8", "i16") and not scope.profile.narrow_negation
    ops = ["+", "*"] if narrow_minus else ["+", "-", "*"]
    if _divides(t, scope):
        ops += ["//", "%"] + (["/"] if is_float else [])
    if not is_float:
        ops += ["&", "|", "^", "<<", ">>"]
    op = draw(st.sampled_from(ops))
    left = draw(expr_of(t, scope, depth + 1))
    if op in ("<<", ">>"):
        return f"({left} {op} {t}({draw(st.integers(0, BITS[t] + 2))}))"
    right = operand(draw, t, scope, depth + 1) if op in ("//", "%") else None
    right = right or draw(expr_of(t, scope, depth + 1))
    if op in ("+", "-", "*") and draw(st.integers(0, 3)) == 0:
        right = literal(draw, t)  # a weak Python literal takes the other side's type
    return f"({left} {op} {right})"


@st.composite
def bool_expr(draw, scope: Scope, depth: int = 0) -> str:
    """Source text of a bool_ expression: comparisons (of any type in scope), bool_ fields, and/or/not."""
    kinds = ["cmp", "cmp", "cmp"] + (["field"] if scope.leaves.get("bool_") else [])
    if depth < 2:
        kinds += ["and", "or", "not"]
    kind = draw(st.sampled_from(kinds))
    if kind == "field":
        return draw(st.sampled_from(scope.leaves["bool_"]))
    if kind == "cmp":
        types = scope.types() or ["i32"]
        t = draw(st.sampled_from(types))
        cmp = draw(st.sampled_from(_CMP))
        return f"({draw(expr_of(t, scope, 2))} {cmp} {draw(expr_of(t, scope, 2))})"
    if kind == "not":
        return f"(not {draw(bool_expr(scope, depth + 1))})"
    return f"({draw(bool_expr(scope, depth + 1))} {kind} {draw(bool_expr(scope, depth + 1))})"
