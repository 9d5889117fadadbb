"""What every generated ``bridged.py`` shares: the header's ``struct``, the fast paths' guards and
their way out to the reference codec.

A generated module keeps only what is specific to its messages (their ``struct`` formats, encoders and
decoders) and imports these names under the underscore aliases its code uses (``_HEADER``, ``_Bad``,
...), so that they never meet a user's class name in its namespace. Imported names are module
globals of the generated module, as its own definitions were: the hot paths read them as fast.

The fast paths only recognise well-formed input; on anything else they raise one of
``FAST_ERRORS`` and the caller hands the message to the reference codec (``ringgen.wire.memorypack``),
which gives the same bytes or the precise ``EncodeError``/``WireFormatError``.
"""

from __future__ import annotations

import struct
import time
import zlib
from typing import Any

from . import header as _header
from . import memorypack as _mp
from .direct import flatten_value, unflatten_direct

__all__ = [
    "FAST_ERRORS",
    "HEADER",
    "I32",
    "MAGIC",
    "TICKS_AT_UNIX_EPOCH",
    "Bad",
    "bad",
    "check_array",
    "check_bool",
    "crc32",
    "flat",
    "pack",
    "ref_decode",
    "ref_encode",
    "time_ns",
    "unflat",
    "unpack_from",
    "utf16",
]

#: The 256-byte header in one ``struct``: its fields (``ringgen.wire.header``), then zeros.
HEADER = struct.Struct(
    _header.HEADER_STRUCT.format + f"{_header.HEADER_SIZE - _header.HEADER_USED}x"
)
assert HEADER.size == _header.HEADER_SIZE
I32 = struct.Struct("<i")
MAGIC = _header.MAGIC
TICKS_AT_UNIX_EPOCH = _header.TICKS_AT_UNIX_EPOCH
crc32 = zlib.crc32
time_ns = time.time_ns
pack = struct.pack
unpack_from = struct.unpack_from
#: UTF-16 code units of a str; the generated call sites test for ASCII inline and call it otherwise.
utf16 = _mp.utf16_units


class Bad(Exception):
    """Raised by a fast path that met input it does not handle (the reference codec then decides)."""


#: What a fast path may raise on bad input; the reference codec then says precisely what is wrong.
FAST_ERRORS = (struct.error, TypeError, ValueError, AttributeError, IndexError, OverflowError, Bad)


def bad() -> Any:
    """Raise ``Bad`` (an expression's way out, where ``raise`` cannot be written)."""
    raise Bad


def check_bool(v: Any) -> bool:
    """``v`` when it is a bool (``struct`` would take any object's truth value for ``?``)."""
    if v is True or v is False:
        return v
    raise Bad


def check_array(v: Any, n: int) -> Any:
    """``v`` when it holds exactly ``n`` elements (a short and a long Array could pack together)."""
    if len(v) != n or isinstance(v, str):
        raise Bad
    return v


def flat(t: Any, value: Any) -> list:
    """The scalars of one fixed-size value of type ``t`` in struct order (``ringgen.wire.direct``)."""
    out: list = []
    flatten_value(t, value, out, "")
    return out


def unflat(cls: type, values: Any) -> Any:
    """The direct message ``cls`` rebuilt from its scalars in struct order."""
    return unflatten_direct(cls, iter(values))


def ref_encode(t: Any, value: Any, where: str) -> bytes:
    """The MemoryPack bytes of one value of type ``t`` by the reference encoder."""
    out = bytearray()
    _mp.encode_value(t, value, out, where)
    return bytes(out)


def ref_decode(t: Any, d: Any, p: int, where: str) -> Any:
    """The value of type ``t`` at ``d[p:]`` by the reference decoder: ``(value, offset after it)``."""
    return _mp.decode_value(t, d, p, len(d), where)
