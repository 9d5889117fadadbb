"""Printing IR expressions as C (the expression half of ``body.py``), and the helper registry.

Every operator is printed with the parentheses it needs to stand alone, so operands never depend on
C's precedence table; ``top=True`` drops the outermost pair where the context already delimits it.
"""

from __future__ import annotations

import attrs
import numpy as np

from ..dsl import ir
from ..dsl.typesys import ArrayT, ListT, MsgT, Scalar, StrT, arith_unsigned, c_type
from ..intrinsics import MATH_FUNCTIONS
from ..types import i64, u64

__all__ = ["ExprPrinter", "Helpers", "c_literal"]


@attrs.frozen(order=True)
class _Helper:
    kind: str
    t: str


class Helpers:
    """The ``rg_py_*`` helpers a program uses; rendered once, in a fixed order, before the functions."""

    _ORDER = (
        "index",
        "index_u64",
        "narrow",
        "float_to_bits",
        "floordiv_signed",
        "floordiv_unsigned",
        "floordiv_float",
        "div_zero",
        "shift",
        "abs",
        "minmax",
        "bytes_eq",
    )

    def __init__(self) -> None:
        self.used: set[_Helper] = set()

    def need(self, kind: str, t: str = "") -> None:
        self.used.add(_Helper(kind, t))

    def contexts(self) -> list[dict]:
        from ..types import SCALARS

        out = []
        for h in sorted(self.used, key=lambda h: (self._ORDER.index(h.kind), h.t)):
            ctx = {
                "kind": h.kind,
                "t": h.t,
                "c": "",
                "u": "",
                "bits": 0,
                "lo": 0,
                "hi": 0,
                "signed": False,
            }
            if h.t:
                st = SCALARS[h.t]
                ctx.update(c=st.c_name, bits=st.bits, signed=st.is_signed)
                if st.is_integer:
                    ctx["u"] = arith_unsigned(st).c_name
                    lo = -(1 << (st.bits - 1)) if st.is_signed else 0
                    hi = (1 << (st.bits - 1)) - 1 if st.is_signed else (1 << st.bits) - 1
                    hi = min(hi, (1 << 63) - 1)
                    ctx["lo"], ctx["hi"] = c_literal(lo, i64), c_literal(hi, i64)
            out.append(ctx)
        return out


def c_literal(value, t) -> str:
    """A C literal of scalar type ``t`` (a ringgen ScalarType) that every target parses the same way.

    Negative values come parenthesised, so that ``-`` applied to one never reads as ``--``.
    """
    text = _literal(value, t)
    return f"({text})" if text.startswith("-") else text


def _literal(value, t) -> str:
    if t.kind == "bool":
        return "1" if value else "0"
    if t.is_float:
        v = float(value)
        if not np.isfinite(v):
            raise ValueError(f"non-finite constant {v!r}")
        if t.name == "f32":
            text = str(np.float32(v))
            if "." not in text and "e" not in text:
                text += ".0"
            return text + "f"
        text = repr(v)
        if "." not in text and "e" not in text:
            text += ".0"
        return text
    v = int(value)
    if -(1 << 31) < v < (1 << 31):
        # an int literal converts exactly to any wider or narrower type it fits
        if t.is_signed or t.size < 4:
            return str(v)
        return f"{v}u" if t.size == 4 else f"(({t.c_name}){v}u)"
    if v == -(1 << 31) and t.name == "i32":
        return "(-2147483647 - 1)"
    bits = v & ((1 << 64) - 1)
    hi, lo = bits >> 32, bits & 0xFFFFFFFF
    return f"(({t.c_name})(((rg_u64)0x{hi:08x}u << 32) | (rg_u64)0x{lo:08x}u))"


def _st(t: Scalar):
    return t.t


