"""The MemoryPack payload of a bridged message: a reference encoder and a validating decoder.

This is the readable definition of the payload format (docs/wire-format.md), written field by field.
The generated per-message codecs (``ringgen.codegen.bridged_py``) are the fast path and are tested
against it; when a fast decoder fails, the reference decoder runs again to name the exact offset, field
and reason of the fault.

Supported shapes, in MemoryPack's terms (little-endian throughout):

- scalar: raw bytes of its C type (``bool_`` one byte, nonzero is true);
- nested *direct* message: an unmanaged struct, its C struct bytes, padding zeroed;
- ``Array[T, N]`` and ``List[T, N]``: a collection, ``int32 count`` then the elements (-1 is null, which
  ringgen never writes and rejects; an Array's count must be exactly N);
- ``Str[N]``: a string in UTF-8 form, ``int32 ~byte_count``, ``int32 utf16_length``, the bytes; the
  empty string is the single ``int32 0`` (-1 is null, rejected; a positive first word is the UTF-16
  form, which ringgen does not accept);
- nested *bridged* message: an object, ``u8 member_count`` then the members in declaration order.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import WireFormatError
from ..layout import layout_of
from ..protocol import Reason
from ..types import ArrayType, ListType, MessageType, ScalarType, StrType, describe_type
from ..values import check_instance, check_scalar, check_sequence, check_str
from .direct import direct_struct, flatten_direct, unflatten_direct

__all__ = [
    "decode_payload",
    "decode_value",
    "encode_payload",
    "encode_value",
    "utf16_length",
    "utf16_units",
    "wire_error",
]

_I32 = struct.Struct("<i")
_U8 = struct.Struct("<B")
_STR_HEAD = struct.Struct("<ii")


def wire_error(offset: int, field: str, reason: Reason, detail: str) -> WireFormatError:
    """A ``WireFormatError`` with ``offset``, ``field`` and ``reason`` attributes set."""
    err = WireFormatError(f"{field} at byte {offset}: {reason.name}: {detail}")
    err.offset, err.field, err.reason = offset, field, reason
    return err


def utf16_length(text: str, nbytes: int) -> int:
    """UTF-16 code units of ``text`` (``nbytes`` long in UTF-8): ``utf16_units`` with an ASCII shortcut."""
    if nbytes == len(text):  # ASCII: the common case costs nothing
        return nbytes
    return utf16_units(text)


def utf16_units(text: str) -> int:
    """UTF-16 code units of ``text``: one per code point, two for those above U+FFFF."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


# --------------------------------------------------------------------------------------------- encode


def encode_payload(cls: type, obj: Any) -> bytes:
    """The MemoryPack object encoding of ``obj`` (a bridged message of class ``cls``).

    Raises:
        EncodeError: a Str or List exceeds its bound, an Array has the wrong length, or a value does not
            fit its type; the message names the class and field.
    """
    out = bytearray()
    _encode_object(cls, obj, out, layout_of(cls).name)
    return bytes(out)


def _encode_object(cls: type, obj: Any, out: bytearray, where: str) -> None:
    lay = layout_of(cls)
    check_instance(cls, obj, where)
    out += _U8.pack(len(lay.fields))
    for f in lay.fields:
        encode_value(f.type, getattr(obj, f.name), out, f"{where}.{f.name}")


def encode_value(t, value: Any, out: bytearray, where: str) -> None:
    """Append the encoding of one ``value`` of field type ``t`` to ``out``; ``where`` names the field.

    Raises:
        EncodeError: a value is not one its field accepts (``ringgen.values``), named by ``where``.
    """
    if isinstance(t, ScalarType):
        check_scalar(t, value, where)
        out += struct.pack("<" + t.struct_code, value)
    elif isinstance(t, StrType):
        raw = check_str(t, value, where)
        if not raw:
            out += _I32.pack(0)
        else:
            out += _STR_HEAD.pack(~len(raw), utf16_length(value, len(raw)))
            out += raw
    elif isinstance(t, (ArrayType, ListType)):
        n = check_sequence(t, value, where)
        out += _I32.pack(n)
        for i, v in enumerate(value):
            encode_value(t.elem, v, out, f"{where}[{i}]")
    elif isinstance(t, MessageType):
        if layout_of(t.cls).is_bridged:
            _encode_object(t.cls, value, out, where)
        else:
            flat: list = []
            flatten_direct(t.cls, value, flat, where)
            out += direct_struct(t.cls).pack(*flat)
    else:
        raise TypeError(t)


