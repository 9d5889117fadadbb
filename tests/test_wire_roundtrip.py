"""Property tests over random bridged schemas: object -> bytes -> object, on every host path.

For each random schema and value: the generated fast codec and the reference codec write the same
bytes, decoding gives the value back, the payload stays within the layout's bound, and the columnar
batch encoder writes the same slot.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ringgen as rg
from ringgen.layout import layout_of
from ringgen.types import ArrayType, ListType, MessageType, ScalarType, StrType, f32, i32
from ringgen.wire import encode_batch
from ringgen.wire.codec import decode_reference, encode_reference
from ringgen.wire.columnar import objects_to_view, view_to_objects

from conftest import make_message, scalar_types, unique_name, values_of as direct_values_of


def _direct_types(direct: list[type]) -> st.SearchStrategy:
    options = [
        scalar_types,
        st.builds(ArrayType, scalar_types, st.integers(1, 4)),
        st.builds(
            lambda t, a, b: ArrayType(ArrayType(t, b), a),
            scalar_types,
            st.integers(1, 3),
            st.integers(1, 3),
        ),
    ]
    if direct:
        options.append(st.sampled_from(direct))
    return st.one_of(*options)


def _field_types(direct: list[type], bridged: list[type]) -> st.SearchStrategy:
    options = [
        _direct_types(direct),
        st.builds(StrType, st.integers(1, 12)),
        st.builds(ListType, scalar_types, st.integers(1, 4)),
        st.builds(
            ListType, st.builds(ArrayType, scalar_types, st.integers(1, 3)), st.integers(1, 3)
        ),
    ]
    if direct:
        options.append(st.builds(ListType, st.sampled_from(direct), st.integers(1, 3)))
        options.append(st.builds(ArrayType, st.sampled_from(direct), st.integers(1, 2)))
    if bridged:
        msgs = st.sampled_from(bridged)
        options.append(msgs)
        options.append(st.builds(ListType, msgs, st.integers(1, 3)))
    return st.one_of(*options)


@st.composite
def bridged_schema(draw) -> type:
    """A bridged message class that may nest direct and bridged message classes drawn before it."""
    direct: list[type] = []
    bridged: list[type] = []
    for _ in range(draw(st.integers(0, 2))):
        fields = {f"d{i}": draw(_direct_types(direct)) for i in range(draw(st.integers(1, 3)))}
        direct.append(make_message(unique_name("RD"), fields))
    for _ in range(draw(st.integers(0, 2))):
        fields = {
            f"b{i}": draw(_field_types(direct, bridged)) for i in range(draw(st.integers(1, 3)))
        }
        fields["s"] = StrType(draw(st.integers(1, 6)))  # always bridged
        bridged.append(make_message(unique_name("RB"), fields))
    fields = {f"f{i}": draw(_field_types(direct, bridged)) for i in range(draw(st.integers(1, 6)))}
    fields["last"] = StrType(draw(st.integers(1, 8)))
    return make_message(unique_name("RM"), fields)


_TEXT = st.characters(blacklist_categories=("Cs",))


def values_of(t) -> st.SearchStrategy:
    if isinstance(t, StrType):
        return st.text(_TEXT, max_size=t.max_bytes).filter(lambda s: len(s.encode()) <= t.max_bytes)
    if isinstance(t, ListType):
        return st.lists(values_of(t.elem), max_size=t.max_len)
    if isinstance(t, ArrayType):
        return st.lists(values_of(t.elem), min_size=t.length, max_size=t.length)
    if isinstance(t, MessageType):
        spec = rg.spec_of(t.cls)
        return st.builds(t.cls, **{f.name: values_of(f.type) for f in spec.fields})
    if isinstance(t, ScalarType):
        return direct_values_of(t)
    raise TypeError(t)


@st.composite
def schema_and_value(draw):
    cls = draw(bridged_schema())
    return cls, draw(values_of(MessageType(cls, cls.__name__)))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(schema_and_value(), st.integers(0, 2**32 - 1), st.integers(0, 2**63))
def test_round_trip(sv, sender, ticks):
    cls, obj = sv
    lay = layout_of(cls)
    assert lay.is_bridged
    data = rg.encode(obj, sender=sender, sequence=5, timestamp=ticks)
    assert data == encode_reference(cls, obj, sender=sender, sequence=5, timestamp=ticks)
    assert len(data) - 256 <= lay.max_payload
    assert rg.decode(cls, data) == obj
    assert decode_reference(cls, data) == obj
    # a full slot (zero padded) decodes the same
    assert rg.decode(cls, data + bytes(lay.slot_size - len(data))) == obj
    # the view rows round trip, and the columnar encoder writes the same slot
    view = objects_to_view(cls, [obj])
    assert view_to_objects(cls, view) == [obj]
    slots = encode_batch(cls, view, sender=sender, sequence=5, timestamp=ticks)
    assert slots.shape == (1, lay.slot_size)
    assert slots[0, : len(data)].tobytes() == data
    assert not slots[0, len(data) :].any()


def test_batch_of_many_rows_matches_per_message_encoding():
    rng = np.random.default_rng(0)
    cls = make_message(unique_name("RBatch"), {"a": i32, "s": StrType(5), "v": ListType(f32, 3)})
    objs = [
        cls(
            int(rng.integers(-9, 9)),
            "é" * int(rng.integers(0, 3)),
            [float(np.float32(x)) for x in rng.normal(size=rng.integers(0, 4))],
        )
        for _ in range(300)
    ]
    slots = encode_batch(cls, objs, timestamp=1, sequence=10)
    for i, o in enumerate(objs):
        data = rg.encode(o, timestamp=1, sequence=10 + i)
        assert slots[i, : len(data)].tobytes() == data
        assert rg.decode(cls, slots[i]) == o
