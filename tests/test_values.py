"""One validation everywhere: every entry point rejects the same bad field values with the same text.

A table of (field, value, message) is walked over every way a message object reaches bytes:
``k.send`` and ``k.send_batch`` on the cpu backend and on OpenCL, the generated serializer's codec
(``pack`` and ``to_array``), ``rg.encode``, the bridged codec's generated Python encoder, its native
encoder, the reference encoder and the columnar encoders. Each must raise ``EncodeError`` with exactly
the message the table gives, and no numpy warning may reach the user.
"""

from __future__ import annotations

import warnings

import attrs
import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import EncodeError
from ringgen.wire.codec import codec_for, encode_reference
from ringgen.wire.columnar import encode_batch, objects_to_view
from conftest import have_opencl
from value_kernels import BIn, VIn, bcheck, vcheck

pytestmark = pytest.mark.timeout(300)

GOOD_VIN = VIn(id=1, qty=2, small=3, price=1.5, wide=2.5, flag=True, pos=[1.0, 2.0, 3.0])
GOOD_BIN = BIn(id=1, qty=2, price=1.5, flag=False, pos=[1.0, 2.0, 3.0], name="ab", vals=[1.0])

F32_MAX = "3.4028234663852886e+38"
INT_ROWS = [
    ("qty", "5", "{C}.qty: i32 needs an int, got str '5'"),
    ("qty", 1.5, "{C}.qty: i32 needs an int, got float 1.5"),
    ("qty", 5.0, "{C}.qty: i32 needs an int, got float 5.0"),
    ("qty", None, "{C}.qty: i32 needs an int, got None"),
    ("qty", 2**31, "{C}.qty: 2147483648 does not fit i32 (range -2147483648..2147483647)"),
    (
        "qty",
        np.int64(-(2**40)),
        "{C}.qty: -1099511627776 does not fit i32 (range -2147483648..2147483647)",
    ),
    ("price", None, "{C}.price: f32 needs a number, got None"),
    ("price", "1.0", "{C}.price: f32 needs a number, got str '1.0'"),
    ("price", 1e40, f"{{C}}.price: 1e+40 does not fit f32 (largest {F32_MAX})"),
    ("price", 10**400, f"{{C}}.price: {'1' + '0' * 36}... does not fit f32 (largest {F32_MAX})"),
    ("flag", "yes", "{C}.flag: bool_ needs a bool, got str 'yes'"),
    ("flag", 2, "{C}.flag: bool_ needs a bool, got int 2"),
    ("pos", 1.0, "{C}.pos: Array[f32, 3] needs a sequence, got float 1.0"),
    ("pos", "abc", "{C}.pos: Array[f32, 3] needs a sequence, got str 'abc'"),
    ("pos", [1.0, 2.0], "{C}.pos: Array of length 3 got 2 elements"),
    ("pos", [1.0, 2.0, 3.0, 4.0], "{C}.pos: Array of length 3 got 4 elements"),
    ("pos", [1.0, "x", 2.0], "{C}.pos[1]: f32 needs a number, got str 'x'"),
    ("pos", [1.0, 2.0, 1e40], f"{{C}}.pos[2]: 1e+40 does not fit f32 (largest {F32_MAX})"),
]
DIRECT_ROWS = [
    ("small", 300, "{C}.small: 300 does not fit i8 (range -128..127)"),
    ("wide", "x", "{C}.wide: f64 needs a number, got str 'x'"),
]
BRIDGED_ROWS = [
    ("name", 5, "{C}.name: Str[8] needs a str, got int 5"),
    ("name", b"ab", "{C}.name: Str[8] needs a str, got bytes b'ab'"),
    ("name", "\ud800", "{C}.name: string holds a lone surrogate, which UTF-8 cannot carry"),
    ("name", "x" * 9, "{C}.name: Str[8] holds at most 8 UTF-8 bytes, got 9"),
    ("vals", [0.0] * 5, "{C}.vals: List[f32, 4] holds at most 4 elements, got 5"),
    ("vals", 1.0, "{C}.vals: List[f32, 4] needs a sequence, got float 1.0"),
    ("vals", [None], "{C}.vals[0]: f32 needs a number, got None"),
    ("vals", [1.0, 1e40], f"{{C}}.vals[1]: 1e+40 does not fit f32 (largest {F32_MAX})"),
]


def _cases():
    for good, rows in ((GOOD_VIN, INT_ROWS + DIRECT_ROWS), (GOOD_BIN, INT_ROWS + BRIDGED_ROWS)):
        name = type(good).__name__
        for field, value, message in rows:
            if field in attrs.fields_dict(type(good)):
                yield pytest.param(
                    attrs.evolve(good, **{field: value}),
                    message.format(C=name),
                    id=f"{name}.{field}={value!r:.20}",
                )


CASES = list(_cases())


def _host_entry_points(obj):
    """Every host-side way to turn ``obj`` into bytes (name -> callable)."""
    cls = type(obj)
    codec = codec_for(cls)
    points = {
        "rg.encode": lambda: rg.encode(obj),
        "columnar objects_to_view": lambda: objects_to_view(cls, [obj]),
    }
    if codec.bridged:
        points.update(
            {
                "generated encoder": lambda: codec.encode(obj),
                "native encoder": lambda: codec.pack(obj),
                "native pack_into": lambda: codec.pack_into(bytearray(codec.slot_size), 0, obj),
                "reference encoder": lambda: encode_reference(cls, obj),
                "columnar encode_batch": lambda: encode_batch(cls, [obj]),
            }
        )
    return points


