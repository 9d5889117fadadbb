"""The handler language's types and its promotion rules (numpy 2 / NEP 50 semantics).

A value in a handler has one of these types:

- ``Scalar(t)``: a numpy scalar of the ringgen type ``t`` (``i32``, ``f32``, ...);
- ``Scalar(t, weak=True)``: a Python ``int`` (``t`` is i64) or ``float`` (``t`` is f64) -- a literal,
  a ``range`` variable, ``len(...)``, or arithmetic on those. Like NEP 50's "weak" Python scalars it
  takes the type of the other operand; in C it is held as ``rg_i64``/``rg_f64``;
- ``ArrayT``, ``StrT``, ``ListT``: fixed arrays and the bridged ``Str``/``List`` views;
- ``MsgT``: a message or state struct; ``OutboxT``: the kernel's outbox; ``VOID``.

The rules mirror what numpy does to the reference backend's values, so the generated C and the
reference agree exactly for integers. Where numpy would silently change kind (int + f32 -> f64) or
signedness (u64 + i64 -> f64), the language asks for an explicit cast instead.
"""

from __future__ import annotations

from typing import Optional, Union

import attrs

from ..layout import c_type_name
from ..types import (
    ArrayType,
    FieldType,
    ListType,
    MessageType,
    ScalarType,
    StrType,
    bool_,
    f32,
    f64,
    i16,
    i32,
    i64,
    i8,
    u16,
    u32,
    u64,
    u8,
)

__all__ = [
    "ArrayT",
    "ListT",
    "MsgT",
    "OutboxT",
    "Scalar",
    "StrT",
    "TupleT",
    "VOID",
    "VoidT",
    "Type",
    "WEAK_FLOAT",
    "WEAK_INT",
    "BOOL",
    "c_type",
    "describe",
    "from_field_type",
    "promote_arith",
    "promote_compare",
    "unify_local",
]


@attrs.frozen
class Scalar:
    t: ScalarType
    weak: bool = False

    @property
    def is_int(self) -> bool:
        return self.t.is_integer

    @property
    def is_float(self) -> bool:
        return self.t.is_float

    @property
    def is_bool(self) -> bool:
        return self.t.kind == "bool"


@attrs.frozen
class ArrayT:
    elem: "Type"
    length: int


@attrs.frozen
class StrT:
    max_bytes: int


@attrs.frozen
class ListT:
    elem: "Type"
    max_len: int


@attrs.frozen
class MsgT:
    cls: type = attrs.field(eq=True, hash=True)
    name: str
    is_state: bool = False


@attrs.frozen
class OutboxT:
    elem: MsgT


@attrs.frozen
class VoidT:
    pass


@attrs.frozen
class TupleT:
    """What a ``@rg.device`` function annotated ``-> tuple[i32, f32]`` returns (unpacked at the call)."""

    elems: tuple


Type = Union[Scalar, ArrayT, StrT, ListT, MsgT, OutboxT, VoidT, TupleT]

VOID = VoidT()
WEAK_INT = Scalar(i64, weak=True)
WEAK_FLOAT = Scalar(f64, weak=True)
BOOL = Scalar(bool_)

_SIGNED = {1: i8, 2: i16, 4: i32, 8: i64}
_UNSIGNED = {1: u8, 2: u16, 4: u32, 8: u64}


def from_field_type(ft: FieldType) -> Type:
    """The language type of a message field of ringgen type ``ft``."""
    if isinstance(ft, ScalarType):
        return Scalar(ft)
    if isinstance(ft, ArrayType):
        return ArrayT(from_field_type(ft.elem), ft.length)
    if isinstance(ft, StrType):
        return StrT(ft.max_bytes)
    if isinstance(ft, ListType):
        return ListT(from_field_type(ft.elem), ft.max_len)
    if isinstance(ft, MessageType):
        return MsgT(ft.cls, ft.name)
    raise TypeError(ft)


def to_field_type(t: Type) -> FieldType:
    """The ringgen field type of a language type (for C spelling)."""
    if isinstance(t, Scalar):
        return t.t
    if isinstance(t, ArrayT):
        return ArrayType(to_field_type(t.elem), t.length)
    if isinstance(t, StrT):
        return StrType(t.max_bytes)
    if isinstance(t, ListT):
        return ListType(to_field_type(t.elem), t.max_len)
    if isinstance(t, MsgT):
        return MessageType(t.cls, t.name)
    raise TypeError(t)


def c_type(t: Type) -> str:
    """The C spelling of a value of type ``t`` (arrays: the element's; see ``c_dims``)."""
    if isinstance(t, VoidT):
        return "void"
    return c_type_name(to_field_type(t))


def describe(t: Type) -> str:
    """How a type is named in diagnostics: ``f32``, ``int literal``, ``Array[f32, 8]``."""
    if isinstance(t, Scalar):
        if t.weak:
            return "int (a Python int)" if t.is_int else "float (a Python float)"
        return t.t.name
    if isinstance(t, ArrayT):
        return f"Array[{describe(t.elem)}, {t.length}]"
    if isinstance(t, StrT):
        return f"Str[{t.max_bytes}]"
    if isinstance(t, ListT):
        return f"List[{describe(t.elem)}, {t.max_len}]"
    if isinstance(t, MsgT):
        return t.name
    if isinstance(t, OutboxT):
        return f"Outbox[{t.elem.name}]"
    if isinstance(t, TupleT):
        return "tuple[" + ", ".join(describe(e) for e in t.elems) + "]"
    return "None"


