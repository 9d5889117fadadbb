"""The per-message native decoder (``decode_at`` in _encoder.c, via native_ext.fast_decoder) against
the generated Python decoder.

Every comparison decodes the same bytes both ways: the native result must equal the Python one with
the same Python type at every level (ints, floats bit for bit, bools, str, list, the classes), and
whatever the Python decoder raises (type, message, offset, field, reason) the native path must
raise too. Schemas come from ``ringgen.testing.schemas`` and messages from
``ringgen.testing.messages``; the corruptions hit every byte of the header and the payload.
"""

from __future__ import annotations

import functools
import struct
import sys
import zlib
from pathlib import Path

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ringgen as rg
from ringgen import types as rtypes
from ringgen.errors import WireFormatError
from ringgen.layout import layout_of
from ringgen.testing.messages import random_messages
from ringgen.testing.schemas import TypeDecl, bridged_fields, message_decls
from ringgen.types import Array, List, ListType, MessageType, Str, StrType, bool_, f32, f64, i8
from ringgen.types import i16, i32, i64, u8, u16, u32, u64
from ringgen.wire import codec_for, native_ext
from ringgen.wire.codec import BridgedCodec

from conftest import make_message, unique_name

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # the examples package lives at the repository root
    sys.path.insert(0, ROOT)

from examples.list_reduce import Samples  # noqa: E402
from examples.orders import Customer, Order, OrderLine  # noqa: E402
from examples.word_stats import Word, WordStat  # noqa: E402

needs_ext = pytest.mark.skipif(
    native_ext.module() is None, reason="no C compiler or Python headers: Python path only"
)

_SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
_HEADER = 256


@rg.message
class DAll:
    """Every scalar type, a Str, Lists and an Array: every step kind of the program."""

    a: i8
    b: i16
    c: i32
    d: i64
    e: u8
    f: u16
    g: u32
    h: u64
    x: f32
    y: f64
    ok: bool_
    name: Str[12]
    vals: List[f32, 5]
    ids: List[u16, 4]
    flags: List[bool_, 3]
    arr: Array[i32, 3]


def _python(cls: type):
    """The generated decoder of ``cls`` (what the native decoder falls back to)."""
    return codec_for(cls)._python_decode


def _native(cls: type):
    """A native decoder of ``cls`` with the generated decoder as its fallback."""
    fast = native_ext.fast_decoder(cls, _python(cls))
    assert fast is not None, f"{cls.__name__} should be covered by the native decoder"
    return fast


def _native_only(cls: type):
    """The native decoder of ``cls`` whose fallback fails the test: for a well-formed message the
    object must come from C."""

    def no_fallback(data):
        raise AssertionError(f"native decoder fell back for {bytes(data)!r}")

    return native_ext.fast_decoder(cls, no_fallback)


def _typed(v):
    """``v`` with its Python type at every level, floats as their bits (NaN == NaN here)."""
    if attrs.has(type(v)):
        return (type(v), tuple(_typed(getattr(v, f.name)) for f in attrs.fields(type(v))))
    if isinstance(v, list):
        return (list, [_typed(x) for x in v])
    if isinstance(v, float):
        return (float, struct.pack("<d", v))
    return (type(v), v)


def _outcome(fn, *args):
    try:
        return ("ok", _typed(fn(*args)))
    except Exception as exc:  # the point is to compare whatever both paths raise
        return (
            type(exc),
            str(exc),
            getattr(exc, "offset", None),
            getattr(exc, "field", None),
            getattr(exc, "reason", None),
        )


def _same(cls: type, data) -> tuple:
    """Decode ``data`` natively and in Python, in place and at an offset of a larger buffer; assert
    the outcomes are equal and return the Python one."""
    want = _outcome(_python(cls), data)
    fast = _native(cls)
    assert _outcome(fast, data) == want
    raw = bytes(memoryview(data).cast("B")) if not isinstance(data, bytes) else data
    slot = layout_of(cls).slot_size
    # a ring slot at a non-zero offset, with other bytes around it: what bridged_fast reads
    ring = np.random.default_rng(len(raw)).integers(0, 256, 2 * slot + 64, dtype=np.uint8)
    at = slot + 7
    ring[at : at + slot] = 0
    ring[at : at + min(len(raw), slot)] = np.frombuffer(raw[:slot], np.uint8)
    in_slot = _outcome(_python(cls), ring[at : at + slot].tobytes())
    assert _outcome(fast, memoryview(ring), at, slot) == in_slot
    assert _outcome(codec_for(cls).unpack, ring, at) == in_slot
    return want


# ---------------------------------------------------------------------------- schemas


