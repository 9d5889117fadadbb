"""Rejections: encoding names class, field and bound; decoding names offset, field and Reason."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import EncodeError, WireFormatError
from ringgen.layout import layout_of
from ringgen.protocol import Reason
from ringgen.types import Array, List, Str, f32, i32, u8
from ringgen.wire import encode_batch
from ringgen.wire.codec import decode_reference


@rg.message
class EInner:
    tag: Str[3]


@rg.message
class EMsg:
    id: i32
    name: Str[4]
    vals: List[f32, 2]
    arr: Array[u8, 2]
    inner: EInner


def ok() -> EMsg:
    return EMsg(1, "ab", [1.0], [1, 2], EInner("x"))


@pytest.mark.parametrize(
    "obj, match",
    [
        (
            EMsg(1, "abcde", [], [1, 2], EInner("")),
            r"EMsg\.name: Str\[4\] holds at most 4 UTF-8 bytes, got 5",
        ),
        (EMsg(1, "éé€", [], [1, 2], EInner("")), r"EMsg\.name: Str\[4\] .* got 7"),
        (
            EMsg(1, "", [1.0, 2.0, 3.0], [1, 2], EInner("")),
            r"EMsg\.vals: List\[f32, 2\] holds at most 2",
        ),
        (EMsg(1, "", [], [1, 2, 3], EInner("")), r"EMsg\.arr: Array of length 2 got 3"),
        (EMsg(1, "", [], [1, 2], EInner("four")), r"EMsg\.inner\.tag: Str\[3\]"),
        (EMsg(2**40, "", [], [1, 2], EInner("")), r"EMsg\.id: .* does not fit i32"),
        (EMsg(1, "\ud800", [], [1, 2], EInner("")), r"EMsg\.name: .*surrogate"),
        (EMsg(1, b"ab", [], [1, 2], EInner("")), r"EMsg\.name: Str\[4\] needs a str"),
        (EMsg(1, "", [], [1, 2], "x"), r"EMsg\.inner: expected a EInner"),
    ],
)
def test_encode_errors_name_class_field_and_bound(obj, match):
    with pytest.raises(EncodeError, match=match):
        rg.encode(obj)


def test_batch_encode_errors_name_field_and_row():
    view = np.zeros(3, dtype=layout_of(EMsg).dtype)
    view["name"]["len"][2] = 9
    with pytest.raises(EncodeError, match=r"EMsg\.name: row 2 has 9 UTF-8 bytes, the bound is 4"):
        encode_batch(EMsg, view)
    with pytest.raises(EncodeError, match=r"EMsg\.name: row 1 has 6 UTF-8 bytes"):
        encode_batch(
            EMsg,
            {
                "id": [1, 2],
                "name": ["ab", "abcdef"],
                "vals": [[], []],
                "arr": [[0, 0]] * 2,
                "inner": np.zeros(2, layout_of(EInner).dtype),
            },
        )
    view = np.zeros(1, dtype=layout_of(EMsg).dtype)
    view["name"]["len"][0] = 1
    view["name"]["data"][0, 0] = 0xFF
    with pytest.raises(EncodeError, match=r"EMsg\.name \(row 0\).*not UTF-8"):
        encode_batch(EMsg, view)  # nested bridged member: the per-message path
    flat = np.zeros(1, dtype=layout_of(EInner).dtype)
    flat["tag"]["len"][0] = 2
    flat["tag"]["data"][0, :2] = [0x41, 0xFF]
    with pytest.raises(EncodeError, match=r"EInner\.tag: row 0 is not UTF-8"):
        encode_batch(EInner, flat)  # the columnar path


def _refix(buf: bytearray) -> bytes:
    total = int.from_bytes(buf[4:12], "little")
    buf[40:44] = zlib.crc32(bytes(buf[256:total])).to_bytes(4, "little")
    return bytes(buf)


def _error(data) -> WireFormatError:
    with pytest.raises(WireFormatError) as info:
        rg.decode(EMsg, data)
    # the fast decoder hands every failure to the reference one: same error either way
    with pytest.raises(WireFormatError) as ref:
        decode_reference(EMsg, data)
    assert str(info.value) == str(ref.value)
    return info.value


def test_decode_errors_carry_offset_field_and_reason():
    good = bytearray(rg.encode(ok()))
    # cut short: the magic is there, the total size is more than the bytes given (HEADER_CHECKS)
    e = _error(bytes(good[:100]))
    assert (e.reason, e.offset, e.field) == (Reason.BAD_SIZE, 4, "EMsg.header.total_size")

    bad = bytearray(good)
    bad[0] = 0
    e = _error(bytes(bad))
    assert (e.reason, e.offset, e.field) == (Reason.BAD_MAGIC, 0, "EMsg.header.magic")

    bad = bytearray(good)
    bad[4:12] = (10**6).to_bytes(8, "little")
    e = _error(bytes(bad))
    assert (e.reason, e.field) == (Reason.BAD_SIZE, "EMsg.header.total_size")

    bad = bytearray(good)
    bad[28] ^= 1
    assert _error(bytes(bad)).reason == Reason.BAD_TYPE

    bad = bytearray(good)
    bad[-1] ^= 1
    e = _error(bytes(bad))
    assert (e.reason, e.offset) == (Reason.BAD_CRC, 40)

    # payload: 256 member count, 257 id, 261 name (~2, 2, "ab"), 271 vals count ...
    bad = bytearray(good)
    bad[256] = 255
    e = _error(_refix(bad))
    assert (e.reason, e.offset, e.field) == (Reason.BAD_PAYLOAD, 256, "EMsg")
    assert "null object" in str(e)

    bad = bytearray(good)
    bad[261:265] = (~5).to_bytes(4, "little", signed=True)
    e = _error(_refix(bad))
    assert (e.reason, e.offset, e.field) == (Reason.BAD_PAYLOAD, 261, "EMsg.name")
    assert "exceed the bound Str[4]" in str(e)

    bad = bytearray(good)
    bad[269] = 0xC0
    e = _error(_refix(bad))
    assert (e.reason, e.offset, e.field) == (Reason.BAD_UTF8, 269, "EMsg.name")

    bad = bytearray(good)
    bad[265] = 7  # UTF-16 length of "ab" is 2
    e = _error(_refix(bad))
    assert (e.reason, e.offset) == (Reason.BAD_PAYLOAD, 265)

    bad = bytearray(good)
    bad[261:265] = (3).to_bytes(4, "little")
    assert "UTF-16 string form" in str(_error(_refix(bad)))

    bad = bytearray(good)
    bad[271:275] = (-1).to_bytes(4, "little", signed=True)
    e = _error(_refix(bad))
    assert (e.reason, e.offset, e.field) == (Reason.BAD_PAYLOAD, 271, "EMsg.vals")

    bad = bytearray(good) + b"\0"
    bad[4:12] = (len(good) + 1).to_bytes(8, "little")
    e = _error(_refix(bad))
    assert (e.reason, e.offset) == (Reason.BAD_SIZE, len(good))

    bad = bytearray(good[:-1])
    bad[4:12] = (len(good) - 1).to_bytes(8, "little")
    e = _error(_refix(bad))
    assert e.reason == Reason.BAD_PAYLOAD and e.field == "EMsg.inner.tag"


def test_utf16_length_minus_one_means_unknown():
    good = bytearray(rg.encode(ok()))
    good[265:269] = (-1).to_bytes(4, "little", signed=True)
    assert rg.decode(EMsg, _refix(good)) == ok()


def test_decode_accepts_any_buffer():
    data = rg.encode(ok())
    assert rg.decode(EMsg, bytearray(data)) == ok()
    assert rg.decode(EMsg, memoryview(data)) == ok()
    assert rg.decode(EMsg, np.frombuffer(data, np.uint8)) == ok()


@rg.message
class EPt:
    x: f32
    y: f32


@rg.message
class EPoly:
    pts: List[EPt, 2]
    tag: Str[8]


@rg.message
class EGrid:
    cells: Array[EPt, 2]


def test_list_of_messages_error_spells_the_type_as_written():
    """The bound's type reads as the user declared it, not as the repr of ringgen's type objects."""
    with pytest.raises(EncodeError) as info:
        rg.encode(EPoly(pts=[EPt(1, 2)] * 3, tag="a"))
    assert info.value.message == "EPoly.pts: List[EPt, 2] holds at most 2 elements, got 3"


def test_direct_array_of_messages_error_spells_the_type_as_written():
    with pytest.raises(EncodeError) as info:
        rg.encode(EGrid(cells=5))
    assert info.value.message == "EGrid.cells: Array[EPt, 2] needs a sequence, got int 5"


def test_describe_type_is_the_declared_spelling():
    lay = layout_of(EMsg)
    spelled = {f.name: rg.types.describe_type(f.type) for f in lay.fields}
    assert spelled == {
        "id": "i32",
        "name": "Str[4]",
        "vals": "List[f32, 2]",
        "arr": "Array[u8, 2]",
        "inner": "EInner",
    }
    assert rg.types.describe_type(layout_of(EPoly).fields[0].type) == "List[EPt, 2]"
