"""Which Python values a message field accepts: the one decision every encoder applies.

``send``, ``send_batch`` with objects, ``rg.encode``, the columnar encoders, the generated serializers
and the cpu backend all accept exactly the values this module accepts, and reject the others with the
same ``EncodeError`` text, naming ``Class.field`` (``Class.field[i]`` inside an Array or List):

- an integer field takes an ``int`` (or anything with ``__index__``: ``bool``, numpy integers) within
  its type's range; never a ``str``, a ``float`` (even ``5.0``) or ``None``;
- a float field takes an ``int`` or ``float`` (or anything with ``__float__``, numpy floats included)
  that its type can hold: ``1e40`` does not fit ``f32`` (it would become inf); inf and nan given as
  such are kept;
- a ``bool_`` field takes ``True``, ``False`` or a numpy bool;
- an ``Array[T, N]`` takes a sequence (not a ``str``, not a scalar) of exactly N elements, a
  ``List[T, N]`` one of at most N;
- a ``Str[N]`` takes a ``str`` whose UTF-8 form (so no lone surrogate) has at most N bytes;
- a nested message field takes an instance of its class.

One exception, for ``@rg.state`` classes only: their field defaults are the kernel's initial state,
and a scalar default for an Array (``hist: Array[u32, 16] = 0``) fills it (``fill_state_arrays``).

The scalar rule is ``struct``'s (the host's hot paths pack with ``struct``), plus the ``bool_`` rule
``struct`` lacks; so a path that packs with ``struct`` and falls back here when it fails agrees with
one that calls ``check_message`` first.
"""

from __future__ import annotations

import functools
import operator
import struct

import attrs
from typing import Any, Callable, Optional

import numpy as np

from .errors import EncodeError
from .layout import layout_of
from .types import ArrayType, ListType, MessageType, ScalarType, StrType, describe_type

__all__ = [
    "check_instance",
    "check_message",
    "check_scalar",
    "check_sequence",
    "check_str",
    "check_value",
    "fill_state_arrays",
    "struct_guard",
    "struct_is_exact",
]

#: Largest finite f32; a finite double at or past the halfway point to 2**128 rounds to inf.
_F32_MAX = float(np.finfo(np.float32).max)
_INT_CODES = "bhiqBHIQ"


@functools.lru_cache(maxsize=None)
def _packer(code: str) -> struct.Struct:
    return struct.Struct("<" + code)