def _rtype(t: TypeDecl, classes: dict):
    """The ringgen type a ``ringgen.testing.schemas`` declaration spells."""
    if t.kind == "scalar":
        return getattr(rtypes, t.name)
    if t.kind == "str":
        return StrType(t.length)
    if t.kind == "list":
        return ListType(_rtype(t.elem, classes), t.length)
    if t.kind == "message":
        return classes[t.name]
    return rtypes.ArrayType(_rtype(t.elem, classes), t.length)


def _declare(decl, classes: dict) -> type:
    for inner in decl.nested:
        if inner.name not in classes:
            _declare(inner, classes)
    fields = {name: _rtype(t, classes) for name, t in decl.fields}
    classes[decl.name] = make_message(decl.name, fields)
    return classes[decl.name]


@st.composite
def _schemas(draw, depth: int = 0) -> type:
    """A bridged class from ``message_decls`` (scalars, arrays, Str, List), sometimes holding a
    nested bridged class and a List of it (drawn the same way, one level down)."""
    classes: dict = {}
    decl = draw(message_decls(unique_name("ND"), max_fields=4, bridged=draw(st.integers(1, 3))))
    cls = _declare(decl, classes)
    if depth < 2 and draw(st.booleans()):
        inner = draw(_schemas(depth + 1))
        extra = {
            "inner": inner,
            "inners": ListType(inner, draw(st.integers(1, 3))),
            "tail": StrType(draw(st.integers(1, 8))),
        }
        fields = {f.name: f.type for f in layout_of(cls).fields}
        cls = make_message(unique_name("NDo"), {**fields, **extra})
    return cls


def _messages(cls: type, seed: int, n: int = 3) -> list:
    """``n`` messages of ``cls`` from ``ringgen.testing.messages`` (boundary values, NaNs, full and
    empty Str and List fields, multi-byte UTF-8)."""
    return codec_for(cls).from_array(random_messages(cls, n, seed))


# ---------------------------------------------------------------------------- round trips


@needs_ext
@settings(max_examples=40, **_SETTINGS)
@given(st.data())
def test_random_schemas_decode_as_the_python_decoder(data):
    cls = data.draw(_schemas())
    if native_ext.program_for(cls) is None:  # an array of arrays: not covered, Python decodes
        codec = BridgedCodec(cls, codec_for(cls).encode, _python(cls))
        assert codec.decoder() is _python(cls)
        return
    for msg in _messages(cls, data.draw(st.integers(0, 2**32 - 1))):
        wire = rg.encode(msg, sender=1, receiver=2, sequence=3, timestamp=4)
        want = _same(cls, wire)
        assert want[0] == "ok"
        assert _outcome(_native_only(cls), wire) == want


@needs_ext
@pytest.mark.parametrize("cls", [Word, WordStat, Samples, Order, DAll])
def test_example_messages_come_from_c_with_the_same_types(cls):
    for msg in _messages(cls, 7, n=20):
        wire = rg.encode(msg, timestamp=5)
        want = _outcome(_python(cls), wire)
        assert want[0] == "ok"
        assert _outcome(_native_only(cls), wire) == want
        # a zero-padded slot, a bytearray, a uint8 array, a memoryview: the same message
        slot = bytearray(layout_of(cls).slot_size)
        slot[: len(wire)] = wire
        for data in (slot, np.frombuffer(bytes(slot), np.uint8), memoryview(wire)):
            assert _outcome(_native_only(cls), data) == want


@needs_ext
def test_scalar_types_are_the_python_decoders():
    msg = DAll(
        -128, -32768, -(2**31), -(2**63), 255, 65535, 2**32 - 1, 2**64 - 1, float("nan"),
        -0.0, True, "日本😀", [1.5, float("inf")], [0, 65535], [True, False, True], [1, -2, 3],
    )  # fmt: skip
    wire = bytearray(rg.encode(msg, timestamp=1))
    got = _native_only(DAll)(bytes(wire))
    assert _typed(got) == _typed(_python(DAll)(bytes(wire)))
    assert type(got.h) is int and type(got.x) is float and got.ok is True
    assert type(got.vals) is list and type(got.arr) is list and got.flags == [True, False, True]
    # a bool byte other than 0/1 reads as True on both paths (struct's "?")
    ok_at = _HEADER + 1 + 1 + 2 + 4 + 8 + 1 + 2 + 4 + 8 + 4 + 8
    wire[ok_at] = 7
    wire[40:44] = struct.pack("<I", zlib.crc32(bytes(wire[_HEADER:])))
    assert _same(DAll, bytes(wire)) == ("ok", _typed(msg))


