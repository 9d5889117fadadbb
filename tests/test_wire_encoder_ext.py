"""The per-message native encoder (_encoder.c via native_ext.py) against the generated Python encoder.

Every comparison runs the same object through both paths with the same header fields: the bytes must
be identical, and whatever the Python path raises (type and message) the native path must raise too,
leaving the target buffer exactly as the Python path leaves it.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ringgen as rg
from ringgen.errors import EncodeError
from ringgen.layout import layout_of
from ringgen.types import (
    Array,
    ArrayType,
    List,
    ListType,
    MessageType,
    ScalarType,
    Str,
    StrType,
    bool_,
    f32,
    f64,
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
)
from ringgen.wire import codec_for, native, native_ext
from ringgen.wire.codec import BridgedCodec

from conftest import make_message, scalar_types, unique_name

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


@rg.message
class EAll:
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


def _fresh(cls: type) -> BridgedCodec:
    """A codec of ``cls`` whose native encoder is resolved anew (codec_for's is cached)."""
    base = codec_for(cls)
    return BridgedCodec(cls, base.encode, base.decode)


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # the point is to compare whatever both paths raise
        return (type(exc), str(exc))


def _both(cls: type, obj, header=(0, 0, 0, 123456789)) -> None:
    """``obj`` through the native and the Python path: same bytes, or the same error, both forms."""
    if header[3] is None:  # "now" differs between two calls; test_example_shapes covers it
        header = (*header[:3], 42)
    codec = _fresh(cls)
    fast = codec._native()
    assert fast is not None, f"{cls.__name__} should be covered by the native encoder"
    py = _outcome(codec._python_pack, None, 0, obj, *header)
    nat = _outcome(fast, None, 0, obj, *header)
    assert nat == py
    # into a slot in the middle of a buffer of random bytes: the same bytes land, or none at all
    seed = np.random.default_rng(len(str(py))).integers(0, 256, 3 * 4096, dtype=np.uint8)
    buf_py, buf_nat = seed.copy(), seed.copy()
    assert _outcome(fast, buf_nat, 4096, obj, *header) == _outcome(
        codec._python_pack, buf_py, 4096, obj, *header
    )
    assert buf_nat.tobytes() == buf_py.tobytes()
    if py[0] == "ok":
        assert buf_nat[4096 : 4096 + len(py[1])].tobytes() == py[1]


def _native_only(cls: type):
    """The native encoder of ``cls`` with a fallback that fails the test: for input the program
    covers, the bytes must come from C."""

    def no_fallback(*args):
        raise AssertionError(f"native encoder fell back for {args!r}")

    prog = native_ext.with_fallback(native_ext.program_for(cls), no_fallback)
    return functools.partial(native_ext.module().encode_into, prog)


def _assert_native(cls: type, obj, timestamp: int = 42) -> None:
    want = _fresh(cls)._python_pack(None, 0, obj, 1, 2, 3, timestamp)
    assert _native_only(cls)(None, 0, obj, 1, 2, 3, timestamp) == want
    ring = np.full(2 * len(want), 0xAA, dtype=np.uint8)
    assert _native_only(cls)(ring, 3, obj, 1, 2, 3, timestamp) is None
    assert ring[3 : 3 + len(want)].tobytes() == want
    assert (ring[:3] == 0xAA).all() and (ring[3 + len(want) :] == 0xAA).all()


# ---------------------------------------------------------------------------- value strategies

_INT_RANGE = {1: 8, 2: 16, 4: 32, 8: 64}
_WILD = st.sampled_from(
    [None, "1", 1.5, 2**64, -(2**63) - 1, 2**80, -1, True, False, math.nan, np.int32(3), []]
)


def _scalar(t: ScalarType, wild: bool) -> st.SearchStrategy:
    bits = _INT_RANGE[t.size]
    if t.kind == "int":
        good = st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        edge = st.integers(-(2 ** (bits - 1)) - 3, 2 ** (bits - 1) + 3)
    elif t.kind == "uint":
        good = st.integers(0, 2**bits - 1)
        edge = st.integers(-3, 2**bits + 3)
    elif t.kind == "float":
        good = st.floats(width=32, allow_nan=False) if t.size == 4 else st.floats(allow_nan=False)
        edge = st.floats()  # NaNs; for f32, finite doubles beyond its range overflow
    else:
        good = st.booleans()
        edge = st.sampled_from([0, 1, None, "", 2])
    return st.one_of(good, edge, _WILD) if wild else good


def _value(t, wild: bool) -> st.SearchStrategy:
    if isinstance(t, ScalarType):
        return _scalar(t, wild)
    if isinstance(t, StrType):
        good = st.text(max_size=t.max_bytes).filter(
            lambda s: len(s.encode("utf-8", "replace")) <= t.max_bytes
        )
        if not wild:
            return good.filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
        # over the bound, lone surrogates, astral text, non-str
        return st.one_of(good, st.text(min_size=t.max_bytes, max_size=t.max_bytes + 3), _WILD)
    if isinstance(t, MessageType):
        good = _objects(t.cls, False)
        return st.one_of(good, _objects(t.cls, True), _WILD) if wild else good
    if isinstance(t, ListType):
        good = st.lists(_value(t.elem, False), max_size=t.max_len)
        if not wild:
            return good
        return st.one_of(
            good,
            good.map(tuple),
            st.lists(_value(t.elem, True), max_size=t.max_len + 2),
            _WILD,
        )
    assert isinstance(t, ArrayType)
    good = st.lists(_value(t.elem, False), min_size=t.length, max_size=t.length)
    if not wild:
        return good
    return st.one_of(good, good.map(tuple), st.lists(_value(t.elem, True), max_size=t.length + 2))


def _objects(cls: type, wild: bool) -> st.SearchStrategy:
    """Instances of ``cls`` built without validation (attrs keeps what it is given)."""
    fields = layout_of(cls).fields
    return st.tuples(*[_value(f.type, wild) for f in fields]).map(lambda vals: cls(*vals))


_HEADERS = st.tuples(
    st.one_of(st.integers(0, 2**32 - 1), st.just(2**32)),
    st.integers(0, 2**32 - 1),
    st.one_of(st.integers(0, 2**64 - 1), st.just(-1)),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
)


# ---------------------------------------------------------------------------- the example shapes


@needs_ext
@settings(max_examples=300, **_SETTINGS)
@given(st.data())
def test_example_shapes_match_python_encoder(data):
    cls = data.draw(st.sampled_from([Word, Samples, WordStat, EAll, Order]))
    obj = data.draw(_objects(cls, wild=False))
    header = data.draw(_HEADERS)
    _assert_native(cls, obj)
    codec = _fresh(cls)
    if header[3] is not None:  # a fixed timestamp: the whole message is deterministic
        _both(cls, obj, header)
    else:  # "now": equal except the 8 timestamp bytes
        got = _outcome(codec._native(), None, 0, obj, *header)
        want = _outcome(codec._python_pack, None, 0, obj, *header)
        if want[0] == "ok":
            assert got[0] == "ok" and got[1][:12] + got[1][20:] == want[1][:12] + want[1][20:]
        else:  # a header field out of range
            assert got == want
    assert rg.decode(cls, codec.pack(obj)) == obj


@needs_ext
@settings(max_examples=400, **_SETTINGS)
@given(st.data())
def test_every_error_path_raises_the_python_encoders_error(data):
    cls = data.draw(st.sampled_from([Word, Samples, WordStat, EAll, Order]))
    _both(cls, data.draw(_objects(cls, wild=True)), data.draw(_HEADERS))


@needs_ext
@pytest.mark.parametrize(
    "obj, message",
    [
        (Word(1, "x" * 33), "Word.text: Str[32] holds at most 32 UTF-8 bytes, got 33"),
        (Word(1, "\ud800"), "Word.text: string holds a lone surrogate"),
        (Word(2**63, "a"), "Word.id: 9223372036854775808 does not fit i64"),
        (Word(1, 5), "Word.text: Str[32] needs a str, got int"),
        (Samples(1, [0.0] * 65), "Samples.values: List[f32, 64] holds at most 64 elements, got 65"),
        (Samples(1, None), "Samples.values: List[f32, 64] needs a sequence, got None"),
    ],
)
def test_named_errors_are_the_encode_errors_of_today(obj, message):
    codec = _fresh(type(obj))
    with pytest.raises(EncodeError) as want:
        codec._python_pack(None, 0, obj)
    assert message in str(want.value)
    ring = bytearray(4096)
    for call in (lambda: codec.pack(obj), lambda: codec.pack_into(ring, 0, obj)):
        with pytest.raises(EncodeError) as got:
            call()
        assert str(got.value) == str(want.value)
    assert ring == bytearray(4096)  # nothing written for a message that does not encode


@needs_ext
def test_f32_overflow_is_an_encode_error_on_both_paths():
    # a finite double beyond f32 does not fit: both paths name the field, neither lets struct's
    # OverflowError through
    codec = _fresh(Samples)
    obj = Samples(1, [1e39])
    with pytest.raises(EncodeError) as want:
        codec._python_pack(None, 0, obj)
    with pytest.raises(EncodeError) as got:
        codec.pack(obj)
    assert str(got.value) == str(want.value)
    assert "Samples.values[0]: 1e+39 does not fit f32" in str(got.value)


# ---------------------------------------------------------------------------- random schemas


def _covered_types() -> st.SearchStrategy:
    return st.one_of(
        scalar_types,
        st.builds(StrType, st.integers(1, 12)),
        st.builds(ListType, scalar_types, st.integers(1, 5)),
        st.builds(ArrayType, scalar_types, st.integers(1, 4)),
    )


@st.composite
def _schema(draw, depth: int = 0) -> type:
    kinds = _covered_types()
    if depth < 2:  # nested bridged messages and Lists of them
        inner = _schema(depth + 1)
        kinds = st.one_of(
            kinds,
            inner,
            st.builds(ListType, inner, st.integers(1, 3)),
        )
    fields = {f"f{i}": draw(kinds) for i in range(draw(st.integers(0, 5 - 2 * depth)))}
    fields["last"] = StrType(draw(st.integers(1, 8)))  # at least one bridged field
    return make_message(unique_name("EX"), fields)


@needs_ext
@settings(max_examples=40, **_SETTINGS)
@given(st.data())
def test_random_schemas_match_python_encoder(data):
    cls = data.draw(_schema())
    assert native_ext.program_for(cls) is not None
    _assert_native(cls, data.draw(_objects(cls, wild=False)))
    for wild in (False, True, True):
        _both(cls, data.draw(_objects(cls, wild)), data.draw(_HEADERS))


# ---------------------------------------------------------------------------- buffers and objects


@needs_ext
def test_pack_into_writes_ring_slots_and_becomes_a_c_partial():
    codec = _fresh(Word)
    ring = np.zeros((4, codec.slot_size), dtype=np.uint8)
    codec.pack_into(ring, codec.slot_size * 2, Word(7, "héllo😀"))
    # after the first pack the instance's pack_into is the C partial (no Python frame per message)
    assert type(codec.pack_into).__name__ == "partial"
    codec.pack_into(ring, codec.slot_size, Word(8, "b"))
    assert rg.decode(Word, ring[2]) == Word(7, "héllo😀")
    assert rg.decode(Word, ring[1]) == Word(8, "b")
    assert not ring[0].any() and not ring[3].any()


@needs_ext
@pytest.mark.parametrize(
    "make_buf, offset",
    [
        (lambda: bytes(1024), 0),  # read-only
        (lambda: bytearray(100), 0),  # too short
        (lambda: bytearray(1024), 1000),  # runs past the end
        (lambda: bytearray(1024), -300),  # negative offset: memoryview's slice rules
        (lambda: np.zeros((8, 512), np.uint8)[:, :300], 0),  # not contiguous
        (lambda: np.zeros(64, np.float64), 8),  # another item size: byte offsets still
        (lambda: "not a buffer", 0),
    ],
)
def test_unusual_buffers_behave_as_the_python_path(make_buf, offset):
    codec = _fresh(Word)
    obj = Word(3, "abc")
    buf_py, buf_nat = make_buf(), make_buf()
    want = _outcome(codec._python_pack, buf_py, offset, obj, 0, 0, 0, 99)
    got = _outcome(codec._native(), buf_nat, offset, obj, 0, 0, 0, 99)
    assert got[0] is want[0] and (got[0] == "ok" or got[1] == want[1])
    if isinstance(buf_py, np.ndarray):
        assert buf_nat.tobytes() == buf_py.tobytes()
    elif isinstance(buf_py, bytearray):
        assert buf_nat == buf_py


@needs_ext
def test_subclasses_and_strangers_take_the_python_path():
    class MyWord(Word):
        pass

    codec = _fresh(Word)
    fast = codec._native()
    sub = MyWord(1, "a")
    assert _outcome(fast, None, 0, sub, 0, 0, 0, 1) == _outcome(
        codec._python_pack, None, 0, sub, 0, 0, 0, 1
    )
    assert _outcome(fast, None, 0, WordStat(1, "a", 1, True, False)) == _outcome(
        codec._python_pack, None, 0, WordStat(1, "a", 1, True, False)
    )


@needs_ext
def test_nested_bridged_messages_are_native():
    order = Order(1, Customer(2, "Ada", "gold"), [OrderLine("X", 1, 0.5), OrderLine("é", 2, 1.0)])
    _assert_native(Order, order)
    codec = _fresh(Order)
    ring = bytearray(codec.slot_size)
    codec.pack_into(ring, 0, order)
    assert rg.decode(Order, ring) == order
    # a nested object of another class, or a line that is not an OrderLine: the Python path's error
    for bad in (
        Order(1, OrderLine("X", 1, 0.5), []),
        Order(1, Customer(2, "Ada", "gold"), [Customer(2, "Ada", "gold")]),
        Order(1, Customer(2, "Ada", "x" * 9), []),
        Order(1, Customer(2, "Ada", "gold"), [OrderLine("X", 1, 0.5)] * 17),
    ):
        _both(Order, bad)


@rg.message
class EPoint:
    x: f32
    y: f32


@rg.message
class EDirectInside:
    at: EPoint  # a nested direct message: not covered
    name: Str[4]


def test_uncovered_shapes_stay_on_the_python_path():
    assert native_ext.program_for(EDirectInside) is None
    codec = _fresh(EDirectInside)
    assert codec._native() is None
    obj = EDirectInside(EPoint(1.0, 2.0), "ab")
    assert rg.decode(EDirectInside, codec.pack(obj)) == obj
    ring = bytearray(codec.slot_size)
    codec.pack_into(ring, 0, obj)
    assert rg.decode(EDirectInside, ring) == obj


# ---------------------------------------------------------------------------- fallbacks


def test_no_native_env_forces_the_python_path(monkeypatch):
    monkeypatch.setenv(native.ENV_DISABLE, "1")
    assert native_ext.module() is None
    codec = _fresh(Word)
    assert codec._native() is None
    data = codec.pack(Word(1, "a"))
    assert rg.decode(Word, data) == Word(1, "a")
    assert type(codec.pack_into).__name__ == "method"


def test_missing_compiler_falls_back_with_a_log(monkeypatch, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ringgen"):
        assert native_ext.load(cache_dir=tmp_path, cc="no-such-compiler-rg") is None
    assert "no C compiler" in caplog.text
    assert not list(tmp_path.iterdir())
    # a codec created while no extension can be had encodes in Python, with the same bytes
    monkeypatch.setattr(native_ext, "module", lambda: None)
    codec = _fresh(Samples)
    assert codec._native() is None
    obj = Samples(1, [1.0, 2.0])
    assert rg.decode(Samples, codec.pack(obj)) == obj
    with pytest.raises(EncodeError, match="at most 64 elements"):
        codec.pack(Samples(1, [0.0] * 65))


def test_failing_compiler_falls_back_with_a_warning(tmp_path, caplog):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'fake cc 1.0'\nexit 1\n")
    fake.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="ringgen"):
        assert native_ext.load(cache_dir=tmp_path / "cache", cc=str(fake)) is None
    assert "native encoder unavailable" in caplog.text
    # no half-written library is left behind
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


@needs_ext
def test_build_is_cached_and_keyed_by_source(tmp_path):
    first = native_ext.load(cache_dir=tmp_path)
    assert first is not None
    built = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("encoder*.so"))
    assert len(built) == 1 and built[0].startswith("encoder-")
    second = native_ext.load(cache_dir=tmp_path)
    assert second is not None
    rebuilt = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("encoder*.so"))
    assert rebuilt == built  # reused, not rebuilt
    prog = native_ext.with_fallback(native_ext.program_for(Word), None)
    assert second.encode_into(prog, None, 0, Word(1, "a"), 0, 0, 0, 5) == codec_for(Word).encode(
        Word(1, "a"), 0, 0, 0, 5
    )
