"""The native batch helpers (_native.c via native.py) against zlib and the numpy reference path."""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pytest

import ringgen as rg
from ringgen.toolchain import find_c_compiler
from ringgen.layout import layout_of
from ringgen.types import Array, List, Str, f32, f64, i32, i64, u8
from ringgen.wire import encode_batch, native
from ringgen.wire.columnar import objects_to_view
from ringgen.wire.crc import crc32_rows

from test_wire_columnar import CPt, CTick, _objs

needs_native = pytest.mark.skipif(native.lib() is None, reason="no C compiler: numpy path only")


def _numpy(monkeypatch, fn, *args, **kw):
    """``fn`` run with RINGGEN_NO_NATIVE=1 (the numpy reference path)."""
    with monkeypatch.context() as m:
        m.setenv(native.ENV_DISABLE, "1")
        assert native.lib() is None
        return fn(*args, **kw)


@rg.message
class NTick:
    id: i64
    price: f64
    qty: i32
    side: u8
    symbol: Str[40]


@rg.message
class NMix:
    tag: Str[5]
    pts: List[CPt, 3]
    arr: Array[f32, 3]
    note: Str[9]


@needs_native
@pytest.mark.parametrize("width", [0, 1, 15, 16, 17, 64, 200, 333])
def test_native_crc_equals_zlib(width):
    rng = np.random.default_rng(width)
    rows = rng.integers(0, 256, (257, width), dtype=np.uint8)
    assert [int(c) for c in crc32_rows(rows)] == [zlib.crc32(r.tobytes()) for r in rows]
    lengths = rng.integers(0, width + 1, 257)
    # bytes past a row's end are left as garbage: the native path reads only the row's bytes
    got = crc32_rows(rows, lengths)
    assert [int(c) for c in got] == [zlib.crc32(r[:k].tobytes()) for r, k in zip(rows, lengths)]
    # a strided view (every other row, an offset inside a wider buffer) needs no copy to be right
    wide = rng.integers(0, 256, (100, width + 9), dtype=np.uint8)
    sub = wide[::2, 5 : 5 + width]
    assert [int(c) for c in crc32_rows(sub)] == [zlib.crc32(r.tobytes()) for r in sub]


@needs_native
def test_native_and_numpy_batches_are_byte_identical(monkeypatch):
    objs = _objs(700, np.random.default_rng(11))
    view = objects_to_view(CTick, objs)
    view["sym"]["data"][:, -1] = np.where(view["sym"]["len"] < 12, 0x55, view["sym"]["data"][:, -1])
    view["pts"]["items"]["a"][:, 1] = np.where(
        view["pts"]["len"] < 2, 9, view["pts"]["items"]["a"][:, 1]
    )  # garbage past len
    kw = dict(sender=7, receiver=8, sequence=2**40, timestamp=12345)
    fast = encode_batch(CTick, view, **kw)
    slow = _numpy(monkeypatch, encode_batch, CTick, view, **kw)
    assert fast.tobytes() == slow.tobytes()
    for i in (0, 1, 2, 699):
        assert rg.decode(CTick, fast[i]) == objs[i]


@needs_native
def test_native_padding_masks_lists_of_structs_and_non_ascii(monkeypatch):
    n = 300
    rng = np.random.default_rng(2)
    view = np.zeros(n, layout_of(NMix).dtype)
    raw = view.view(np.uint8).reshape(n, -1)
    raw[:] = rng.integers(0, 256, raw.shape, dtype=np.uint8)  # garbage everywhere, then fields
    words = ["", "a", "é", "日", "😀", "abcde"]
    for i in range(n):
        for name, w in (("tag", words[i % 6]), ("note", words[(i * 5) % 6] + "zz")):
            b = w.encode()
            view[name]["len"][i] = len(b)
            view[name]["data"][i][: len(b)] = np.frombuffer(b, np.uint8)
    view["pts"]["len"] = np.arange(n) % 4
    fast = encode_batch(NMix, view, timestamp=1)
    slow = _numpy(monkeypatch, encode_batch, NMix, view, timestamp=1)
    assert fast.tobytes() == slow.tobytes()
    assert rg.decode(NMix, fast[3]).tag == "日"


@needs_native
def test_native_reused_buffer_ragged_and_uniform(monkeypatch):
    view = objects_to_view(CTick, _objs(50, np.random.default_rng(5)))
    shape = (50, layout_of(CTick).slot_size)
    fast, slow = np.full(shape, 0xEE, np.uint8), np.full(shape, 0xEE, np.uint8)
    encode_batch(CTick, view, timestamp=3, out=fast)
    _numpy(monkeypatch, encode_batch, CTick, view, timestamp=3, out=slow)
    assert fast.tobytes() == slow.tobytes()  # ragged: tails zeroed on both paths
    cols = {
        "id": np.arange(9),
        "price": np.ones(9),
        "qty": np.arange(9, dtype=np.int32),
        "side": np.ones(9, np.uint8),
        "symbol": np.array([b"SYM%05d" % k for k in range(9)]),
    }
    shape = (9, layout_of(NTick).slot_size)
    fast, slow = np.full(shape, 0xEE, np.uint8), np.full(shape, 0xEE, np.uint8)
    encode_batch(NTick, cols, timestamp=4, sequence=5, out=fast)
    _numpy(monkeypatch, encode_batch, NTick, cols, timestamp=4, sequence=5, out=slow)
    # uniform lengths: message bytes equal; bytes past the message are unspecified (the numpy path
    # happens to zero a Str's unused capacity, the native one leaves them as they were)
    end = 256 + 38
    assert fast[:, :end].tobytes() == slow[:, :end].tobytes()
    assert (fast[:, end:] == 0xEE).all()
    assert rg.decode(NTick, fast[8]).symbol == "SYM00008"


@needs_native
def test_native_refuses_bad_utf8_with_the_numpy_error():
    view = np.zeros(4, layout_of(NTick).dtype)
    view["symbol"]["len"] = 2
    view["symbol"]["data"][2, :2] = [0xED, 0xA0]  # a UTF-16 surrogate: not UTF-8
    with pytest.raises(rg.RinggenError, match=r"NTick\.symbol: row 2 is not UTF-8"):
        encode_batch(NTick, view)


def test_build_is_cached_and_atomic(tmp_path):
    if find_c_compiler() is None:
        pytest.skip("no C compiler")
    first = native.load(cache_dir=tmp_path)
    assert first is not None
    built = sorted(tmp_path.iterdir())
    assert len(built) == 1 and built[0].name.startswith("wire-")  # no temporary left behind
    assert sorted(p.name for p in built[0].iterdir()) == ["entry.json", "wire.so"]
    mtime = (built[0] / "wire.so").stat().st_mtime_ns
    assert native.load(cache_dir=tmp_path) is not None
    assert (built[0] / "wire.so").stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_failed_build_falls_back_and_logs(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ringgen"):
        assert native.load(cache_dir=tmp_path, cc="false") is None  # a "compiler" that fails
        assert native.load(cache_dir=tmp_path, cc="no-such-compiler-xyz") is None
    assert "native helpers unavailable" in caplog.text
    assert "no C compiler" in caplog.text
    assert not list(tmp_path.iterdir())


def test_env_var_forces_numpy(monkeypatch):
    monkeypatch.setenv(native.ENV_DISABLE, "1")
    assert native.lib() is None
    assert native.crc32_rows(np.zeros((2, 3), np.uint8), None) is None
    rows = np.arange(12, dtype=np.uint8).reshape(2, 6)
    assert [int(c) for c in crc32_rows(rows)] == [zlib.crc32(r.tobytes()) for r in rows]
