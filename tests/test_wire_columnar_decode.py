"""The columnar batch decoder (``codec.unpack_array``, ``ringgen.wire.columnar_decode``): a batch of bridged slots
into view rows in one native call, equal to the per-message decoder on random schemas and values,
and refusing a malformed slot with the per-message decoder's error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ringgen as rg
from ringgen.errors import WireFormatError
from ringgen.layout import layout_of
from ringgen.types import MessageType, StrType, f32, i64, List, Str
from ringgen.wire import codec_for, encode_batch, native
from ringgen.wire.columnar import objects_to_view, view_to_objects

from test_wire_roundtrip import bridged_schema, values_of

NATIVE = native.lib() is not None


@st.composite
def schema_and_values(draw):
    cls = draw(bridged_schema())
    return cls, draw(st.lists(values_of(MessageType(cls, cls.__name__)), min_size=1, max_size=6))


def _slots(cls, objs, pad: int = 0) -> np.ndarray:
    """The objects' slots as the per-message encoder writes them, in rows ``pad`` bytes longer than
    a slot (as a ring's strided rows are)."""
    size = layout_of(cls).slot_size
    rows = np.zeros((len(objs), size + pad), np.uint8)
    for i, o in enumerate(objs):
        data = rg.encode(o, sequence=i, timestamp=7)
        rows[i, : len(data)] = np.frombuffer(data, np.uint8)
    return rows


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(schema_and_values(), st.sampled_from([0, 16]))
def test_decode_batch_equals_the_per_message_decoder(sv, pad):
    cls, objs = sv
    slots = _slots(cls, objs, pad)
    rows = decode_batch(cls, slots)
    one_by_one = [rg.decode(cls, slots[i, : layout_of(cls).slot_size]) for i in range(len(objs))]
    assert one_by_one == objs
    assert view_to_objects(cls, rows) == one_by_one
    # the same bytes as the view rows built from the objects: zeros past every Str and List
    assert rows.tobytes() == objects_to_view(cls, objs).tobytes()


@rg.message
class Stat:
    id: i64
    text: Str[16]
    values: List[f32, 8]


def _stats(n: int) -> list:
    return [Stat(i, "wörd"[: i % 5], [float(k) for k in range(i % 9)]) for i in range(n)]


@pytest.mark.skipif(not NATIVE, reason="no C compiler: the native helpers are not built")
def test_a_batch_is_decoded_natively_without_the_per_message_decoder(monkeypatch):
    objs = _stats(500)
    slots = encode_batch(Stat, objs, timestamp=3)
    codec = codec_for(Stat)

    def refuse(data):
        raise AssertionError("a well-formed batch went through the per-message decoder")

    monkeypatch.setattr(codec, "decode", refuse)
    out = np.full(500, 0xFF, np.uint8).view(np.void(1)).view(np.uint8)  # not the dtype: refused
    with pytest.raises(ValueError, match="view rows of dtype"):
        decode_batch(Stat, slots, out=out)
    out = np.empty(500, layout_of(Stat).dtype)
    out.view(np.uint8)[:] = 0xAB  # stale bytes: every row is zeroed before it is filled
    assert decode_batch(Stat, slots, out=out) is out
    assert view_to_objects(Stat, out) == objs
    assert out.tobytes() == objects_to_view(Stat, objs).tobytes()
    # a ring's void slots and plain bytes are slots too
    void = slots.reshape(-1).view(np.dtype((np.void, slots.shape[1])))
    assert decode_batch(Stat, void).tobytes() == out.tobytes()
    assert decode_batch(Stat, slots.tobytes()).tobytes() == out.tobytes()


@pytest.mark.parametrize("where", ["magic", "crc", "payload", "str_units"])
def test_a_malformed_slot_raises_the_per_message_error_naming_the_slot(where):
    objs = _stats(40)
    slots = encode_batch(Stat, objs, timestamp=3)
    if where == "magic":
        slots[17, 0] ^= 1
    elif where == "crc":
        slots[17, 256 + 3] ^= 0x40  # the id's bytes: the CRC no longer matches
    else:
        # change a byte and patch the CRC, so the payload check itself must refuse it
        import zlib

        total = int.from_bytes(slots[17, 4:12].tobytes(), "little")
        at = 256 + 1 + 8 + (4 if where == "str_units" else 0)  # the Str's header
        slots[17, at] ^= 0x7F
        crc = zlib.crc32(slots[17, 256:total].tobytes())
        crc_at = 40  # payload_crc in the header
        slots[17, crc_at : crc_at + 4] = np.frombuffer(crc.to_bytes(4, "little"), np.uint8)
    with pytest.raises(WireFormatError) as err:
        decode_batch(Stat, slots)
    assert "in slot 17 of the batch" in err.value.__notes__


def test_the_numpy_fallback_decodes_the_same_rows(monkeypatch):
    objs = _stats(64)
    slots = encode_batch(Stat, objs, timestamp=3)
    expect = objects_to_view(Stat, objs).tobytes()
    monkeypatch.setenv(native.ENV_DISABLE, "1")
    assert decode_batch(Stat, slots).tobytes() == expect


def decode_batch(cls, slots, out=None):
    """What the tests call: the codec's columnar decode."""
    return codec_for(cls).unpack_array(slots, out=out)


@pytest.mark.skipif(not NATIVE, reason="no C compiler: the native helpers are not built")
def test_a_large_batch_is_decoded_by_several_threads_in_row_order(monkeypatch):
    from ringgen.wire import columnar_decode

    monkeypatch.setattr(columnar_decode, "DECODE_THREADS", 3)
    monkeypatch.setattr(columnar_decode, "PARALLEL_DECODE_ROWS", 16)
    parts = []
    real = native.decode_slots
    monkeypatch.setattr(
        native, "decode_slots", lambda c, lay, s, o: parts.append(len(o)) or real(c, lay, s, o)
    )
    objs = _stats(100)
    slots = encode_batch(Stat, objs, timestamp=3)
    rows = decode_batch(Stat, slots)
    assert sorted(parts) == [33, 33, 34]
    assert rows.tobytes() == objects_to_view(Stat, objs).tobytes()
    slots[50, 0] ^= 1  # in the second part; and a later bad slot in the third
    slots[90, 0] ^= 1
    with pytest.raises(WireFormatError) as err:
        decode_batch(Stat, slots)
    assert "in slot 50 of the batch" in err.value.__notes__