@needs_ext
def test_classes_of_many_fields_decode_natively():
    """More members than the decoder's on-stack argument array holds (16)."""
    fields = {f"v{i}": (u16 if i % 2 else StrType(3)) for i in range(40)}
    cls = make_message(unique_name("NDwide"), fields)
    msg = cls(*[(i if i % 2 else str(i % 10)) for i in range(40)])
    wire = rg.encode(msg, timestamp=1)
    assert _outcome(_native_only(cls), wire) == ("ok", _typed(msg))
    bad = bytearray(wire)
    bad[-1] ^= 0xFF
    _same(cls, bytes(_recrc(bad)))


# ---------------------------------------------------------------------------- corrupt inputs


def _recrc(wire: bytearray) -> bytearray:
    """``wire`` with its header's CRC made right again (so the payload checks run)."""
    total = struct.unpack_from("<Q", wire, 4)[0]
    end = total if _HEADER <= total <= len(wire) else len(wire)
    wire[40:44] = struct.pack("<I", zlib.crc32(bytes(wire[_HEADER:end])))
    return wire


@needs_ext
@settings(max_examples=150, **_SETTINGS)
@given(st.data())
def test_corruptions_raise_the_python_decoders_error(data):
    cls = data.draw(st.sampled_from([Word, WordStat, Samples, Order, DAll]))
    msg = _messages(cls, data.draw(st.integers(0, 2**32 - 1)), n=1)[0]
    wire = bytearray(rg.encode(msg, timestamp=9))
    kind = data.draw(st.sampled_from(["flip", "flip+crc", "word+crc", "cut", "total", "pad"]))
    if kind in ("flip", "flip+crc"):  # any bit of the header or the payload
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(wire) - 1))
            wire[at] ^= 1 << data.draw(st.integers(0, 7))
        if kind == "flip+crc":
            _recrc(wire)
    elif kind == "word+crc":  # a length or count from the wire: huge, negative, just past the end
        at = data.draw(st.integers(_HEADER, len(wire) - 1))
        word = data.draw(
            st.sampled_from([2**31 - 1, -(2**31), -1, -2, 1 << 20, len(wire), 0x7FFF, 65536])
        )
        room = len(wire) - at
        wire[at : at + min(4, room)] = struct.pack("<i", word)[:room]
        _recrc(wire)
    elif kind == "cut":  # truncated anywhere, header included
        wire = wire[: data.draw(st.integers(0, len(wire) - 1))]
    elif kind == "total":  # total sizes below, at and past the slot
        slot = layout_of(cls).slot_size
        total = data.draw(
            st.sampled_from([0, 255, 256, len(wire) - 1, len(wire) + 1, slot, slot + 1])
        )
        wire[4:12] = struct.pack("<Q", total)
        if data.draw(st.booleans()):
            _recrc(wire)
    else:  # bytes past the total size (a slot's padding): ignored by both, whatever they are
        wire += bytes(data.draw(st.binary(min_size=1, max_size=64)))
    _same(cls, bytes(wire))


@needs_ext
@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda w: w.__setitem__(slice(0, 4), b"\0\0\0\0"), "BAD_MAGIC"),
        (lambda w: w.__setitem__(slice(28, 32), b"\1\2\3\4"), "BAD_TYPE"),
        (lambda w: w.__setitem__(slice(40, 44), b"\0\0\0\0"), "BAD_CRC"),
        (lambda w: _recrc(w.__setitem__(slice(265, 269), b"\xff\xff\xff\x7f") or w), "BAD_PAYLOAD"),
        (lambda w: _recrc(w.__setitem__(256, 9) or w), "BAD_PAYLOAD"),
    ],
)
def test_named_errors_are_the_python_decoders(edit, reason):
    wire = bytearray(rg.encode(Word(1, "héllo"), timestamp=1))
    edit(wire)
    want = _same(Word, bytes(wire))
    assert want[0] is WireFormatError and reason in want[1]
    with pytest.raises(WireFormatError) as got:
        rg.decode(Word, bytes(wire))
    assert str(got.value) == want[1]


@needs_ext
def test_non_buffers_and_strided_arrays_take_the_python_path():
    wire = rg.encode(Word(3, "abc"), timestamp=1)
    strided = np.zeros(2 * len(wire), np.uint8)
    strided[::2] = np.frombuffer(wire, np.uint8)
    for data in ("not a buffer", [1, 2, 3], strided[::2], b"", bytes(100)):
        assert _outcome(_native(Word), data) == _outcome(_python(Word), data)
    assert _outcome(_native(Word), strided[::2])[0] == "ok"


@needs_ext
def test_ranges_past_the_buffer_are_cut_never_read():
    wire = rg.encode(Word(3, "abc"), timestamp=1)
    fast = _native(Word)
    buf = bytearray(64) + bytearray(wire)
    assert fast(buf, 64, 10**6) == Word(3, "abc")  # the limit is clamped to the buffer
    want = _outcome(_python(Word), bytes(buf[64 : 64 + len(wire) - 5]))
    assert _outcome(fast, buf[: len(buf) - 5], 64, 10**6) == want
    assert _outcome(fast, buf, len(buf) + 10, 300) == _outcome(_python(Word), b"")
    with pytest.raises(ValueError):
        fast(buf, -1, 300)


