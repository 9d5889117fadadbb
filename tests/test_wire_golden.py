"""Golden byte vectors for every payload shape, derived by hand from MemoryPack's specification.

MemoryPack's README ("Binary wire format specification"), which these bytes follow, says:
  * unmanaged struct: the struct's memory as is, padding included (ringgen writes padding as zeros);
  * object: ``(byte memberCount, [values...])``;
  * collection: ``(int length, [values...])``, ``-1`` is null;
  * string: ``0`` is empty; else ``(int ~utf8ByteCount, int utf16Length, utf8Bytes)``;
  * everything little-endian.
Each test spells the expected payload byte by byte with a comment saying where each byte comes from,
and checks both directions (encode gives these bytes; decode gives the object back) on the generated
fast codec and on the reference codec.
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib

import pytest

import ringgen as rg
from ringgen.layout import layout_of
from ringgen.types import Array, List, Str, bool_, f32, f64, i8, i32, u8, u16, u64
from ringgen.wire import Header, HeaderFlag, codec_for
from ringgen.wire.codec import decode_reference, encode_reference
from ringgen.wire.header import (
    HEADER_FIELDS,
    HEADER_HLC,
    HEADER_SIZE,
    HEADER_USED,
    datetime_from_ticks,
    read_hlc,
    ticks_from_datetime,
    write_hlc,
)


@rg.message
class GWord:
    text: Str[8]


@rg.message
class GFloats:
    values: List[f32, 4]


@rg.message
class GScalars:
    a: i8
    b: u16
    c: i32
    d: u64
    e: f64
    f: bool_
    g: Str[2]  # makes the message bridged


@rg.message
class GPt:
    a: u8
    b: i32


@rg.message
class GWithStruct:
    p: GPt
    s: Str[4]


@rg.message
class GInner:
    name: Str[4]


@rg.message
class GOuter:
    inner: GInner
    n: u8


@rg.message
class GArr:
    v: Array[u16, 3]
    tag: Str[2]


@rg.message
class GListObj:
    items: List[GInner, 3]


def payload(obj) -> bytes:
    """Encode with both codecs, check they agree, return the payload (after the 256-byte header)."""
    fast = rg.encode(obj, timestamp=0)
    ref = encode_reference(type(obj), obj, timestamp=0)
    assert fast == ref
    assert rg.decode(type(obj), fast) == obj
    assert decode_reference(type(obj), fast) == obj
    return fast[HEADER_SIZE:]


# fmt: off
# (the byte layout, one field per line with its derivation, is the point of these vectors)
CASES = [
    (GWord("hi"), bytes([
        0x01,                    # object: 1 member
        0xFD, 0xFF, 0xFF, 0xFF,  # ~2 = -3: UTF-8 form, 2 bytes
        0x02, 0x00, 0x00, 0x00,  # UTF-16 length 2
        0x68, 0x69,              # "hi"
    ])),
    (GWord(""), bytes([
        0x01,                    # object: 1 member
        0x00, 0x00, 0x00, 0x00,  # 0: the empty string, nothing follows
    ])),
    (GWord("é😀"), bytes([
        0x01,
        0xF9, 0xFF, 0xFF, 0xFF,              # ~6 = -7: 6 UTF-8 bytes
        0x03, 0x00, 0x00, 0x00,              # UTF-16: é is 1 unit, U+1F600 a surrogate pair (2)
        0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80,  # UTF-8 of é, then of U+1F600
    ])),
    (GFloats([1.0, -2.0]), bytes([
        0x01,
        0x02, 0x00, 0x00, 0x00,  # collection of 2
        0x00, 0x00, 0x80, 0x3F,  # 1.0f
        0x00, 0x00, 0x00, 0xC0,  # -2.0f
    ])),
    (GFloats([]), bytes([0x01, 0x00, 0x00, 0x00, 0x00])),  # an empty collection: count 0
    (GScalars(-1, 0x1234, -2, 1 << 40, 0.5, True, ""), bytes([
        0x07,                                            # 7 members
        0xFF,                                            # i8 -1
        0x34, 0x12,                                      # u16 0x1234
        0xFE, 0xFF, 0xFF, 0xFF,                          # i32 -2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,  # u64 2**40
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xE0, 0x3F,  # f64 0.5
        0x01,                                            # bool true
        0x00, 0x00, 0x00, 0x00,                          # empty string
    ])),
    (GWithStruct(GPt(7, 0x01020304), "ab"), bytes([
        0x02,
        0x07, 0x00, 0x00, 0x00,  # unmanaged GPt: a = 7, then 3 padding bytes (zero)
        0x04, 0x03, 0x02, 0x01,  #   b = 0x01020304 at offset 4
        0xFD, 0xFF, 0xFF, 0xFF, 0x02, 0x00, 0x00, 0x00, 0x61, 0x62,  # "ab"
    ])),
    (GOuter(GInner("x"), 5), bytes([
        0x02,                    # GOuter: 2 members
        0x01,                    # GInner (a nested object): 1 member
        0xFE, 0xFF, 0xFF, 0xFF,  # ~1: one UTF-8 byte
        0x01, 0x00, 0x00, 0x00,  # UTF-16 length 1
        0x78,                    # "x"
        0x05,                    # n
    ])),
    (GArr([1, 2, 3], ""), bytes([
        0x02,
        0x03, 0x00, 0x00, 0x00,              # an Array is a collection: count 3
        0x01, 0x00, 0x02, 0x00, 0x03, 0x00,  # u16 elements
        0x00, 0x00, 0x00, 0x00,              # empty string
    ])),
    (GListObj([GInner("a"), GInner("")]), bytes([
        0x01,
        0x02, 0x00, 0x00, 0x00,                                      # 2 objects
        0x01, 0xFE, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x00, 0x00, 0x61,  # GInner("a")
        0x01, 0x00, 0x00, 0x00, 0x00,                                # GInner("")
    ])),
]
# fmt: on


@pytest.mark.parametrize(
    "obj, expected", CASES, ids=[type(c[0]).__name__ + str(i) for i, c in enumerate(CASES)]
)
def test_payload_bytes(obj, expected):
    assert payload(obj) == expected


def test_max_payload_bounds_every_case():
    for obj, expected in CASES:
        assert len(expected) <= layout_of(type(obj)).max_payload


def test_header_bytes():
    ts = ticks_from_datetime(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    assert ts == 638396640000000000  # .NET: new DateTime(2024, 1, 1).Ticks
    data = rg.encode(GWord("hi"), sender=1, receiver=2, sequence=3, timestamp=ts)
    tid = layout_of(GWord).type_id
    crc = zlib.crc32(data[HEADER_SIZE:])
    # fmt: off
    expected = (
        bytes([0xF1, 0xDC, 0x00, 0x00])        # magic 0xDCF1, u32 at 0
        + (256 + 11).to_bytes(8, "little")     # total size, u64 at 4
        + ts.to_bytes(8, "little")             # timestamp, u64 at 12
        + bytes([1, 0, 0, 0])                  # sender, u32 at 20
        + bytes([2, 0, 0, 0])                  # receiver, u32 at 24
        + tid.to_bytes(4, "little")            # type id, u32 at 28
        + (3).to_bytes(8, "little")            # sequence, u64 at 32
        + crc.to_bytes(4, "little")            # payload CRC-32, u32 at 40
        + bytes(4)                             # flags, u32 at 44
        + bytes(4)                             # reason, u32 at 48
        + bytes(256 - 52)                      # the rest of the reserved area is zero
    )
    # fmt: on
    assert data[:HEADER_SIZE] == expected
    h = Header.unpack(data)
    assert (h.sender, h.receiver, h.sequence, h.type_id, h.payload_size) == (1, 2, 3, tid, 11)
    assert h.datetime == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert datetime_from_ticks(ts).year == 2024
    assert rg.decode(GWord, data, with_header=True) == (h, GWord("hi"))


def test_header_field_table_matches_the_seed_layout():
    offsets = {name: off for name, _, off, _ in HEADER_FIELDS}
    assert offsets["magic"] == 0 and offsets["total_size"] == 4 and offsets["timestamp"] == 12
    assert offsets["sender"] == 20 and offsets["receiver"] == 24 and offsets["type_id"] == 28
    assert HeaderFlag.DEAD_LETTER == 1


def test_default_timestamp_is_now():
    before = ticks_from_datetime(dt.datetime.now(dt.timezone.utc))
    h = Header.unpack(rg.encode(GWord("x")))
    after = ticks_from_datetime(dt.datetime.now(dt.timezone.utc))
    assert before - 10_000_000 <= h.timestamp <= after + 10_000_000


def test_direct_message_bytes_are_its_c_struct():
    data = rg.encode(GPt(7, -1))
    assert data == bytes([7, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])  # u8, 3 padding bytes, i32
    assert data == struct.pack("<B3xi", 7, -1)
    assert rg.decode(GPt, data) == GPt(7, -1)
    assert codec_for(GPt).bridged is False
    with pytest.raises(rg.WireFormatError):
        rg.decode(GPt, data[:7])
    with pytest.raises(rg.RinggenError, match="direct message"):
        rg.encode(GPt(1, 2), sender=3)


def test_the_hlc_word_sits_in_the_reserved_tail_zero_until_stamped():
    assert HEADER_HLC[:3] == ("hlc", "Q", 56)
    assert HEADER_USED <= 56 and all(
        off + 8 <= 56 for _, code, off, _ in HEADER_FIELDS if code == "Q"
    )
    data = bytearray(rg.encode(GWord("hi"), sender=1, receiver=2, sequence=3))
    assert read_hlc(data) == 0 and data[HEADER_USED:HEADER_SIZE] == bytes(HEADER_SIZE - HEADER_USED)
    write_hlc(data, 0x0123_4567_89AB_CDEF)
    assert data[56:64] == bytes.fromhex("efcdab8967452301")  # little-endian u64 at 56
    assert read_hlc(data) == 0x0123_4567_89AB_CDEF
    assert rg.decode(GWord, bytes(data)) == GWord("hi")  # decoders do not check the word
    with pytest.raises(rg.EncodeError, match="hlc=-1 is outside"):
        write_hlc(data, -1)