class ExprPrinter:
    """Expression printing; ``body._FunctionPrinter`` adds statements."""

    def __init__(self, helpers: Helpers, may_fault: set) -> None:
        self.helpers = helpers
        self.may_fault = may_fault
        self.pointer_names: dict[str, str] = {}

    # -------------------------------------------------------------- analysis

    def can_fault(self, e) -> bool:
        """True when evaluating ``e`` may set ``*rg_fault``."""
        if isinstance(e, ir.Index) and e.checked:
            return True
        if isinstance(e, ir.Binary) and e.divisor_checked:
            return True
        if isinstance(e, ir.Convert) and e.checked:
            return True
        if isinstance(e, ir.CallDevice) and e.fn in self.may_fault:
            return True
        return any(self.can_fault(c) for c in _children(e))

    def in_order(self, exprs, texts: list) -> tuple[list, list]:
        """Python evaluates ``exprs`` left to right and raises the first fault it meets; C leaves
        the order of a call's arguments and of an operator's operands unspecified (gcc often goes
        right to left), and the helpers keep the first fault they set. So where two or more of
        ``exprs`` can fault, each but the last of those is evaluated first into a temporary, in
        order (``sequenced`` puts the comma operator's sequence points between them), and its
        text (in ``texts``, which are the printed ``exprs``) becomes the temporary's name.

        Returns (the temporaries' assignments, the texts to use). Only scalar values are moved;
        a faulting message, Str or List operand keeps its place (no C temporary holds it)."""
        faulting = [i for i, x in enumerate(exprs) if self.can_fault(x)]
        if len(faulting) < 2:
            return [], list(texts)
        texts, assigns = list(texts), []
        for i in faulting[:-1]:
            if isinstance(exprs[i].type, Scalar):
                t = self.temp(c_type(exprs[i].type), "seq")
                assigns.append(f"{t} = {texts[i]}")
                texts[i] = t
        return assigns, texts

    @staticmethod
    def sequenced(assigns: list, text: str) -> str:
        """``text`` after ``assigns`` (``in_order``), joined by the comma operator. Parenthesized
        twice, so that ``expr(top=True)`` taking off one pair leaves the comma inside one."""
        if not assigns:
            return text
        return "((" + ", ".join(assigns + [text]) + "))"

    # -------------------------------------------------------------- access paths

    def field_access(self, e: ir.Field, base: str) -> str:
        b = e.base
        if isinstance(b, ir.Var) and b.name in self.pointer_names:
            return f"{base}->{e.name}"
        return f"{base}.{e.name}"

    def index_expr(self, e: ir.Index, base: str) -> str:
        n = str(e.bound) if e.bound is not None else f"(rg_i64){base}.len"
        if e.index.type.t is u64:
            self.helpers.need("index_u64")
            return f"rg_py_index_u64({self.expr(e.index, top=True)}, {n}, rg_fault)"
        self.helpers.need("index")
        return f"rg_py_index((rg_i64)({self.expr(e.index, top=True)}), {n}, rg_fault)"

    def index_access(self, e: ir.Index, base: str, index: str) -> str:
        if isinstance(e.base.type, ListT):
            return f"{base}.items[{index}]"
        return f"{base}[{index}]"

    # -------------------------------------------------------------- expressions

    def expr(self, e, top: bool = False) -> str:
        text = getattr(self, "e_" + type(e).__name__)(e)
        if top and text.startswith("(") and _balanced(text[1:-1]):
            return text[1:-1]
        return text

    def e_Const(self, e: ir.Const) -> str:
        return c_literal(e.value, _st(e.type))

    def e_Var(self, e: ir.Var) -> str:
        return self.pointer_names.get(e.name, e.name)

    def e_Field(self, e: ir.Field) -> str:
        return self.field_access(e, self.expr(e.base))

    def e_Index(self, e: ir.Index) -> str:
        if e.checked and self.can_fault(e.base) and self.can_fault(e.index):
            # Python takes the base (its own indices) before this index, and C's a[i] leaves the
            # order open: the base's checked indices go into temporaries first, in order, as an
            # assignment's target does (``place``), then this index (``in_order``'s reason)
            pre: list[str] = []
            base = self.place(e.base, pre, "")
            access = self.index_access(e, base, self.index_expr(e, base))
            return self.sequenced([p.rstrip(";") for p in pre], access)
        base = self.expr(e.base)
        idx = self.index_expr(e, base) if e.checked else self.expr(e.index, top=True)
        return self.index_access(e, base, idx)

    def e_Len(self, e: ir.Len) -> str:
        return f"((rg_i64){self.expr(e.base)}.len)"

    def e_Unary(self, e: ir.Unary) -> str:
        x = self.expr(e.operand)
        if e.op == "not":
            return f"(!{x})"
        t = _st(e.type)
        if e.op == "-":
            if t.is_float:
                return f"(-{x})"
            u = arith_unsigned(t).c_name
            return _narrowed(t, f"({u})0 - ({u}){x}")
        return f"(({t.c_name})~{x})"

    def e_Binary(self, e: ir.Binary) -> str:
        seq, (a, b) = self.in_order((e.left, e.right), (self.expr(e.left), self.expr(e.right)))
        return self.sequenced(seq, self._binary(e, a, b))

    def _binary(self, e: ir.Binary, a: str, b: str) -> str:
        t = _st(e.type)
        op = e.op
        if t.kind == "bool":
            return f"({a} {op} {b})"
        if t.is_float:
            if op in ("//", "%"):
                self.helpers.need("floordiv_float", t.name)
                name = "floordiv" if op == "//" else "mod"
                return f"rg_py_{name}_{t.name}({a}, {b})"
            if op == "/" and _is_zero_constant(e.right):
                # IEEE's x / 0 without a division by zero, which C++ leaves undefined (nvcc folded
                # it away, and the range fault of a conversion after it)
                self.helpers.need("div_zero", t.name)
                return f"rg_py_div_zero_{t.name}({a}, {b})"
            return f"({a} {op} {b})"
        if op in ("//", "%"):
            if not e.divisor_checked and not t.is_signed:
                return f"(({t.c_name})({a} {'/' if op == '//' else '%'} {b}))"
            self.helpers.need("floordiv_signed" if t.is_signed else "floordiv_unsigned", t.name)
            name = "floordiv" if op == "//" else "mod"
            return f"rg_py_{name}_{t.name}({a}, {b}, rg_fault)"
        if op in ("<<", ">>"):
            self.helpers.need("shift", t.name)
            return f"rg_py_{'shl' if op == '<<' else 'shr'}_{t.name}({a}, {b})"
        if op in ("&", "|", "^"):
            if t.size >= 4:
                return f"({a} {op} {b})"
            return f"(({t.c_name})({a} {op} {b}))"
        if t.is_signed or t.size < 4:
            u = arith_unsigned(t).c_name
            return _narrowed(t, f"({u}){a} {op} ({u}){b}")
        return f"({a} {op} {b})"

    def e_Compare(self, e: ir.Compare) -> str:
        ot = e.operand_type
        if isinstance(ot, Scalar) and ot.t is u64:
            weak = [
                s for s in (e.left, e.right) if isinstance(s, ir.Convert) and s.operand.type.weak
            ]
            if weak:
                return self._compare_u64_weak(e, weak[0])
        seq, (a, b) = self.in_order((e.left, e.right), (self.expr(e.left), self.expr(e.right)))
        return self.sequenced(seq, f"({a} {e.op} {b})")

    def _compare_u64_weak(self, e: ir.Compare, w: ir.Convert) -> str:
        """A Python int against a u64, exactly as numpy compares: a negative int is below every u64."""
        op = e.op
        if w is e.right:  # mirror so that the Python int is on the left
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
            other = e.left
        else:
            other = e.right
        wv = self.expr(w.operand)
        body = f"((rg_u64){wv} {op} {self.expr(other)})"
        if op in ("<", "<=", "!="):
            return f"({wv} < 0 || {body})"
        return f"({wv} >= 0 && {body})"

    def e_BoolOp(self, e: ir.BoolOp) -> str:
        sep = " && " if e.op == "and" else " || "
        return "(" + sep.join(self.expr(v) for v in e.values) + ")"

    def e_Select(self, e: ir.Select) -> str:
        return f"({self.expr(e.cond)} ? {self.expr(e.then)} : {self.expr(e.orelse)})"

    def e_Convert(self, e: ir.Convert) -> str:
        x = self.expr(e.operand, top=True)
        src, dst = e.operand.type, _st(e.type)
        if dst.kind == "bool":
            return f"(({self.expr(e.operand)}) != 0)"
        if e.checked and src.is_float:
            self.helpers.need("float_to_bits", src.t.name)
            return f"(({dst.c_name})rg_py_{src.t.name}_to_bits({x}, rg_fault))"
        if e.checked:
            self.helpers.need("narrow", dst.name)
            return f"rg_py_narrow_{dst.name}({x}, rg_fault)"
        return f"(({dst.c_name})({x}))"

    def e_MathCall(self, e: ir.MathCall) -> str:
        seq, args = self.in_order(e.args, [self.expr(a, top=True) for a in e.args])
        return self.sequenced(seq, self._math_call(e, args))

    def _math_call(self, e: ir.MathCall, args: list) -> str:
        t = _st(e.type)
        if e.fn == "abs":
            if t.is_float:
                return f"rg_fabs_{t.name}({args[0]})"
            if not t.is_signed:
                return f"({args[0]})"
            self.helpers.need("abs", t.name)
            return f"rg_py_abs_{t.name}({args[0]})"
        if e.fn in ("min", "max"):
            self.helpers.need("minmax", t.name)
            text = args[0]
            for a in args[1:]:
                text = f"rg_py_{e.fn}_{t.name}({text}, {a})"
            return text
        stem = MATH_FUNCTIONS[e.fn].stem
        return f"rg_{stem}_{t.name}({', '.join(args)})"

    def e_CallDevice(self, e: ir.CallDevice) -> str:
        seq, args = self.in_order(e.args, self.call_args(e))
        return self.sequenced(seq, f"rg_fn_{e.fn}({', '.join(args + ['rg_fault', 'rg_stop'])})")

    def call_args(self, e: ir.CallDevice) -> list[str]:
        """The C arguments of a device call: messages, Str and List by pointer, Arrays decayed."""
        args = []
        for a in e.args:
            if isinstance(a.type, MsgT):
                text = self.expr(a)
                args.append(
                    text if isinstance(a, ir.Var) and a.name in self.pointer_names else f"&{text}"
                )
            elif isinstance(a.type, (StrT, ListT)):
                args.append(f"&{self.expr(a)}")
            else:
                args.append(self.expr(a, top=True))
        return args

    def e_StrEq(self, e: ir.StrEq) -> str:
        a = self.expr(e.left)
        if isinstance(e.right, ir.Const):
            lit: bytes = e.right.value
            parts = [f"{a}.len == {len(lit)}u"] + [
                f"{a}.data[{i}] == {b}u" for i, b in enumerate(lit)
            ]
            text = "(" + " && ".join(parts) + ")"
        else:
            self.helpers.need("bytes_eq")
            b = self.expr(e.right)
            text = f"rg_py_bytes_eq({a}.data, {a}.len, {b}.data, {b}.len)"
        return f"(!{text})" if e.negate else text

    def e_StartsWith(self, e: ir.StartsWith) -> str:
        a = self.expr(e.string)
        n = len(e.prefix)
        at = (lambda i: f"{a}.len - {n - i}u") if e.suffix else str  # noqa: E731
        parts = [f"{a}.len >= {n}u"] + [
            f"{a}.data[{at(i)}] == {b}u" for i, b in enumerate(e.prefix)
        ]
        return "(" + " && ".join(parts) + ")"

    def e_Builtin(self, e: ir.Builtin) -> str:
        return f"rg_{e.fn}()"


