"""The types a message field, a state field or a handler local may have.

Scalars (``i8`` ... ``f64``, ``bool_``) are objects that also act as casts in handlers (``f32(x)``),
returning numpy scalars so that the reference backend wraps and rounds exactly as C does.
``Array[T, N]`` is a fixed-size array; ``Str[N]`` (UTF-8, at most N bytes) and ``List[T, N]`` (at
most N elements) are *bridged*: a message holding one travels serialized (see docs/wire-format.md).
"""

from __future__ import annotations

from typing import Any, Union

import attrs
import numpy as np

__all__ = [
    "Array",
    "ArrayType",
    "FieldType",
    "HLC",
    "List",
    "ListType",
    "MessageType",
    "SCALARS",
    "ScalarType",
    "Str",
    "StrType",
    "bool_",
    "describe_type",
    "f32",
    "f64",
    "i16",
    "i32",
    "i64",
    "i8",
    "u16",
    "u32",
    "u64",
    "u8",
]


@attrs.frozen(repr=False)
class ScalarType:
    """A fixed-width scalar: its name in the language, its C spelling, size, kind and numpy type.

    Calling it converts a value the way a C cast does (integers wrap at their width, floats round to
    the type), which is how handlers spell casts: ``f32(x)``, ``i32(n)``.
    """

    name: str
    size: int
    kind: str  # "int", "uint", "float" or "bool"
    np_type: Any = attrs.field(eq=False)
    struct_code: str = attrs.field(eq=False)

    @property
    def align(self) -> int:
        return self.size

    @property
    def bits(self) -> int:
        return self.size * 8

    @property
    def c_name(self) -> str:
        """The portable typedef used in every generated source (defined by the ``_types.h`` header)."""
        return "rg_" + self.name.rstrip("_")

    @property
    def is_integer(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind == "int"

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.np_type).newbyteorder("<")

    def __repr__(self) -> str:
        return self.name

    def __call__(self, value: Any) -> Any:
        return cast_scalar(self, value)


def cast_scalar(t: ScalarType, value: Any) -> Any:
    """Convert ``value`` to the numpy scalar of ``t`` with C semantics (wrap, truncate toward zero)."""
    if t.kind == "bool":
        return np.bool_(bool(value))
    if t.is_float:
        return t.np_type(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise ValueError(f"cannot convert {value!r} to {t.name}")
        value = int(value)  # truncates toward zero, as C does
    value = int(value) & ((1 << t.bits) - 1)
    if t.is_signed and value >= 1 << (t.bits - 1):
        value -= 1 << t.bits
    return t.np_type(value)


i8 = ScalarType("i8", 1, "int", np.int8, "b")
i16 = ScalarType("i16", 2, "int", np.int16, "h")
i32 = ScalarType("i32", 4, "int", np.int32, "i")
i64 = ScalarType("i64", 8, "int", np.int64, "q")
u8 = ScalarType("u8", 1, "uint", np.uint8, "B")
u16 = ScalarType("u16", 2, "uint", np.uint16, "H")
u32 = ScalarType("u32", 4, "uint", np.uint32, "I")
u64 = ScalarType("u64", 8, "uint", np.uint64, "Q")
f32 = ScalarType("f32", 4, "float", np.float32, "f")
f64 = ScalarType("f64", 8, "float", np.float64, "d")
bool_ = ScalarType("bool_", 1, "bool", np.bool_, "?")

#: A hybrid logical clock stamp (``stamp: rg.HLC``): a ``u64`` field the runtime fills on every hop of
#: a graph (ringgen.causal; docs/graphs.md, "Ordering guarantees"). It is laid out, encoded and
#: generated exactly as ``u64`` (it compares equal to it); the runtime tells it apart by identity.
HLC = ScalarType("u64", 8, "uint", np.uint64, "Q")

SCALARS: dict[str, ScalarType] = {
    t.name: t for t in (i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, bool_)
}


@attrs.frozen
class ArrayType:
    """``Array[T, N]``: N elements of T stored inline (a C array, a numpy sub-array)."""

    elem: "FieldType"
    length: int


@attrs.frozen
class StrType:
    """``Str[N]``: a UTF-8 string of at most ``max_bytes`` bytes; makes its message bridged."""

    max_bytes: int


@attrs.frozen
class ListType:
    """``List[T, N]``: at most ``max_len`` elements of T; makes its message bridged."""

    elem: "FieldType"
    max_len: int


@attrs.frozen
class MessageType:
    """A nested ``@rg.message`` (or ``@rg.state``) class used as a field type (its spec:
    ``ringgen.schema.spec_of(t.cls)``; types.py sits below schema.py and does not import it)."""

    cls: type = attrs.field(eq=False)
    name: str


FieldType = Union[ScalarType, ArrayType, StrType, ListType, MessageType]


def describe_type(t: FieldType) -> str:
    """The type as the user writes it: ``f32``, ``List[P, 2]``, ``Str[16]``, ``Array[f32, 4]``, ``P``.

    Every message shown to a user (errors, generated comments, the manifest) spells types this way,
    never as the repr of the type objects.
    """
    if isinstance(t, ScalarType):
        return t.name
    if isinstance(t, ArrayType):
        return f"Array[{describe_type(t.elem)}, {t.length}]"
    if isinstance(t, StrType):
        return f"Str[{t.max_bytes}]"
    if isinstance(t, ListType):
        return f"List[{describe_type(t.elem)}, {t.max_len}]"
    if isinstance(t, MessageType):
        return t.name
    raise TypeError(t)


class _Subscriptable:
    """Base for ``Array``/``Str``/``List``: subscription builds a type object, checked later.

    Arguments are not validated here: the schema checks them, so the error can name class and field.
    """

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is used as a type annotation, e.g. {self._example}")


class _ArrayAlias(_Subscriptable):
    _example = "Array[f32, 4]"

    def __class_getitem__(cls, params):
        if not isinstance(params, tuple) or len(params) != 2:
            return _Malformed(
                "Array", params, "Array takes an element type and a length: Array[f32, 4]"
            )
        return ArrayType(params[0], params[1])


class _StrAlias(_Subscriptable):
    _example = "Str[64]"

    def __class_getitem__(cls, params):
        if isinstance(params, tuple):
            return _Malformed("Str", params, "Str takes one bound in bytes: Str[64]")
        return StrType(params)


class _ListAlias(_Subscriptable):
    _example = "List[f32, 16]"

    def __class_getitem__(cls, params):
        if not isinstance(params, tuple) or len(params) != 2:
            return _Malformed(
                "List", params, "List takes an element type and a bound: List[f32, 16]"
            )
        return ListType(params[0], params[1])


@attrs.frozen
class _Malformed:
    """A subscripted alias with the wrong arity; the schema turns it into a SchemaError."""

    alias: str
    params: Any
    hint: str


Array = _ArrayAlias
Str = _StrAlias
List = _ListAlias