@pytest.fixture(scope="module")
def handles():
    """Launched kernels: (backend, class) -> handle, for cpu and (where present) OpenCL."""
    backends = ["cpu"] + (["opencl"] if have_opencl() else [])
    out = {}
    try:
        for backend in backends:
            for kernel, cls in ((vcheck, VIn), (bcheck, BIn)):
                out[backend, cls] = rg.launch(kernel, backend=backend)
        yield out
    finally:
        for k in out.values():
            k.terminate()


def _message_of(call) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(EncodeError) as info:
            call()
    return info.value.message


@pytest.mark.parametrize("obj,message", CASES)
def test_host_encoders_reject_with_the_same_message(obj, message):
    for name, call in _host_entry_points(obj).items():
        assert _message_of(call) == message, name


@pytest.mark.parametrize("obj,message", CASES)
def test_every_backend_rejects_with_the_same_message(handles, obj, message):
    for (backend, cls), k in handles.items():
        if cls is not type(obj):
            continue
        assert _message_of(lambda: k.send(obj)) == message, f"{backend} send"
        good = GOOD_VIN if cls is VIn else GOOD_BIN
        assert _message_of(lambda: k.send_batch([good, obj])) == message, f"{backend} batch"
        assert _message_of(lambda: k.in_codec.pack(obj)) == message, f"{backend} codec.pack"
        assert _message_of(lambda: k.in_codec.to_array([obj])) == message, f"{backend} to_array"
    # nothing bad was queued: the kernels still answer a good message, and only that one
    for (backend, cls), k in handles.items():
        if cls is type(obj):
            k.send(GOOD_VIN if cls is VIn else GOOD_BIN)
            assert k.receive(timeout=10.0).id == 1, backend
            assert len(k.receive_batch(timeout=0.0)) == 0, backend


GOOD_VALUES = [
    ("qty", np.int32(7)),
    ("qty", True),
    ("price", np.float32(0.25)),
    ("price", 3),
    ("price", float("inf")),
    ("flag", np.bool_(True)),
    ("pos", (1.0, 2.0, 3.0)),
    ("pos", np.array([1.0, 2.0, 3.0], dtype=np.float32)),
]


@pytest.mark.parametrize("field,value", GOOD_VALUES, ids=lambda v: repr(v)[:20])
@pytest.mark.parametrize("good", [GOOD_VIN, GOOD_BIN], ids=["direct", "bridged"])
def test_accepted_values_encode_alike_everywhere(handles, good, field, value):
    """What one entry point accepts, all accept, with the same bytes."""
    obj = attrs.evolve(good, **{field: value})
    cls = type(obj)
    codec = handles["cpu", cls].in_codec
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for call in _host_entry_points(obj).values():
            call()
        if cls is BIn:
            data = rg.encode(obj, timestamp=0)
            assert codec.encode(obj, 0, 0, 0, 0) == data
            assert encode_reference(BIn, obj, timestamp=0) == data
            assert codec_for(BIn).pack(attrs.evolve(obj)) != b""
        else:
            data = rg.encode(obj)
            assert codec.pack(obj) == data
            assert codec.to_array([obj]).tobytes() == data
        for k in (h for (_, c), h in handles.items() if c is cls):
            k.send(obj)
            k.send_batch([obj])
            assert [k.receive(timeout=10.0).id for _ in range(2)] == [1, 1]


@pytest.mark.gpu
def test_cuda_rejects_with_the_same_message():
    """The CUDA backend, latency path included (one ``struct.pack_into`` into the mapped slot, which
    hands a value it cannot pack to the generic path): the same text for every row."""
    pytest.importorskip("pycuda.driver")
    for kernel, cls, good in ((vcheck, VIn, GOOD_VIN), (bcheck, BIn, GOOD_BIN)):
        with rg.launch(kernel, backend="cuda") as k:
            for param in CASES:
                obj, message = param.values
                if type(obj) is not cls:
                    continue
                assert _message_of(lambda: k.send(obj)) == message, "cuda send"
                assert _message_of(lambda: k.send_batch([good, obj])) == message, "cuda batch"
            k.send(good)
            assert k.receive(timeout=10.0).id == 1
            assert len(k.receive_batch(timeout=0.2)) == 0


def test_the_struct_guard_lets_no_bad_value_through_struct():
    """The latency paths pack with ``struct`` after ``struct_guard``: for every bad row one of the
    two must refuse, and every good value passes both (so no value skips the full check)."""
    from ringgen.values import struct_guard
    from ringgen.wire.direct import direct_struct

    guard, packer = struct_guard(VIn), direct_struct(VIn)

    def packs(o):
        try:
            packer.pack(o.id, o.qty, o.small, o.price, o.wide, o.flag, *o.pos)
        except Exception:  # struct.error, OverflowError, TypeError
            return False
        return True

    bad = [p.values[0] for p in CASES if type(p.values[0]) is VIn]
    assert bad and all(not (guard(o) and packs(o)) for o in bad)
    for field, value in GOOD_VALUES:
        o = attrs.evolve(GOOD_VIN, **{field: value})
        assert guard(o) and packs(o), (field, value)
