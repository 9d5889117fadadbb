"""Vectorised CRC-32 and the columnar batch encoder, against zlib and the per-message encoder."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import ringgen as rg
from ringgen.layout import layout_of
from ringgen.types import Array, List, Str, bool_, f32, i64, u8, u16
from ringgen.wire import encode_batch
from ringgen.wire.columnar import columns_to_view, objects_to_view, view_to_objects
from ringgen.wire.crc import crc32_rows


@pytest.mark.parametrize("width", [1, 2, 7, 64, 128, 200])
def test_crc_rows_equal_zlib(width):
    rng = np.random.default_rng(width)
    rows = rng.integers(0, 256, (300, width), dtype=np.uint8)
    got = crc32_rows(rows)
    assert got.dtype == np.uint32
    assert [int(c) for c in got] == [zlib.crc32(r.tobytes()) for r in rows]
    lengths = rng.integers(0, width + 1, 300)
    ragged = rows * (np.arange(width) < lengths[:, None])
    got = crc32_rows(ragged.astype(np.uint8), lengths)
    assert [int(c) for c in got] == [zlib.crc32(r[:n].tobytes()) for r, n in zip(ragged, lengths)]


def test_crc_rows_rejects_bad_input():
    with pytest.raises(ValueError):
        crc32_rows(np.zeros(5, np.uint8))
    with pytest.raises(ValueError):
        crc32_rows(np.zeros((2, 4), np.uint8), [1, 5])
    assert len(crc32_rows(np.zeros((0, 4), np.uint8))) == 0


@rg.message
class CPt:
    a: u8
    b: f32


@rg.message
class CTick:
    id: i64
    price: f32
    sym: Str[12]
    qty: u16
    pos: CPt
    hist: List[f32, 3]
    pts: List[CPt, 2]
    v: Array[u8, 2]
    live: bool_


def _objs(n, rng):
    syms = ["", "A", "MSFT", "€uro", "日本株", "😀x"]
    return [
        CTick(
            int(rng.integers(-(2**40), 2**40)),
            float(np.float32(rng.normal())),
            syms[i % len(syms)],
            int(rng.integers(0, 2**16)),
            CPt(int(rng.integers(256)), 0.5),
            [float(np.float32(x)) for x in rng.normal(size=i % 4)],
            [CPt(i % 256, float(i))] * (i % 3),
            [1, 2],
            bool(i % 2),
        )
        for i in range(n)
    ]


def test_batch_equals_per_message_encoding_for_every_columnar_shape():
    rng = np.random.default_rng(3)
    objs = _objs(500, rng)
    view = objects_to_view(CTick, objs)
    # garbage in the unused tail of a Str and of a List: must not reach the wire
    view["sym"]["data"][:, -1] = np.where(view["sym"]["len"] < 12, 0x7F, view["sym"]["data"][:, -1])
    slots = encode_batch(CTick, view, sender=4, receiver=5, sequence=100, timestamp=99)
    assert slots.shape == (500, layout_of(CTick).slot_size)
    for i, o in enumerate(objs):
        data = rg.encode(o, sender=4, receiver=5, sequence=100 + i, timestamp=99)
        assert slots[i, : len(data)].tobytes() == data, i
        assert not slots[i, len(data) :].any()
    assert view_to_objects(CTick, view[:3])[:1] == objs[:1]


def test_uniform_payload_length_and_out_buffer():
    rng = np.random.default_rng(4)
    objs = [o for o in _objs(60, rng) if o.sym == "MSFT"]
    for o in objs:
        o.hist, o.pts = [1.0], []
    out = np.full((len(objs), layout_of(CTick).slot_size), 0xEE, np.uint8)
    res = encode_batch(CTick, objs, timestamp=1, out=out)
    assert res is out
    for i, o in enumerate(objs):
        data = rg.encode(o, sequence=i, timestamp=1)
        assert out[i, : len(data)].tobytes() == data


def test_reused_out_buffer_with_rows_of_different_lengths():
    rng = np.random.default_rng(5)
    objs = _objs(40, rng)
    out = np.full((len(objs), layout_of(CTick).slot_size), 0xEE, np.uint8)
    encode_batch(CTick, objs, timestamp=2, out=out)
    for i, o in enumerate(objs):
        data = rg.encode(o, sequence=i, timestamp=2)
        assert out[i, : len(data)].tobytes() == data
        assert rg.decode(CTick, out[i]) == o


def test_columns_from_numpy_strings():
    n = 4
    base = {
        "id": np.arange(n),
        "price": np.ones(n, np.float32),
        "qty": np.full(n, 3),
        "pos": np.zeros(n, layout_of(CPt).dtype),
        "hist": (np.array([0, 1, 2, 3]), np.ones((n, 3), np.float32)),
        "pts": [[]] * n,
        "v": np.zeros((n, 2), np.uint8),
        "live": np.zeros(n, bool),
    }
    as_bytes = columns_to_view(
        CTick, dict(base, sym=np.array([b"a", b"bc", b"", b"def"], dtype="S3"))
    )
    as_text = columns_to_view(CTick, dict(base, sym=np.array(["a", "bc", "", "def"])))
    as_list = columns_to_view(CTick, dict(base, sym=["a", "bc", "", "def"]))
    assert as_bytes.tobytes() == as_text.tobytes() == as_list.tobytes()
    objs = view_to_objects(CTick, as_text)
    assert [o.sym for o in objs] == ["a", "bc", "", "def"]
    assert [o.hist for o in objs] == [[], [1.0], [1.0, 1.0], [1.0, 1.0, 1.0]]
    slots = encode_batch(CTick, dict(base, sym=np.array(["a", "bc", "", "def"])), timestamp=0)
    assert [rg.decode(CTick, s) for s in slots] == objs


def test_missing_column_and_direct_message_batches_are_refused():
    with pytest.raises(rg.RinggenError, match="no column for"):
        encode_batch(CTick, {"id": [1]})
    with pytest.raises(rg.RinggenError, match="direct message"):
        encode_batch(CPt, np.zeros(1, layout_of(CPt).dtype))


def test_objects_to_view_column_path_matches_value_path_and_errors():
    rng = np.random.default_rng(9)
    objs = _objs(120, rng)
    fast = objects_to_view(CTick, objs)
    slow = np.zeros(len(objs), layout_of(CTick).dtype)
    from ringgen.wire.columnar import _put

    for i, o in enumerate(objs):
        for f in layout_of(CTick).fields:
            _put(f.type, slow[f.name], i, getattr(o, f.name), f"CTick.{f.name}")
    assert fast.tobytes() == slow.tobytes()
    bad = list(objs)
    bad[7] = CTick(1, 0.5, "x" * 13, 1, CPt(1, 0.5), [], [], [1, 2], True)
    with pytest.raises(rg.RinggenError, match=r"CTick\.sym: Str\[12\] holds at most 12"):
        objects_to_view(CTick, bad)
    bad[7] = CTick(1, 0.5, "x", 2**16, CPt(1, 0.5), [], [], [1, 2], True)
    with pytest.raises(rg.RinggenError, match=r"CTick\.qty"):
        objects_to_view(CTick, bad)
    bad[7] = CTick(1, 0.5, "x", 2, CPt(1, 0.5), [1.0] * 4, [], [1, 2], True)
    with pytest.raises(
        rg.RinggenError, match=r"CTick\.hist: List\[f32, 3\] holds at most 3 elements, got 4"
    ):
        objects_to_view(CTick, bad)
    with pytest.raises(rg.RinggenError, match="row 3 is a CPt"):
        objects_to_view(CTick, objs[:3] + [CPt(1, 0.5)])


@rg.message
class CInner:
    name: Str[8]
    n: u16


@rg.message
class COuter:
    id: i64
    inner: CInner
    tags: List[CInner, 2]


def test_objects_of_non_columnar_shapes_encode_per_message():
    objs = [COuter(i, CInner("ab" * (i % 4), i), [CInner("x", 1)] * (i % 3)) for i in range(30)]
    out = np.full((30, layout_of(COuter).slot_size), 0xEE, np.uint8)
    encode_batch(COuter, objs, sender=2, sequence=10, timestamp=5, out=out)
    via_view = encode_batch(
        COuter, objects_to_view(COuter, objs), sender=2, sequence=10, timestamp=5
    )
    assert out.tobytes() == via_view.tobytes()  # tails zeroed too
    for i, o in enumerate(objs):
        data = rg.encode(o, sender=2, sequence=10 + i, timestamp=5)
        assert out[i, : len(data)].tobytes() == data
    with pytest.raises(rg.RinggenError, match="row 1 is a CInner"):
        encode_batch(COuter, [objs[0], CInner("a", 1)])