def _narrowed(t, wrapped: str) -> str:
    """``wrapped`` (arithmetic in the unsigned type, which wraps without undefined behaviour) as a
    value of ``t``: a cast, except for i8 and i16, which go through the prelude's ``rg_wrap_<t>``
    so a target can keep its compiler from assuming the narrow result did not wrap (CUDA's ptxas
    did: dialect_cuda.py)."""
    if t.is_signed and t.size < 4:
        return f"rg_wrap_{t.name}({wrapped})"
    return f"(({t.c_name})({wrapped}))"


def _children(e) -> list:
    if isinstance(e, (ir.Const, ir.Var, ir.Builtin)):
        return []
    out = []
    for f in attrs.fields(type(e)):
        v = getattr(e, f.name)
        if isinstance(v, tuple):
            for x in v:
                if isinstance(x, tuple):
                    out.append(x[1])
                elif attrs.has(type(x)):
                    out.append(x)
        elif attrs.has(type(v)) and not isinstance(v, (Scalar, ArrayT, ListT, MsgT, StrT)):
            out.append(v)
    return out


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _is_zero_constant(e) -> bool:
    """Whether ``e`` is a literal zero (through casts): a divisor the compiler sees as zero."""
    while isinstance(e, ir.Convert):
        e = e.operand
    return isinstance(e, ir.Const) and isinstance(e.value, (int, float)) and e.value == 0
