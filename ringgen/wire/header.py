"""The 256-byte header every bridged message starts with (docs/wire-format.md).

Packed and little-endian, as the seed lays it out: magic ``0xDCF1`` (u32 at 0), total message size
(u64 at 4), timestamp in .NET UTC ticks (u64 at 12), sender (u32 at 20), receiver (u32 at 24), then
228 reserved bytes. ringgen uses a prefix of the reserved area (type id, sequence number, payload
CRC32, flags, reason) and keeps the rest zero, but for one word a graph may stamp: ``HEADER_HLC``,
the message's hybrid logical clock (u64 at 56; ringgen.causal), zero when unstamped.
"""

from __future__ import annotations

import datetime as _dt
import enum
import numbers
import struct
import time
from typing import Any

import attrs
import numpy as np

from ..errors import EncodeError
from ..protocol import Reason

__all__ = [
    "HEADER_CHECKS",
    "HEADER_DTYPE",
    "HEADER_FIELDS",
    "HEADER_HLC",
    "HEADER_SIZE",
    "HEADER_STRUCT",
    "HEADER_USED",
    "Header",
    "check_header_values",
    "HeaderFlag",
    "MAGIC",
    "TICKS_AT_UNIX_EPOCH",
    "datetime_from_ticks",
    "now_ticks",
    "read_hlc",
    "ticks_from_datetime",
    "write_hlc",
]

MAGIC = 0xDCF1
HEADER_SIZE = 256

#: .NET counts 100 ns ticks from 0001-01-01 00:00 UTC; this is 1970-01-01 in those ticks.
TICKS_AT_UNIX_EPOCH = 621_355_968_000_000_000

#: (name, struct code, offset, meaning): every header field, in order; the struct packs them with no
#: padding, so each offset is the sum of the sizes before it.
HEADER_FIELDS: tuple[tuple[str, str, int, str], ...] = (
    ("magic", "I", 0, "0xDCF1"),
    ("total_size", "Q", 4, "header + payload, in bytes"),
    ("timestamp", "Q", 12, "UTC ticks: 100 ns since 0001-01-01 (.NET DateTime.Ticks)"),
    ("sender", "I", 20, "sender id"),
    ("receiver", "I", 24, "receiver id"),
    (
        "type_id",
        "I",
        28,
        "MessageLayout.type_id of the payload's class (reserved area from here on)",
    ),
    ("sequence", "Q", 32, "sender's sequence number"),
    ("payload_crc", "I", 40, "CRC-32 (IEEE, zlib.crc32) of the payload bytes"),
    ("flags", "I", 44, "HeaderFlag bits"),
    ("reason", "I", 48, "ringgen.protocol.Reason of a dead letter, else 0"),
)

HEADER_STRUCT = struct.Struct("<" + "".join(f[1] for f in HEADER_FIELDS))

#: Bytes of the header ringgen writes; the rest (up to 256) stay zero.
HEADER_USED = HEADER_STRUCT.size

#: The header as a packed numpy record (the first HEADER_USED bytes of a slot).
HEADER_DTYPE = np.dtype(
    {
        "names": [f[0] for f in HEADER_FIELDS],
        "formats": ["<u4" if f[1] == "I" else "<u8" for f in HEADER_FIELDS],
        "offsets": [f[2] for f in HEADER_FIELDS],
        "itemsize": HEADER_SIZE,
    }
)

assert [f[2] for f in HEADER_FIELDS] == [
    struct.calcsize("<" + "".join(g[1] for g in HEADER_FIELDS[:i]))
    for i in range(len(HEADER_FIELDS))
], "HEADER_FIELDS offsets must match the packed struct"


#: The reserved-tail word a graph stamps a bridged message's hybrid logical clock into (name, struct
#: code, offset, meaning): after ``HEADER_USED``, 8-aligned (52..55 stay zero) so that a device can
#: read and write it as one u64. It is not in ``HEADER_FIELDS``: an encoder leaves it zero ("no
#: stamp") and a decoder does not check it; the hops of a graph that carry bridged messages between
#: stages on the device set it (docs/graphs.md, "Ordering guarantees").
HEADER_HLC: tuple[str, str, int, str] = (
    "hlc",
    "Q",
    56,
    "hybrid logical clock: 48-bit microseconds since 2026-01-01 UTC, 16-bit counter; 0 = none",
)

assert HEADER_HLC[2] >= HEADER_USED and HEADER_HLC[2] % 8 == 0 and HEADER_HLC[2] + 8 <= HEADER_SIZE


def read_hlc(data: Any, offset: int = 0) -> int:
    """The HLC stamp in the header of the bridged message at ``offset`` of ``data`` (0: none)."""
    return struct.unpack_from("<Q", data, offset + HEADER_HLC[2])[0]


def write_hlc(data: Any, stamp: int, offset: int = 0) -> None:
    """Stamp the header of the bridged message at ``offset`` of the writable buffer ``data``.

    Raises:
        EncodeError: ``stamp`` is not an integer in the u64 range.
    """
    check_header_values("write_hlc", hlc=stamp)
    struct.pack_into("<Q", data, offset + HEADER_HLC[2], int(stamp))