@needs_ext
def test_a_constructor_that_raises_hands_the_bytes_to_the_fallback():
    def refuse(*args):
        raise ValueError("refused")

    seen = []
    prog = native_ext.program_for(Word)
    prog = native_ext.with_fallback((refuse, *prog[1:]), lambda data: seen.append(data) or "fb")
    wire = rg.encode(Word(1, "ab"), timestamp=1)
    assert native_ext.module().decode_at(prog, wire) == "fb"
    assert seen == [wire]  # the caller's object itself, for the generated decoder's error
    ring = bytearray(300) + bytearray(wire)
    assert native_ext.module().decode_at(prog, ring, 300, 1000) == "fb"
    assert seen[1] == wire and type(seen[1]) is bytes  # a copy of the range


# ---------------------------------------------------------------------------- wiring and fallbacks


@needs_ext
def test_codecs_resolve_the_native_decoder_once():
    base = codec_for(WordStat)
    codec = BridgedCodec(WordStat, base.encode, base._python_decode)
    wire = rg.encode(WordStat(1, "un", 2, False, True), timestamp=1)
    assert codec.decode(wire) == WordStat(1, "un", 2, False, True)
    # after the first decode, codec.decode is the C partial: no Python frame per message
    assert isinstance(codec.decode, functools.partial)
    assert codec.decoder() is codec.decode
    assert rg.decode(WordStat, wire) == WordStat(1, "un", 2, False, True)
    assert isinstance(codec_for(WordStat).decode, functools.partial)


def test_no_native_env_keeps_the_python_decoder(monkeypatch):
    monkeypatch.setenv("RINGGEN_NO_NATIVE", "1")
    assert native_ext.fast_decoder(Word, _python(Word)) is None
    codec = BridgedCodec(Word, codec_for(Word).encode, _python(Word))
    wire = rg.encode(Word(5, "x"), timestamp=1)
    assert codec.decode(wire) == Word(5, "x")
    assert codec.decode is _python(Word)
    assert codec.unpack(bytearray(wire) + bytearray(10), 0) == Word(5, "x")


@needs_ext
@pytest.mark.parametrize("corrupt", [None, 40, 270, 4])
def test_slot_decoders_native_and_python_agree(monkeypatch, corrupt):
    """``slot_decoder()``: in place natively, a copy of the slot through the generated decoder
    with ``RINGGEN_NO_NATIVE=1``; the same object or the same error from a slot inside a ring."""
    size = layout_of(WordStat).slot_size
    ring = np.zeros(3 * size, np.uint8)
    wire = bytearray(rg.encode(WordStat(4, "héllo", 6, False, True), timestamp=2))
    if corrupt is not None:
        wire[corrupt] ^= 0x10
    ring[size : size + len(wire)] = np.frombuffer(bytes(wire), np.uint8)
    fresh = BridgedCodec(WordStat, codec_for(WordStat).encode, _python(WordStat))
    native_slot = fresh.slot_decoder()
    assert native_slot is fresh.decode
    got = _outcome(native_slot, memoryview(ring), size, size)
    monkeypatch.setenv("RINGGEN_NO_NATIVE", "1")
    plain = BridgedCodec(WordStat, codec_for(WordStat).encode, _python(WordStat)).slot_decoder()
    assert got == _outcome(plain, memoryview(ring), size, size)
    assert got == _outcome(_python(WordStat), ring[size : 2 * size].tobytes())
    assert (got[0] == "ok") == (corrupt is None)


def test_without_a_compiler_the_python_decoder_decodes(monkeypatch):
    monkeypatch.setattr(native_ext, "module", lambda: None)
    codec = BridgedCodec(Order, codec_for(Order).encode, _python(Order))
    order = Order(1, Customer(2, "Ada", "gold"), [OrderLine("X", 1, 0.5)])
    assert codec.decoder() is _python(Order)
    assert codec.decode(rg.encode(order)) == order


@needs_ext
def test_nested_orders_decode_natively_and_bad_lines_fall_back():
    order = Order(1, Customer(2, "Ada", "gold"), [OrderLine("X", 1, 0.5), OrderLine("é", 2, 1.0)])
    wire = bytearray(rg.encode(order, timestamp=3))
    assert _native_only(Order)(bytes(wire)) == order
    # the second line's member count, then its count of lines, off by one: the Python error
    for at in range(_HEADER, len(wire)):
        for delta in (1, 255):
            bad = bytearray(wire)
            bad[at] = (bad[at] + delta) & 0xFF
            _same(Order, bytes(_recrc(bad)))
