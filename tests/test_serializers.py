"""Generated serializers round-trip: object -> bytes -> object and objects -> numpy -> objects.

For every direct message of every example, and for random schemas (hypothesis): the generated
``serializers.py`` is imported as Python would import it, and its codecs must agree with the layout
engine's numpy dtype byte for byte.
"""

from __future__ import annotations

import importlib.util
import itertools
import struct
import sys

import numpy as np
import pytest
from conftest import example_paths, instances_of, make_message, schemas, unique_name
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ringgen as rg
from ringgen.build import BuildUnit, collect
from ringgen.codec import DirectCodec, UnavailableCodec
from ringgen.codegen.writer import emit_unit, write_unit
from ringgen.errors import EncodeError, RinggenError, WireFormatError
from ringgen.types import Array, Str, f32, i8, i64, u16
from ringgen.wire.direct_codec import direct_codec

_loaded = itertools.count()


def load_serializers(unit: BuildUnit, tmp_path):
    """Emit ``serializers.py`` for ``unit`` and import it as a standalone module."""
    text = emit_unit(unit, ["serializers"])["serializers.py"].text
    path = tmp_path / f"serializers_{next(_loaded)}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unit_of(classes) -> BuildUnit:
    layouts = []
    for cls in classes:
        for dep in [s.cls for s in rg.spec_of(cls).nested()] + [cls]:
            lay = rg.layout_of(dep)
            if lay not in layouts:
                layouts.append(lay)
    return BuildUnit(
        name="random",
        module="ringgen_test_dynamic",
        source_file="random.py",
        messages=tuple(layouts),
        kernels=(),
        device_functions=(),
        fingerprint="0" * 64,
    )


def assert_round_trips(codec: DirectCodec, objs: list) -> None:
    dtype = rg.layout_of(codec.cls).dtype
    assert codec.dtype == dtype
    for obj in objs:
        data = codec.pack(obj)
        assert len(data) == codec.slot_size == dtype.itemsize
        assert codec.unpack(data) == obj
        # the struct path and the numpy path produce the same bytes (padding included)
        assert np.frombuffer(data, dtype=dtype).tobytes() == data
        assert codec.to_array([obj]).tobytes() == data
    arr = codec.to_array(objs)
    assert arr.dtype == dtype and arr.shape == (len(objs),)
    assert codec.from_array(arr) == objs
    raw = codec.pack_array(arr)
    assert raw == b"".join(codec.pack(o) for o in objs)
    back = codec.unpack_array(raw, len(objs))
    assert back.tobytes() == arr.tobytes()
    assert codec.from_array(back) == objs


@pytest.fixture(scope="module")
def example_packages(tmp_path_factory):
    """Every example built into a temporary folder and imported: [(unit, package)]."""
    out = tmp_path_factory.mktemp("examples")
    sys.path.insert(0, str(out))
    built = []
    try:
        for path in example_paths():
            unit = collect(path, name=f"ex_{path.stem}")
            write_unit(unit, out, ["header", "serializers", "manifest", "package"])
            built.append((unit, importlib.import_module(unit.name)))
        yield built
    finally:
        sys.path.remove(str(out))


def test_every_example_message_has_a_codec(example_packages):
    assert example_packages, "no examples found"
    for unit, package in example_packages:
        for m in unit.messages:
            codec = package.CODECS[m.name]
            assert codec.bridged == m.is_bridged
            assert codec.slot_size == m.slot_size
            assert codec.dtype == m.dtype


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_example_messages_round_trip(example_packages, data):
    for unit, package in example_packages:
        for m in unit.direct_messages:
            objs = data.draw(st.lists(instances_of(m.spec.cls), min_size=1, max_size=4))
            assert_round_trips(package.CODECS[m.name], objs)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_schemas_round_trip(tmp_path_factory, data):
    classes = data.draw(schemas())
    module = load_serializers(unit_of(classes), tmp_path_factory.mktemp("ser"))
    for cls in classes:
        codec = module.CODECS[cls.__name__]
        objs = data.draw(st.lists(instances_of(cls), min_size=1, max_size=5))
        assert_round_trips(codec, objs)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_layout_codec_agrees_with_the_generated_one(tmp_path_factory, data):
    """``rg.encode``'s codec of a bare direct class (``direct_codec``: the same ``DirectCodec``,
    its field functions derived from the layout) writes and reads what the generated one does."""
    classes = data.draw(schemas())
    module = load_serializers(unit_of(classes), tmp_path_factory.mktemp("ser"))
    for cls in classes:
        generated, derived = module.CODECS[cls.__name__], direct_codec(cls)
        assert isinstance(derived, DirectCodec) and derived.packer.size == generated.packer.size
        objs = data.draw(st.lists(instances_of(cls), min_size=1, max_size=5))
        assert_round_trips(derived, objs)
        for obj in objs:
            assert derived.flat(obj) == generated.flat(obj)
            assert derived.row(obj) == generated.row(obj)
            assert derived.encode(obj) == generated.pack(obj) == rg.encode(obj)
            assert derived.decode(generated.pack(obj)) == obj
        arr = generated.to_array(objs)
        assert derived.from_array(arr) == generated.from_array(arr) == objs