def _wider(a: ScalarType, b: ScalarType) -> ScalarType:
    return a if a.size >= b.size else b


def promote_arith(a: Scalar, b: Scalar) -> tuple[Optional[Scalar], Optional[str]]:
    """The result type of ``a op b`` for + - * // % & | ^, or (None, why not).

    Weak (Python) scalars take the other side's type; two ints of one signedness give the wider;
    a signed and an unsigned int give the signed type when it is strictly wider (numpy's rule),
    otherwise an error; an int and a float (neither weak) are an error; f32 and f64 give f64.
    """
    if a.is_bool or b.is_bool:
        return None, "arithmetic on bool_ values is not supported"
    if a.weak and b.weak:
        if a.is_float or b.is_float:
            return WEAK_FLOAT, None
        return WEAK_INT, None
    if a.weak or b.weak:
        weak, strong = (a, b) if a.weak else (b, a)
        if weak.is_float and strong.is_int:
            return None, f"mixing a float with {strong.t.name} needs an explicit cast"
        return Scalar(strong.t), None
    if a.is_float and b.is_float:
        return Scalar(_wider(a.t, b.t)), None
    if a.is_float != b.is_float:
        return None, f"mixing {a.t.name} and {b.t.name} needs an explicit cast"
    if a.t.is_signed == b.t.is_signed:
        return Scalar(_wider(a.t, b.t)), None
    s, u = (a.t, b.t) if a.t.is_signed else (b.t, a.t)
    if s.size > u.size:
        return Scalar(s), None
    return None, f"mixing signed {s.name} and unsigned {u.name} needs an explicit cast"


def promote_compare(a: Scalar, b: Scalar) -> tuple[Optional[Scalar], Optional[str]]:
    """The type both sides of a comparison are converted to, or (None, why not).

    Comparisons are exact in numpy, even between an int8 and a Python int that does not fit: the
    weak side is compared in i64 (or against an unsigned type, see ``body``'s helpers).
    """
    if a.is_bool and b.is_bool:
        return BOOL, None
    if a.is_bool or b.is_bool:
        return None, "comparing bool_ with a number needs an explicit cast"
    if (a.weak or b.weak) and not (a.weak and b.weak):
        weak, strong = (a, b) if a.weak else (b, a)
        if weak.is_int and strong.is_int:
            if strong.t is u64:
                return Scalar(u64), None
            return WEAK_INT, None
    return promote_arith(a, b)


def literal_fits(value: int, t: ScalarType) -> bool:
    """True when the Python int ``value`` is representable in the integer type ``t``."""
    if t.is_signed:
        return -(1 << (t.bits - 1)) <= value < (1 << (t.bits - 1))
    return 0 <= value < (1 << t.bits)


def arith_unsigned(t: ScalarType) -> ScalarType:
    """The unsigned type signed arithmetic on ``t`` is done in, so that it wraps without UB.

    Types narrower than 32 bits use u32: C would promote them to (signed) int, where u16 * u16
    can overflow.
    """
    return u64 if t.size == 8 else u32


def signed_of_size(size: int) -> ScalarType:
    return _SIGNED[size]


def unsigned_of_size(size: int) -> ScalarType:
    return _UNSIGNED[size]


F32, F64 = Scalar(f32), Scalar(f64)


def unify_local(a: Scalar, b: Scalar) -> tuple[Optional[Scalar], Optional[str]]:
    """The one type of a local assigned values of types ``a`` and ``b``, or (None, why not).

    Numba's rule, on numpy's promotion table (docs/language.md, "Locals"): a Python int (weak) is
    i64 and a Python float f64, except that two weak values stay weak (Python ints stay Python
    ints) and a weak int joins u64 as u64. Two ints give the smallest int holding both; an int and
    a float the float that holds both exactly. bool_ joins only bool_. Joins that have no exact
    type (u64 with a signed int, a 64-bit int with a float) are refused.
    """
    if a == b:
        return a, None
    if a.is_bool or b.is_bool:
        return None, "a bool_ local holds only bool_ values"
    if a.weak and b.weak:
        return (WEAK_FLOAT if a.is_float or b.is_float else WEAK_INT), None
    if a.weak or b.weak:
        weak, strong = (a, b) if a.weak else (b, a)
        if weak.is_int:
            if strong.is_float:
                return F64, None  # numpy: int64 with a float is float64
            return (Scalar(u64) if strong.t is u64 else Scalar(i64)), None
        a, b = F64, strong
    if a.is_float and b.is_float:
        return Scalar(_wider(a.t, b.t)), None
    if a.is_float or b.is_float:
        fl, it = (a.t, b.t) if a.is_float else (b.t, a.t)
        if it.size == 8:
            return None, f"{fl.name} cannot hold every {it.name} value exactly"
        if fl is f32 and it.size == 4:
            return F64, None
        return Scalar(fl), None
    if a.t.is_signed == b.t.is_signed:
        return Scalar(_wider(a.t, b.t)), None
    s, u = (a.t, b.t) if a.t.is_signed else (b.t, a.t)
    if s.size > u.size:
        return Scalar(s), None
    if u.size == 8:
        return None, f"no integer type holds every {s.name} and every u64 value"
    return Scalar(_SIGNED[u.size * 2]), None