def _short(value: Any) -> str:
    """``repr(value)``, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _show(value: Any) -> str:
    """A value as an error message shows it: its type and a short repr."""
    if value is None:
        return "None"
    return f"{type(value).__name__} {_short(value)}"


def _is_bool(value: Any) -> bool:
    return value is True or value is False or isinstance(value, np.bool_)


def check_scalar(t: ScalarType, value: Any, where: str) -> None:
    """Check one scalar value for a field of type ``t``.

    Raises:
        EncodeError: ``where: i32 needs an int, got str '5'``, ``where: 300 does not fit i8 (range
            -128..127)``, ``where: f32 needs a number, got None``, ``where: 1e+40 does not fit f32
            (largest 3.4028234663852886e+38)`` or ``where: bool_ needs a bool, got int 2``.
    """
    code = t.struct_code
    if code == "?":
        if _is_bool(value):
            return
        raise EncodeError(f"{where}: bool_ needs a bool, got {_show(value)}")
    try:
        _packer(code).pack(value)
        return
    except (struct.error, OverflowError, TypeError):
        pass
    if code in _INT_CODES:
        try:
            number = value.__index__()
        except (AttributeError, TypeError):
            raise EncodeError(f"{where}: {t.name} needs an int, got {_show(value)}") from None
        info = np.iinfo(t.np_type)
        raise EncodeError(
            f"{where}: {_short(number)} does not fit {t.name} (range {info.min}..{info.max})"
        )
    if isinstance(value, (str, bytes)) or not (
        hasattr(value, "__float__") or hasattr(value, "__index__")
    ):
        raise EncodeError(f"{where}: {t.name} needs a number, got {_show(value)}")
    largest = _F32_MAX if code == "f" else float(np.finfo(np.float64).max)
    raise EncodeError(f"{where}: {_short(value)} does not fit {t.name} (largest {largest!r})")


def check_sequence(t: Any, value: Any, where: str) -> int:
    """Check the length of a value for an ``Array`` or ``List`` field; return the length.

    Raises:
        EncodeError: ``where: Array[f32, 3] needs a sequence, got float 1.0``, ``where: Array of
            length 3 got 2 elements`` or ``where: List[f32, 4] holds at most 4 elements, got 5``.
    """
    try:
        if isinstance(value, str):
            raise TypeError
        n = len(value)
    except TypeError:
        raise EncodeError(
            f"{where}: {describe_type(t)} needs a sequence, got {_show(value)}"
        ) from None
    if isinstance(t, ArrayType):
        if n != t.length:
            raise EncodeError(f"{where}: Array of length {t.length} got {n} elements")
    elif n > t.max_len:
        raise EncodeError(
            f"{where}: {describe_type(t)} holds at most {t.max_len} elements, got {n}"
        )
    return n


def check_str(t: StrType, value: Any, where: str) -> bytes:
    """Check a value for a ``Str`` field; return its UTF-8 bytes.

    Raises:
        EncodeError: not a ``str``, a lone surrogate, or more UTF-8 bytes than the bound.
    """
    if not isinstance(value, str):
        raise EncodeError(f"{where}: {describe_type(t)} needs a str, got {_show(value)}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError(
            f"{where}: string holds a lone surrogate, which UTF-8 cannot carry"
        ) from None
    if len(raw) > t.max_bytes:
        raise EncodeError(
            f"{where}: {describe_type(t)} holds at most {t.max_bytes} UTF-8 bytes, got {len(raw)}"
        )
    return raw


def check_instance(cls: type, value: Any, where: str) -> None:
    """Check that a nested message value is an instance of its field's class.

    Raises:
        EncodeError: ``where: expected a Inner, got str``.
    """
    if not isinstance(value, cls):
        raise EncodeError(f"{where}: expected a {layout_of(cls).name}, got {type(value).__name__}")


def check_value(t: Any, value: Any, where: str) -> None:
    """Check ``value`` for a field of type ``t``, all the way down (see the module's rules).

    Raises:
        EncodeError: the first value (depth first) that the field does not accept, named by ``where``.
    """
    if isinstance(t, ScalarType):
        check_scalar(t, value, where)
    elif isinstance(t, StrType):
        check_str(t, value, where)
    elif isinstance(t, (ArrayType, ListType)):
        check_sequence(t, value, where)
        for i, v in enumerate(value):
            check_value(t.elem, v, f"{where}[{i}]")
    elif isinstance(t, MessageType):
        check_instance(t.cls, value, where)
        for f in layout_of(t.cls).fields:
            check_value(f.type, getattr(value, f.name), f"{where}.{f.name}")
    else:
        raise TypeError(t)


def check_message(cls: type, obj: Any) -> None:
    """Check every field of ``obj``, a message of class ``cls``.

    Raises:
        EncodeError: ``obj`` is not a ``cls``, or a field value is not accepted (``Class.field``).
    """
    name = layout_of(cls).name
    if not isinstance(obj, cls):
        raise EncodeError(f"{name}: expected a {name}, got {type(obj).__name__}")
    for f in layout_of(cls).fields:
        check_value(f.type, getattr(obj, f.name), f"{name}.{f.name}")


@functools.lru_cache(maxsize=None)
def struct_is_exact(cls: type) -> bool:
    """Whether packing ``cls``'s flat fields with ``struct`` accepts exactly what ``check_message``
    accepts: true when every field is a non-bool scalar (``struct`` takes any object for ``?``, and
    Array lengths that compensate each other, or another class with the same fields, still pack)."""
    return all(
        isinstance(f.type, ScalarType) and f.type.struct_code != "?" for f in layout_of(cls).fields
    )


def _sized(n: int) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        return not isinstance(v, str) and len(v) == n

    return ok


def _field_guard(t: Any) -> Optional[Callable[[Any], bool]]:
    """What ``struct`` does not check about one value of type ``t``, as a predicate (None: nothing);
    raises ``LookupError`` for a shape the guard does not cover (arrays of arrays or messages)."""
    if isinstance(t, ScalarType):
        return _is_bool if t.struct_code == "?" else None
    if isinstance(t, ArrayType) and isinstance(t.elem, ScalarType):
        sized = _sized(t.length)
        if t.elem.struct_code != "?":
            return sized
        return lambda v: sized(v) and all(map(_is_bool, v))
    if isinstance(t, MessageType):
        inner, cls = struct_guard(t.cls), t.cls
        return lambda v: type(v) is cls and inner(v)
    raise LookupError(t)


@functools.lru_cache(maxsize=None)
def struct_guard(cls: type) -> Callable[[Any], bool]:
    """A fast predicate over a direct message object: True when what ``struct`` does not check
    (bools, Array lengths, nested classes) is right, so that packing its flat fields with ``struct``
    accepts exactly what ``check_message`` accepts. False means: call ``check_message`` (which then
    raises the precise error). Classes of shapes it does not cover get ``check_message`` itself."""
    try:
        parts = [
            (operator.attrgetter(f.name), guard)
            for f in layout_of(cls).fields
            if (guard := _field_guard(f.type)) is not None
        ]
    except LookupError:

        def full(obj: Any) -> bool:
            check_message(cls, obj)
            return True

        return full

    def ok(obj: Any) -> bool:
        try:
            return all(guard(get(obj)) for get, guard in parts)
        except (TypeError, AttributeError):
            return False

    return ok


def _filled(t: Any, value: Any) -> Any:
    if isinstance(t, ArrayType) and not hasattr(value, "__len__"):
        return [_filled(t.elem, value) for _ in range(t.length)]
    return value


def fill_state_arrays(cls: type, obj: Any) -> Any:
    """``obj`` (a state object) with a scalar given for an ``Array`` field repeated to fill it.

    A state class's defaults are its initial value, and ``hist: Array[u32, 16] = 0`` declares sixteen
    zeros; a message class never gets this (``obj`` comes back as it is: a scalar for an Array is an
    error there).
    """
    if not isinstance(obj, cls) or layout_of(cls).spec.kind != "state":
        return obj
    changes = {
        f.name: _filled(f.type, getattr(obj, f.name))
        for f in layout_of(cls).fields
        if isinstance(f.type, ArrayType) and not hasattr(getattr(obj, f.name), "__len__")
    }
    return attrs.evolve(obj, **changes) if changes else obj
