"""Direct messages and unmanaged blocks: a message's C struct as ``struct`` format and flat values.

A direct message's slot *is* its C struct (docs/design.md §4), and inside a bridged payload a nested direct
message is MemoryPack's "unmanaged struct": the same bytes, padding included (written as zeros). Both
are packed with one ``struct.Struct`` whose format spells every field at its layout offset.
"""

from __future__ import annotations

import functools
import struct
from typing import Any, Iterator

from ..layout import MessageLayout, layout_of
from ..types import ArrayType, MessageType, ScalarType, describe_type
from ..values import check_instance, check_scalar, check_sequence

__all__ = [
    "direct_struct",
    "flatten_direct",
    "flatten_value",
    "struct_format",
    "type_format",
    "unflatten_direct",
    "unflatten_value",
]


def struct_format(lay: MessageLayout) -> str:
    """The ``struct`` format (no byte-order prefix) of a direct layout, padding as ``x``.

    The one derivation of a direct message's struct format: the wire codecs, the generated
    ``bridged.py`` and ``serializers.py`` all spell their structs from it. Fields appear in layout
    order, an ``Array`` of scalars as one counted code (``4f``), nested messages inlined with their
    own padding.
    """
    parts, at = [], 0
    for f in lay.fields:
        if f.offset > at:
            parts.append(f"{f.offset - at}x")
        parts.append(type_format(f.type))
        at = f.offset + f.size
    if lay.size > at:
        parts.append(f"{lay.size - at}x")
    return "".join(parts)


def type_format(t) -> str:
    """The ``struct`` format (no byte-order prefix) of one fixed-size field type, padding included.

    Raises:
        TypeError: ``t`` is a ``Str`` or ``List``, which have no fixed-size struct.
    """
    if isinstance(t, ScalarType):
        return t.struct_code
    if isinstance(t, ArrayType):
        inner = type_format(t.elem)
        if isinstance(t.elem, ScalarType):
            return f"{t.length}{inner}"
        return inner * t.length
    if isinstance(t, MessageType):
        return struct_format(layout_of(t.cls))
    raise TypeError(f"{describe_type(t)} has no fixed-size struct format")


@functools.lru_cache(maxsize=None)
def direct_struct(cls: type) -> struct.Struct:
    """The little-endian ``struct.Struct`` of a direct message's C struct (its size is ``layout.size``)."""
    lay = layout_of(cls)
    s = struct.Struct("<" + struct_format(lay))
    assert s.size == lay.size, (cls, s.size, lay.size)
    return s


def flatten_direct(cls: type, obj: Any, out: list, where: str = "") -> None:
    """Append the scalars of ``obj`` (a direct message) to ``out`` in struct order.

    Raises:
        EncodeError: a value is not one its field accepts (``ringgen.values``), named by ``where``.
    """
    lay = layout_of(cls)
    check_instance(cls, obj, where or lay.name)
    for f in lay.fields:
        flatten_value(f.type, getattr(obj, f.name), out, f"{where or lay.name}.{f.name}")


def flatten_value(t, value: Any, out: list, where: str) -> None:
    """Append the scalars of one fixed-size ``value`` of type ``t`` to ``out`` in struct order.

    Raises:
        EncodeError: a value is not one its field accepts (``ringgen.values``), named by ``where``.
    """
    if isinstance(t, ScalarType):
        check_scalar(t, value, where)
        out.append(value)
    elif isinstance(t, ArrayType):
        check_sequence(t, value, where)
        for i, v in enumerate(value):
            flatten_value(t.elem, v, out, f"{where}[{i}]")
    elif isinstance(t, MessageType):
        flatten_direct(t.cls, value, out, where)
    else:
        raise TypeError(t)


def unflatten_direct(cls: type, it: Iterator) -> Any:
    """Rebuild a direct message from the scalars ``it`` yields in struct order (Arrays as lists)."""
    lay = layout_of(cls)
    return cls(*[unflatten_value(f.type, it) for f in lay.fields])


def unflatten_value(t, it: Iterator) -> Any:
    """Rebuild one fixed-size value of type ``t`` from the scalars ``it`` yields."""
    if isinstance(t, ScalarType):
        return next(it)
    if isinstance(t, ArrayType):
        return [unflatten_value(t.elem, it) for _ in range(t.length)]
    if isinstance(t, MessageType):
        return unflatten_direct(t.cls, it)
    raise TypeError(t)