#: The checks every decoder makes on a bridged message's header, in this order; the first that fails
#: names the ``Reason`` (docs/wire-format.md, "Validation and the Reasons"). ``rg.decode``, the cpu
#: backend and the device codec (``templates/common/bridged_codec.h.j2``, rendered from this table)
#: all follow it, so every backend counts the same bytes under the same Reason. Bytes the data does
#: not have read as zero, as they do in a zero-padded queue slot: a short input fails on its magic
#: first, like the device's slot would. Each entry: (header field, Reason, what must hold).
HEADER_CHECKS: tuple[tuple[str, Reason, str], ...] = (
    ("magic", Reason.BAD_MAGIC, f"magic == 0x{MAGIC:04X}"),
    (
        "total_size",
        Reason.BAD_SIZE,
        f"{HEADER_SIZE} <= total_size <= the slot size (and, on the host, the bytes given)",
    ),
    ("type_id", Reason.BAD_TYPE, "type_id is the expected class's MessageLayout.type_id"),
    (
        "payload_crc",
        Reason.BAD_CRC,
        f"payload_crc == CRC-32 of bytes {HEADER_SIZE} .. total_size (the payload)",
    ),
)


class HeaderFlag(enum.IntFlag):
    """Bits of the header's ``flags`` word."""

    NONE = 0
    DEAD_LETTER = 1  # returned to the host because validation failed; ``reason`` says why


@attrs.frozen
class Header:
    """A decoded header: every field of ``HEADER_FIELDS`` by name."""

    magic: int = MAGIC
    total_size: int = HEADER_SIZE
    timestamp: int = 0
    sender: int = 0
    receiver: int = 0
    type_id: int = 0
    sequence: int = 0
    payload_crc: int = 0
    flags: int = 0
    reason: int = 0

    @property
    def payload_size(self) -> int:
        return self.total_size - HEADER_SIZE

    @property
    def datetime(self) -> _dt.datetime:
        """The timestamp as an aware UTC datetime."""
        return datetime_from_ticks(self.timestamp)

    @classmethod
    def unpack(cls, data, offset: int = 0) -> "Header":
        """Read the header at ``offset`` of ``data`` (no validation: see ``ringgen.wire.decode``)."""
        return cls(*HEADER_STRUCT.unpack_from(data, offset))

    @classmethod
    def unpack_padded(cls, data) -> "Header":
        """Read the header at the start of ``data``, bytes it does not have taken as zero (as in a
        zero-padded queue slot)."""
        head = bytes(memoryview(data).cast("B")[:HEADER_USED])
        return cls(*HEADER_STRUCT.unpack(head.ljust(HEADER_USED, b"\0")))

    def pack(self) -> bytes:
        """The full 256 bytes, reserved tail zeroed."""
        return HEADER_STRUCT.pack(*attrs.astuple(self)) + bytes(HEADER_SIZE - HEADER_USED)


def check_header_values(what: str, rows: int = 1, **values: Any) -> None:
    """Check header values a caller gave (``sender=...``) against their fields' ranges.

    Args:
        what: the message class (or call) for the message.
        rows: how many messages get the values; row i gets ``sequence + i``, so the last one must fit.
        values: header fields by name (``HEADER_FIELDS``); None means "the default" and passes.

    Raises:
        EncodeError: a value is not an integer or is outside its field's range, naming the field.
    """
    codes = {name: code for name, code, _, _ in HEADER_FIELDS + (HEADER_HLC,)}
    for name, value in values.items():
        if value is None:
            continue
        bits = 32 if codes[name] == "I" else 64
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise EncodeError(
                f"{what}: header field {name}={value!r} is not an integer (u{bits})",
                hint=f"pass an int in 0..{2**bits - 1}",
            )
        top = 2**bits - 1 - (rows - 1 if name == "sequence" else 0)
        if not 0 <= int(value) <= top:
            last = f" for {rows} rows (row i gets sequence + i)" if top != 2**bits - 1 else ""
            raise EncodeError(
                f"{what}: header field {name}={int(value)} is outside 0..{top}{last} (u{bits})",
                hint=f"pass an int in 0..{top}",
            )


def now_ticks() -> int:
    """The current UTC time in .NET ticks."""
    return time.time_ns() // 100 + TICKS_AT_UNIX_EPOCH


def ticks_from_datetime(value: _dt.datetime) -> int:
    """.NET ticks of ``value`` (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    delta = value - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (
        TICKS_AT_UNIX_EPOCH
        + (delta.days * 86_400 + delta.seconds) * 10_000_000
        + delta.microseconds * 10
    )


def datetime_from_ticks(ticks: int) -> _dt.datetime:
    """The aware UTC datetime of ``ticks`` (microsecond resolution)."""
    return _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(
        microseconds=(ticks - TICKS_AT_UNIX_EPOCH) // 10
    )
