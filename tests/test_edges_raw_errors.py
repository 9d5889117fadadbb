"""Every raw exception issue 11 found is now a ringgen error naming the argument or the field.

Before: ``struct.error`` for out-of-range header fields, ``ValueError`` for an integer column where
an Array field has a subarray, ``TypeError`` for a strided uint8 array in ``rg.decode``,
``RuntimeError: clSVMAlloc failed`` / ``MemoryError`` for a huge ``capacity``, ``RecursionError`` for
200 levels of nesting.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import BuildError, EncodeError, SchemaError, WireFormatError
from ringgen.runtime import cpu as cpu_backend
from ringgen.types import Array, List, Str, i32, i64
from ringgen.wire import encode_batch

import runtime_kernels as rk
from conftest import DYNAMIC_MODULE, make_message, requires_opencl, unique_name

MSG = rk.Named(id=1, name="abc", scores=[1, 2])
U32, U64 = 2**32 - 1, 2**64 - 1


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("sender", -1, "header field sender=-1 is outside 0..4294967295 (u32)"),
        ("receiver", 2**40, f"header field receiver={2**40} is outside 0..{U32} (u32)"),
        ("sequence", -1, f"header field sequence=-1 is outside 0..{U64} (u64)"),
        ("timestamp", 2**70, f"header field timestamp={2**70} is outside 0..{U64} (u64)"),
        ("sender", 1.5, "header field sender=1.5 is not an integer (u32)"),
        ("sequence", "7", "header field sequence='7' is not an integer (u64)"),
    ],
)
def test_rg_encode_names_the_header_field_out_of_range(field, value, expected):
    with pytest.raises(EncodeError) as info:
        rg.encode(MSG, **{field: value})
    assert info.value.message == f"Named: {expected}"


def test_encode_batch_names_the_header_field_and_the_last_row():
    with pytest.raises(EncodeError) as info:
        encode_batch(rk.Named, [MSG], sender=-1)
    assert (
        info.value.message == "Named batch: header field sender=-1 is outside 0..4294967295 (u32)"
    )
    with pytest.raises(EncodeError) as info:
        encode_batch(rk.Named, [MSG, MSG, MSG], sequence=U64 - 1)
    assert info.value.message == (
        f"Named batch: header field sequence={U64 - 1} is outside 0..{U64 - 2} for 3 rows "
        "(row i gets sequence + i) (u64)"
    )
    assert len(encode_batch(rk.Named, [MSG, MSG], sequence=U64 - 1)) == 2


def test_an_int_column_for_an_array_field_names_the_field_in_send_batch():
    bad = np.zeros(
        4, dtype=[("seq", "i8"), ("a", "i4"), ("b", "i4"), ("index", "i4"), ("values", "i4")]
    )
    with rg.launch(rk.divide, backend="cpu") as k:
        with pytest.raises(EncodeError) as info:
            k.send_batch(bad)
    assert info.value.message == (
        "kernel divide: Div.values is int32 in the array, the field is int32[4]: the shapes differ"
    )


def test_an_int_column_for_an_array_field_names_the_field_in_encode_batch():
    cls = make_message(
        unique_name("Cols"), {"id": i64, "vals": Array[i32, 4], "name": Str[8], "xs": List[i32, 4]}
    )
    good = {"id": np.arange(4), "vals": np.zeros((4, 4)), "name": ["a"] * 4, "xs": [[1]] * 4}
    assert len(encode_batch(cls, good)) == 4
    # a (4,) column would have been broadcast into every row of a (4, 4) subarray, silently
    for column, shape in ((np.arange(4), "(4,)"), (np.zeros((4, 3)), "(4, 3)")):
        with pytest.raises(EncodeError) as info:
            encode_batch(cls, {**good, "vals": column})
        assert info.value.message.startswith(
            f"{cls.__name__}.vals: the column does not fit 4 rows of Array[i32, 4] (column: "
        )
        assert f"array of shape {shape}; expected shape (4, 4))" in info.value.message
    with pytest.raises(EncodeError, match=rf"^error: {cls.__name__}\.xs: the column does not fit"):
        encode_batch(cls, {**good, "xs": (np.ones(4, int), np.arange(4))})


def test_rg_decode_reads_a_strided_uint8_array():
    data = np.frombuffer(rg.encode(MSG), np.uint8)
    wide = np.zeros((len(data), 3), np.uint8)
    wide[:, 1] = data
    assert not wide[:, 1].flags.c_contiguous
    assert rg.decode(rk.Named, wide[:, 1]) == MSG
    direct = np.zeros((16, 2), np.uint8)
    direct[:, 0] = np.frombuffer(rg.encode(rk.Seq(seq=3, value=4)), np.uint8)
    assert rg.decode(rk.Seq, direct[:, 0]) == rk.Seq(seq=3, value=4)


@pytest.mark.parametrize("data", [[1, 2, 3], "abc", 12, None], ids=repr)
def test_rg_decode_names_the_argument_when_it_is_not_bytes(data):
    with pytest.raises(WireFormatError) as info:
        rg.decode(rk.Named, data)
    assert info.value.message == (
        "rg.decode(Named, data): data must be bytes, bytearray, memoryview or a numpy array, "
        f"got {type(data).__qualname__}"
    )


def test_a_huge_capacity_is_refused_naming_it():
    with pytest.raises(BuildError) as info:
        rg.launch(rk.echo, backend="cpu", capacity=2**40)
    assert info.value.message == (
        "kernel echo: launch option capacity=1099511627776 is over the limit of 1073741824 slots "
        "per queue"
    )


def test_an_allocation_failure_names_the_capacity(monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cpu_backend, "HostQueue", no_memory)
    with pytest.raises(BuildError) as info:
        rg.launch(rk.echo, backend="cpu", capacity=2**20)
    assert info.value.message == (
        "kernel echo (cpu): cannot allocate queues of capacity=1048576 (33,554,432 bytes of "
        "slots): out of memory"
    )


@pytest.mark.opencl
@requires_opencl
def test_opencl_svm_allocation_failure_names_the_capacity():
    with pytest.raises(BuildError) as info:
        rg.launch(rk.summarize, backend="opencl", capacity=2**30)
    assert info.value.message.startswith(
        "kernel summarize (opencl): cannot allocate queues of capacity=1073741824 ("
    )


def test_200_levels_of_forward_referenced_nesting_are_a_schema_error():
    # declared outermost first, so nothing resolves until the outermost is used: the walk recurses
    names = [unique_name("Lvl") for _ in range(200)]
    module = sys.modules[DYNAMIC_MODULE]
    for i, name in enumerate(names):
        inner = {"inner": names[i + 1]} if i + 1 < len(names) else {}
        make_message(name, {**inner, "x": i32})
    with pytest.raises(SchemaError) as info:
        rg.encode(getattr(module, names[0])(inner=None, x=1))
    assert f"message {names[0]} nests messages 33 levels deep" in info.value.message