# --------------------------------------------------------------------------------------------- decode


def decode_payload(cls: type, data, pos: int, end: int) -> tuple[Any, int]:
    """Decode the object of class ``cls`` at ``data[pos:end]``; return it and the offset after it.

    Offsets in errors are absolute positions in ``data``.

    Raises:
        WireFormatError: with ``reason`` BAD_PAYLOAD (bad member count or length, past the bound or
            the end, null or UTF-16 strings) or BAD_UTF8.
    """
    return _decode_object(cls, data, pos, end, layout_of(cls).name)


def _need(data_end: int, pos: int, n: int, where: str, what: str) -> None:
    if pos + n > data_end:
        raise wire_error(
            pos,
            where,
            Reason.BAD_PAYLOAD,
            f"{what} needs {n} bytes, only {max(data_end - pos, 0)} left",
        )


def _decode_object(cls: type, data, pos: int, end: int, where: str) -> tuple[Any, int]:
    lay = layout_of(cls)
    _need(end, pos, 1, where, "member count")
    count = data[pos]
    if count != len(lay.fields):
        detail = (
            "null object" if count == 255 else f"member count {count}, expected {len(lay.fields)}"
        )
        raise wire_error(pos, where, Reason.BAD_PAYLOAD, detail)
    pos += 1
    values = []
    for f in lay.fields:
        v, pos = decode_value(f.type, data, pos, end, f"{where}.{f.name}")
        values.append(v)
    return cls(*values), pos


def decode_value(t, data, pos: int, end: int, where: str) -> tuple[Any, int]:
    """Decode one value of field type ``t`` at ``data[pos:end]``; return it and the offset after it."""
    if isinstance(t, ScalarType):
        _need(end, pos, t.size, where, t.name)
        return struct.unpack_from("<" + t.struct_code, data, pos)[0], pos + t.size
    if isinstance(t, StrType):
        _need(end, pos, 4, where, "string header")
        first = _I32.unpack_from(data, pos)[0]
        if first == 0:
            return "", pos + 4
        if first == -1:
            raise wire_error(
                pos, where, Reason.BAD_PAYLOAD, "null string (Str fields are never null)"
            )
        if first > 0:
            raise wire_error(
                pos,
                where,
                Reason.BAD_PAYLOAD,
                "UTF-16 string form; ringgen reads only the UTF-8 form",
            )
        nbytes = ~first
        if nbytes > t.max_bytes:
            raise wire_error(
                pos,
                where,
                Reason.BAD_PAYLOAD,
                f"{nbytes} UTF-8 bytes exceed the bound {describe_type(t)}",
            )
        _need(end, pos, 8 + nbytes, where, "string")
        units = _I32.unpack_from(data, pos + 4)[0]
        raw = bytes(data[pos + 8 : pos + 8 + nbytes])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise wire_error(pos + 8 + exc.start, where, Reason.BAD_UTF8, exc.reason) from None
        if units != -1 and units != utf16_length(text, nbytes):
            raise wire_error(
                pos + 4,
                where,
                Reason.BAD_PAYLOAD,
                f"UTF-16 length {units}, the bytes hold {utf16_length(text, nbytes)}",
            )
        return text, pos + 8 + nbytes
    if isinstance(t, (ArrayType, ListType)):
        _need(end, pos, 4, where, "collection count")
        n = _I32.unpack_from(data, pos)[0]
        if n == -1:
            raise wire_error(
                pos, where, Reason.BAD_PAYLOAD, "null collection (never null in ringgen)"
            )
        if isinstance(t, ArrayType) and n != t.length:
            raise wire_error(
                pos, where, Reason.BAD_PAYLOAD, f"count {n}, Array length is {t.length}"
            )
        if isinstance(t, ListType) and not 0 <= n <= t.max_len:
            raise wire_error(pos, where, Reason.BAD_PAYLOAD, f"count {n} outside 0..{t.max_len}")
        pos += 4
        items = []
        for i in range(n):
            v, pos = decode_value(t.elem, data, pos, end, f"{where}[{i}]")
            items.append(v)
        return items, pos
    if isinstance(t, MessageType):
        if layout_of(t.cls).is_bridged:
            return _decode_object(t.cls, data, pos, end, where)
        s = direct_struct(t.cls)
        _need(end, pos, s.size, where, t.name)
        return unflatten_direct(t.cls, iter(s.unpack_from(data, pos))), pos + s.size
    raise TypeError(t)