@pytest.fixture
def particle_codec(tmp_path):
    vec = make_message(unique_name("Vec"), {"x": f32, "y": f32})
    cls = make_message(
        unique_name("Part"),
        {
            "id": i64,
            "small": i8,
            "pos": vec,
            "path": Array[vec, 2],
            "grid": Array[Array[u16, 2], 3],
        },
    )
    module = load_serializers(unit_of([cls]), tmp_path)
    return module.CODECS[cls.__name__], cls, vec


def test_nested_values_come_back_as_lists_and_messages(particle_codec):
    codec, cls, vec = particle_codec
    obj = cls(
        id=-5,
        small=-128,
        pos=vec(1.5, -2.0),
        path=[vec(0.0, 1.0), vec(2.0, 3.0)],
        grid=[[1, 2], [3, 4], [65535, 0]],
    )
    back = codec.unpack(codec.pack(obj))
    assert back == obj
    assert isinstance(back.pos, vec) and isinstance(back.path, list) and back.grid[2] == [65535, 0]


def test_struct_format_spells_out_padding(particle_codec):
    codec, cls, vec = particle_codec
    assert codec.packer.format == "<qb3x6f6H"
    assert struct.calcsize(codec.packer.format) == codec.slot_size == 48


def test_padding_is_zero(particle_codec, tmp_path):
    codec, cls, vec = particle_codec
    obj = cls(id=-1, small=-1, pos=vec(0.0, 0.0), path=[vec(0.0, 0.0)] * 2, grid=[[0, 0]] * 3)
    assert codec.pack(obj)[8:12] == b"\xff\0\0\0"
    tail = make_message(unique_name("Tail"), {"id": i64, "flag": i8})
    tail_codec = load_serializers(unit_of([tail]), tmp_path).CODECS[tail.__name__]
    assert tail_codec.packer.format == "<qb7x"
    assert tail_codec.pack(tail(id=-1, flag=-1)) == b"\xff" * 9 + b"\0" * 7
    assert tail_codec.to_array([tail(id=-1, flag=-1)]).tobytes() == b"\xff" * 9 + b"\0" * 7


def test_out_of_range_value_is_an_encode_error_naming_the_field(particle_codec):
    codec, cls, vec = particle_codec
    obj = cls(id=1, small=300, pos=vec(0.0, 0.0), path=[vec(0.0, 0.0)] * 2, grid=[[0, 0]] * 3)
    for convert in (codec.pack, lambda o: codec.to_array([o])):
        with pytest.raises(EncodeError) as info:
            convert(obj)
        assert info.value.message == f"{cls.__name__}.small: 300 does not fit i8 (range -128..127)"


def test_short_buffer_is_a_wire_format_error(particle_codec):
    codec, cls, _ = particle_codec
    with pytest.raises(WireFormatError) as info:
        codec.unpack(b"\0" * 10)
    assert info.value.message == f"{cls.__name__} needs 48 bytes, got 10 at offset 0"
    with pytest.raises(WireFormatError):
        codec.unpack_array(b"\0" * 50, 2)


def test_wrong_class_and_wrong_dtype_are_type_errors(particle_codec):
    codec, cls, vec = particle_codec
    with pytest.raises(TypeError):
        codec.pack(vec(1.0, 2.0))
    with pytest.raises(TypeError):
        codec.from_array(np.zeros(2, dtype=np.float32))


def test_unpack_at_offset_and_pack_into(particle_codec):
    codec, cls, vec = particle_codec
    obj = cls(id=7, small=1, pos=vec(1.0, 2.0), path=[vec(3.0, 4.0)] * 2, grid=[[5, 6]] * 3)
    buf = bytearray(16 + codec.slot_size)
    codec.pack_into(buf, 16, obj)
    assert codec.unpack(buf, 16) == obj


def test_bridged_message_without_wire_codec_fails_clearly(tmp_path):
    cls = make_message(unique_name("Named"), {"name": Str[8], "id": i64})
    module = load_serializers(unit_of([cls]), tmp_path)
    codec = module.CODECS[cls.__name__]
    assert isinstance(codec, UnavailableCodec) and codec.bridged
    assert codec.slot_size == rg.layout_of(cls).slot_size
    with pytest.raises(RinggenError) as info:
        codec.pack(cls(name="x", id=1))
    assert info.value.message == (
        f"no wire codec for bridged message {cls.__name__}: this package has no bridged.py"
    )


def test_stale_package_is_detected(tmp_path):
    cls = make_message(unique_name("Stale"), {"a": i64})
    text = emit_unit(unit_of([cls]), ["serializers"])["serializers.py"].text
    path = tmp_path / "stale_serializers.py"
    path.write_text(text.replace('"itemsize": 8', '"itemsize": 16'))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    with pytest.raises(RinggenError) as info:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert "has changed since this package was generated" in info.value.message


def test_batch_paths_have_no_python_loop_per_message(particle_codec, monkeypatch):
    """pack_array/unpack_array never call the per-message functions."""
    codec, cls, vec = particle_codec
    objs = [
        cls(id=i, small=1, pos=vec(1.0, 2.0), path=[vec(3.0, 4.0)] * 2, grid=[[5, 6]] * 3)
        for i in range(1000)
    ]
    arr = codec.to_array(objs)

    def boom(*_):
        raise AssertionError("per-message function called in a batch path")

    for name in ("flat", "from_flat", "row", "from_row"):
        monkeypatch.setattr(type(codec), name, staticmethod(boom))
    raw = codec.pack_array(arr)
    assert codec.unpack_array(raw).tobytes() == arr.tobytes()
