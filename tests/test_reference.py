"""The reference semantics (ringgen.reference.interpreter, ringgen.reference.records, ringgen.intrinsics)."""

from __future__ import annotations

import linecache
import sys
import textwrap
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.reference.records import Record, new_state, to_numpy_message, to_object
from ringgen.reference.interpreter import HandlerFault, reference_handler
from ringgen.errors import HandlerError
from ringgen.intrinsics import atomic_add
from ringgen.kernel import Outbox
from ringgen.protocol import Reason

ROOT = Path(__file__).resolve().parent.parent


def _example(name: str):
    unit = collect(str(ROOT / "examples" / f"{name}.py"))
    return unit, sys.modules[unit.module]


def _module(tmp_path, name: str, source: str):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    unit = collect(str(path))
    return unit, sys.modules[unit.module]


def test_f32_arithmetic_stays_f32():
    unit, m = _example("vector_add")
    (out,) = reference_handler(unit.kernels[0])(m.AddRequest(id=1, a=16777216.0, b=1.0))
    assert isinstance(out.sum, np.float32)
    assert out.sum == np.float32(16777216.0)  # 2**24 + 1 rounds back to 2**24 in f32


def test_integers_wrap_silently(tmp_path):
    unit, m = _module(
        tmp_path,
        "wrap_mod",
        """
        import ringgen as rg
        from ringgen.types import i8, i32

        @rg.message
        class A:
            x: i32
            y: i8

        @rg.ring_kernel
        def wrap(a: A) -> A:
            return A(x=a.x * 2 + 1, y=a.y - 100)
    """,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (out,) = reference_handler(unit.kernels[0])(m.A(x=2**31 - 1, y=-100))
    assert (int(out.x), int(out.y)) == (-1, 56)


def test_state_defaults_and_atomics():
    unit, m = _example("counters")
    state = new_state(m.Totals)
    assert isinstance(state, Record)
    assert int(state.largest) == -(2**31) and state.hist.shape == (16,)
    handler = reference_handler(unit.kernels[0])
    for v in (3, 19, -13, 3):
        handler(m.Sample(id=0, value=v), state)
    assert (int(state.count), int(state.total), int(state.largest)) == (4, 12, 19)
    assert int(state.hist[3]) == 4  # 3, 19, -13 (floors to 3) and 3
    (ack,) = handler(m.Sample(id=9, value=35), state)
    assert (int(ack.bin), int(ack.seen_before)) == (3, 4)


def test_ordered_state_write_wraps_to_field_type():
    _, m = _example("bank_account")
    state = new_state(m.Account)
    state.balance = 2**63  # stored like a C store: wraps
    assert int(state.balance) == -(2**63)
    assert isinstance(state.balance, np.int64)


def test_u64_arrays_above_2_63_are_kept_exactly(tmp_path):
    """A u64 Array (nested too) or List mixing values above and below 2**63 reaches the record
    exactly: np.asarray would take such a list through float64 and round it (an Array did, until
    the generated kernels found it through the Metal shim's decoded bridged replies)."""
    _, m = _module(
        tmp_path,
        "u64_arrays",
        """
        import ringgen as rg
        from ringgen.types import Array, List, u64

        @rg.message
        class Wide:
            a: Array[u64, 3]
            n: Array[Array[u64, 2], 2]
            l: List[u64, 3]
        """,
    )
    big = 9479970728465914509  # above 2**63, and odd: float64 cannot hold it
    rec = to_numpy_message(m.Wide(a=[big, 7, 2**64 - 2], n=[[1, big], [big + 2, 0]], l=[big, 1]))
    assert [int(x) for x in rec.array[0]["a"]] == [big, 7, 2**64 - 2]
    assert [[int(x) for x in row] for row in rec.array[0]["n"]] == [[1, big], [big + 2, 0]]
    assert [int(x) for x in rec.array[0]["l"]["items"][:2]] == [big, 1]
    back = to_object(rec)
    assert list(back.a) == [big, 7, 2**64 - 2] and [list(r) for r in back.n] == [
        [1, big],
        [big + 2, 0],
    ]


def test_rewritten_source_is_in_linecache_and_tracebacks():
    unit, m = _example("counters")
    handler = reference_handler(unit.kernels[0])
    filename = handler.func.__code__.co_filename
    text = "".join(linecache.getlines(filename))
    assert "__rg_atomic_add(st, 'hist', b, 1)" in text
    assert "__rg_mod(s.value, N_BINS)" in text
    with pytest.raises(AttributeError) as info:  # a wrong state object fails inside the copy
        handler(m.Sample(id=1, value=1), object())
    frames = traceback.extract_tb(info.value.__traceback__)
    assert any(f.filename == filename and f.line for f in frames)


def test_calling_an_intrinsic_outside_a_handler_explains():
    with pytest.raises(RuntimeError, match="only runs inside a handler"):
        atomic_add(1, 2)


def test_integer_division_by_zero_faults_float_does_not(tmp_path):
    unit, m = _module(
        tmp_path,
        "div_mod",
        """
        import ringgen as rg
        from ringgen.types import f32, i32

        @rg.message
        class D:
            a: i32
            b: i32
            x: f32

        @rg.ring_kernel
        def div(d: D) -> D:
            return D(a=d.a // d.b, b=d.a % d.b, x=d.x / f32(d.b))
    """,
    )
    handler = reference_handler(unit.kernels[0])
    (out,) = handler(m.D(a=-7, b=2, x=1.0))
    assert (int(out.a), int(out.b), float(out.x)) == (-4, 1, 0.5)  # Python's floor semantics
    with pytest.raises(HandlerFault) as info:
        handler(m.D(a=7, b=0, x=1.0))
    assert info.value.reason is Reason.DIVISION_BY_ZERO


def test_index_fault_and_outbox_overflow(tmp_path):
    unit, m = _module(
        tmp_path,
        "fault_mod",
        """
        import ringgen as rg
        from ringgen.types import Array, i32

        @rg.message
        class V:
            i: i32
            n: i32
            v: Array[i32, 4]

        @rg.ring_kernel
        def spray(m: V, out: rg.Outbox[V]) -> None:
            for k in range(m.n):
                out.emit(V(i=m.v[m.i], n=k, v=m.v))
    """,
    )
    handler = reference_handler(unit.kernels[0])
    outs = handler(m.V(i=-1, n=3, v=np.arange(4, dtype=np.int32)))
    assert [int(o.i) for o in outs] == [3, 3, 3] and [int(o.n) for o in outs] == [0, 1, 2]
    with pytest.raises(HandlerFault) as info:
        handler(m.V(i=4, n=1, v=np.zeros(4, np.int32)))
    assert info.value.reason is Reason.INDEX_OUT_OF_RANGE
    with pytest.raises(HandlerFault) as info:
        handler(m.V(i=0, n=9, v=np.zeros(4, np.int32)))
    assert info.value.reason is Reason.OUTBOX_OVERFLOW
    box = Outbox()
    handler(m.V(i=0, n=2, v=np.zeros(4, np.int32)), None, box)
    assert len(box.drain()) == 2


def test_math_follows_argument_precision():
    unit, m = _example("array_math")
    (out,) = reference_handler(unit.kernels[0])(
        m.VecPair(id=1, a=np.full(8, 3.0, np.float32), b=np.ones(8, np.float32))
    )
    assert isinstance(out.norm_a, np.float32)
    assert out.norm_a == np.sqrt(np.float32(72.0))
    assert out.max_abs_diff == np.float32(2.0)


def test_device_helpers_run_in_reference():
    unit, m = _example("device_helper")
    (out,) = reference_handler(unit.kernels[0])(m.Point(id=4, x=2.0, steps=-9))
    assert float(out.y) == 1.0 and int(out.bucket) == -3


def test_message_conversion_round_trip():
    _, m = _example("array_math")
    obj = m.VecPair(id=7, a=np.arange(8, dtype=np.float32), b=np.ones(8, np.float32))
    rec = to_numpy_message(obj)
    assert rec.array.dtype == rg.layout_of(m.VecPair).dtype
    back = to_object(rec)
    assert back.id == 7 and np.array_equal(back.a, obj.a)


def test_reference_refuses_what_the_compiler_rejects(tmp_path):
    unit, m = _module(
        tmp_path,
        "bad_mod",
        """
        import ringgen as rg
        from ringgen.types import i32

        @rg.message
        class A:
            x: i32

        @rg.ring_kernel
        def bad(a: A) -> A:
            return A(x=a.x / 2)
    """,
    )
    with pytest.raises(HandlerError, match="/ on integers"):
        reference_handler(unit.kernels[0])


def test_accepts_rows_of_a_batch():
    unit, m = _example("vector_add")
    batch = np.zeros(2, dtype=rg.layout_of(m.AddRequest).dtype)
    batch["id"], batch["a"], batch["b"] = [1, 2], [0.5, 1.5], [2.0, 4.0]
    handler = reference_handler(unit.kernels[0])
    assert [float(handler(row)[0].sum) for row in batch] == [2.5, 5.5]
