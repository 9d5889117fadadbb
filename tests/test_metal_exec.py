"""The shim-compiled Metal kernels, run on CPU threads: against the reference, and on their own.

Every example's ``.metal`` is compiled with the shim and a dispatch-loop driver; random messages go
through the same queues, control block and dispatch record a Metal host would use, and the outputs,
counters and final state are compared with ``ringgen.reference.interpreter`` running the Python handler:
integers exactly, floats within ``ULP_BOUND``. The other tests check what the reference cannot
judge: parallel dispatch, back-pressure from a full output queue, the terminate handshake, clang++.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ringgen.build import collect
from ringgen.codegen.metal import OUTBOX_LIMIT, emit, skipped_kernels
from ringgen.layout import layout_of
from ringgen.metal_shim import available_compilers
from ringgen.metal_shim.executor import build_executor, slot_dtype
from ringgen.protocol import Lifecycle, Reason
from ringgen.schema import spec_of
from ringgen.testing.compare import ulp_distance
from ringgen.testing.runners import to_slots
from ringgen.types import ArrayType, ListType, ScalarType, StrType

import ringgen as rg

from ringgen.reference import records

try:
    from ringgen.reference import interpreter as reference
except (
    ImportError
):  # the reference backend is another module's job; without it, only the oracle tests skip
    reference = None

needs_reference = pytest.mark.skipif(
    reference is None, reason="ringgen.reference.interpreter is not available"
)

pytestmark = [
    pytest.mark.skipif(not available_compilers(), reason="no g++ or clang++"),
    pytest.mark.timeout(300),
]

ROOT = Path(__file__).resolve().parent.parent
#: Every example module that declares a ring kernel.
EXAMPLES = sorted(
    p.stem for p in (ROOT / "examples").glob("*.py") if "@rg.ring_kernel" in p.read_text()
)
#: Largest float difference allowed, in units in the last place. Every float operation the examples
#: use (+ - * /, sqrt, min/max/abs) is correctly rounded in f32 both in numpy and in C++, so the
#: reference and the Metal body agree exactly; the bound leaves room for libm functions only.
ULP_BOUND = getattr(reference, "ULP_BOUND", 2)
N_MESSAGES = (
    700  # more than one batch for the 1024-slot queues when drained late, and fast on 2 cores
)


@pytest.fixture(scope="module")
def executors(tmp_path_factory):
    """example name -> (unit, MetalExecutor), every example built once."""
    work = tmp_path_factory.mktemp("metal_exec")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        built = {}
        for name in EXAMPLES:
            unit = collect(f"examples/{name}.py")
            path = work / f"{name}.metal"
            path.write_text(emit(unit)[f"{name}.metal"])
            built[name] = (unit, build_executor(path, unit.kernels, work / "build"))
        return built
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------- numpy records <-> message objects


#: Strings for Str fields: word_stats' stop words and prefixes among them, and multi-byte UTF-8.
WORDS = [
    "the",
    "a",
    "an",
    "and",
    "of",
    "undo",
    "nonstop",
    "unicode",
    "ring",
    "kernels",
    "héllo",
    "ünïcödé ✓",
    "",
]


def _random_value(t, rng: np.random.Generator):
    if isinstance(t, ScalarType):
        if t.is_float:
            return t(rng.standard_normal() * 60)
        if t.kind == "bool":
            return t(rng.integers(0, 2))
        return t(rng.integers(0 if t.kind == "uint" else -3000, 3000))
    if isinstance(t, ArrayType):
        return [_random_value(t.elem, rng) for _ in range(t.length)]
    if isinstance(t, StrType):
        word = WORDS[rng.integers(len(WORDS))]
        while len(word.encode()) > t.max_bytes:
            word = word[:-1]
        return word
    if isinstance(t, ListType):
        return [_random_value(t.elem, rng) for _ in range(rng.integers(0, t.max_len + 1))]
    return _random_object(t.cls, rng)


def _random_object(cls: type, rng: np.random.Generator):
    return cls(**{f.name: _random_value(f.type, rng) for f in spec_of(cls).fields})


def _random_views(cls: type, n: int, seed: int) -> np.ndarray:
    """``n`` random messages of ``cls`` as view records (ids 0..n-1 where the message has an id)."""
    rng = np.random.default_rng(seed)
    arr = np.array(
        [_canonical_row(cls, _random_object(cls, rng)) for _ in range(n)],
        dtype=layout_of(cls).dtype,
    )
    if "id" in arr.dtype.names:
        arr["id"] = np.arange(n)
    return arr


def _canonical_row(cls: type, value) -> np.void:
    """One view record with every byte a message does not use (padding, bytes past a Str's or a
    List's length) zero, from a message object, a Record or a view record."""
    if isinstance(value, np.void):
        value = records.to_object(records.from_array(cls, value))
    elif isinstance(value, records.Record):
        value = records.to_object(value)
    return records.to_numpy_message(value).array[0]


def _to_slots(cls: type, views: np.ndarray) -> np.ndarray:
    """The queue slots of ``views``: the records themselves, or their wire bytes when bridged."""
    return to_slots(cls, views, slot_dtype(cls))


def _views(cls: type, slots: np.ndarray) -> np.ndarray:
    """Output slots as canonical view records (bridged ones decoded with ``rg.decode``)."""
    bridged = layout_of(cls).is_bridged
    rows = [_canonical_row(cls, rg.decode(cls, row.tobytes()) if bridged else row) for row in slots]
    return np.array(rows, dtype=layout_of(cls).dtype) if rows else np.zeros(0, layout_of(cls).dtype)


def _random_messages(cls: type, n: int, seed: int) -> np.ndarray:
    """``n`` random messages of a direct ``cls`` as its slots (view records)."""
    return _to_slots(cls, _random_views(cls, n, seed))


def _run_reference(spec, messages: np.ndarray):
    """The reference backend's handler over ``messages`` in order: outputs, final state, faults."""
    step = reference.reference_handler(spec)
    state = records.new_state(spec.state) if spec.state is not None else None
    outputs, rejected = [], Counter()
    for row in messages:
        try:
            out = step(records.from_array(spec.input, row), state)
            outputs.extend(_canonical_row(spec.output, o) for o in out)
        except records.HandlerFault as fault:
            rejected[int(fault.reason)] += 1
    want = (
        np.array(outputs, dtype=layout_of(spec.output).dtype)
        if outputs
        else np.zeros(0, layout_of(spec.output).dtype)
    )
    return want, (state.array if state is not None else None), rejected


# ---------------------------------------------------------------- comparison


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in representable floats (0 for equal values, including equal infinities and NaNs)."""
    return ulp_distance(a, b)


def _assert_records_match(got: np.ndarray, want: np.ndarray, where: str) -> None:
    assert (
        got.shape == want.shape
    ), f"{where}: {got.shape[0]} outputs, reference has {want.shape[0]}"
    for name in want.dtype.names:
        g, w = got[name], want[name]
        base = w.dtype.base if w.dtype.subdtype else w.dtype
        if base.names:
            _assert_records_match(g, w, f"{where}.{name}")
        elif base.kind == "f":
            worst = int(_ulps(np.ascontiguousarray(g), np.ascontiguousarray(w)).max(initial=0))
            assert worst <= ULP_BOUND, f"{where}.{name}: {worst} ULPs from the reference"
        else:
            bad = np.flatnonzero((g != w).reshape(len(g), -1).any(axis=1)) if len(g) else []
            assert (
                len(bad) == 0
            ), f"{where}.{name}: first mismatch at {bad[0]}: {g[bad[0]]} != {w[bad[0]]}"


def _sorted_rows(arr: np.ndarray) -> list[bytes]:
    """The records' field bytes, sorted: a multiset that ignores order and padding (which the device
    leaves as the handler's temporaries had it)."""
    clean = np.zeros(len(arr), arr.dtype)
    for name in arr.dtype.names:
        clean[name] = arr[name]
    return sorted(clean[i].tobytes() for i in range(len(clean)))


def _only_kernel(unit):
    # the examples declare one kernel each, but for examples/pipeline.py (a graph): its entry stage
    return unit.graphs[0].kernels[0].spec if unit.graphs else unit.kernels[0]


# ---------------------------------------------------------------- the tests


def _emitted_kernel(unit, ex):
    """The example's kernel, or a skip naming why Metal left it out (an f64 kernel, for one)."""
    spec = _only_kernel(unit)
    if spec.name not in ex.kernels:
        pytest.skip(f"{spec.name} is not emitted for Metal: {skipped_kernels(unit)[spec.name]}")
    return spec


@needs_reference
@pytest.mark.parametrize("name", EXAMPLES)
def test_metal_matches_reference(executors, name):
    unit, ex = executors[name]
    spec = _emitted_kernel(unit, ex)
    views = _random_views(spec.input, N_MESSAGES, seed=7)
    run = ex.run(spec.name, _to_slots(spec.input, views), workers=1)
    want, want_state, want_rejected = _run_reference(spec, views)
    _assert_records_match(_views(spec.output, run.outputs), want, name)
    ctl = run.control
    assert int(ctl["processed"]) == N_MESSAGES
    assert int(ctl["emitted"]) == len(want)
    assert {r: int(n) for r, n in enumerate(ctl["rejected"]) if n} == dict(want_rejected)
    assert int(ctl["state"]) == Lifecycle.ACTIVE
    if spec.state is not None:
        _assert_records_match(run.state, want_state, f"{name} state")


@pytest.mark.parametrize("name", EXAMPLES)
def test_parallel_dispatch_gives_the_same_results(executors, name):
    """Four threads over the thread positions, outputs reserved in whatever order they finish."""
    unit, ex = executors[name]
    spec = _emitted_kernel(unit, ex)
    messages = _to_slots(spec.input, _random_views(spec.input, N_MESSAGES, seed=11))
    serial = ex.run(spec.name, messages, workers=1)
    parallel = ex.run(spec.name, messages, workers=4)
    assert int(parallel.control["processed"]) == N_MESSAGES
    if spec.state is not None:
        # atomics commute: the final state is exact whatever the order
        _assert_records_match(parallel.state, serial.state, f"{name} state")
    got, want = _views(spec.output, parallel.outputs), _views(spec.output, serial.outputs)
    if name == "counters":
        # seen_before depends on the order; per bin it must be exactly 0, 1, ..., count - 1
        for b in range(16):
            seen = sorted(got["seen_before"][got["bin"] == b].tolist())
            assert seen == list(range(len(seen)))
        return
    assert _sorted_rows(got) == _sorted_rows(want)


def test_full_output_queue_holds_messages_back_without_loss(executors):
    """Drained only every 8th batch, the output queue fills: batches stall and nothing is lost."""
    unit, ex = executors["vector_add"]
    spec = _only_kernel(unit)
    messages = _random_messages(spec.input, 3000, seed=3)
    run = ex.run(spec.name, messages, batch=300, drain_every=8, workers=2)
    assert int(run.control["output_stalls"]) > 0
    assert sorted(run.outputs["id"].tolist()) == list(range(3000))
    assert int(run.control["launches"]) == run.batches


@needs_reference
def test_outbox_kernel_emits_zero_one_or_two(executors):
    unit, ex = executors["threshold_filter"]
    spec = _only_kernel(unit)
    messages = _random_messages(spec.input, 500, seed=5)
    messages["value"] = np.linspace(-120, 120, 500, dtype=np.float32)
    run = ex.run(spec.name, messages, workers=2)
    want, _, _ = _run_reference(spec, messages)
    assert 0 < len(want) < 2 * len(messages)
    key = lambda a: sorted(zip(a["seq"].tolist(), a["level"].tolist()))  # noqa: E731
    assert key(run.outputs) == key(want)


def test_terminate_is_acknowledged_once_drained(executors):
    unit, ex = executors["vector_add"]
    spec = _only_kernel(unit)
    run = ex.run(spec.name, _random_messages(spec.input, 50, seed=1), terminate=True)
    assert int(run.control["state"]) == Lifecycle.TERMINATED
    assert int(run.control["processed"]) == 50


FAULTY = """
import ringgen as rg
from ringgen.types import Array, i32, i64


@rg.message
class Job:
    id: i64
    num: i32
    den: i32
    pick: i32
    table: Array[i32, 4]


@rg.message
class Done:
    id: i64
    quotient: i32
    picked: i32


@rg.ring_kernel
def faulty(j: Job) -> Done:
    return Done(id=j.id, quotient=j.num // j.den, picked=j.table[j.pick])
"""


@needs_reference
def test_faults_are_counted_by_reason_like_the_reference(tmp_path):
    """Division by zero and an index out of range reject the message, counted by Reason."""
    path = tmp_path / "faulty_jobs.py"
    path.write_text(FAULTY)
    unit = collect(str(path))
    metal = tmp_path / "faulty_jobs.metal"
    metal.write_text(emit(unit)["faulty_jobs.metal"])
    ex = build_executor(metal, unit.kernels, tmp_path / "build")
    spec = _only_kernel(unit)
    messages = _random_messages(spec.input, 400, seed=9)
    rng = np.random.default_rng(9)
    messages["den"] = rng.integers(-2, 3, 400)
    messages["pick"] = rng.integers(-5, 6, 400)
    run = ex.run(spec.name, messages, workers=2)
    want, _, want_rejected = _run_reference(spec, messages)
    assert (
        want_rejected[Reason.DIVISION_BY_ZERO] > 0 and want_rejected[Reason.INDEX_OUT_OF_RANGE] > 0
    )
    assert {r: int(n) for r, n in enumerate(run.control["rejected"]) if n} == dict(want_rejected)
    assert sorted(run.outputs["id"].tolist()) == sorted(want["id"].tolist())
    order = np.argsort(run.outputs["id"])
    _assert_records_match(run.outputs[order], want, "faulty")


@pytest.mark.skipif("clang++" not in available_compilers(), reason="clang++ not installed")
def test_clang_built_executor_agrees_with_gxx(executors, tmp_path):
    unit, gxx = executors["array_math"]
    spec = _only_kernel(unit)
    clang = build_executor(gxx.metal_path, unit.kernels, tmp_path, compiler="clang++")
    messages = _random_messages(spec.input, 200, seed=4)
    a = gxx.run(spec.name, messages).outputs
    b = clang.run(spec.name, messages).outputs
    _assert_records_match(b, a, "array_math clang++ vs g++")


# ---------------------------------------------------------------- bridged messages

NOTES = """
import ringgen as rg
from ringgen.types import List, Str, f32, i32, i64


@rg.message
class Note:
    id: i64
    text: Str[24]
    vals: List[f32, 8]


@rg.message
class Summary:
    id: i64
    count: i32
    total: f32
    text: Str[24]


@rg.ring_kernel
def summarize(n: Note) -> Summary:
    total = f32(0.0)
    for v in n.vals:
        total += v
    return Summary(id=n.id, count=len(n.vals), total=total, text=n.text)
"""


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    """The bridged-message kernel above, emitted and built."""
    work = tmp_path_factory.mktemp("metal_notes")
    path = work / "notes_kernel.py"
    path.write_text(NOTES)
    unit = collect(str(path))
    metal = work / "notes_kernel.metal"
    metal.write_text(emit(unit)["notes_kernel.metal"])
    return unit, build_executor(metal, unit.kernels, work / "build")


def _slots(cls, payloads: list) -> np.ndarray:
    arr = np.zeros(len(payloads), slot_dtype(cls))
    for i, data in enumerate(payloads):
        arr[i] = np.frombuffer(data.ljust(arr.dtype.itemsize, b"\0"), dtype=arr.dtype)[0]
    return arr


@needs_reference
def test_bridged_messages_are_decoded_handled_and_encoded(notes):
    import ringgen as rg

    unit, ex = notes
    spec = _only_kernel(unit)
    rng = np.random.default_rng(12)
    words = ["", "a", "héllo", "ring kernels", "ünïcödé ✓", "x" * 24]
    msgs = [
        spec.input(
            id=i,
            text=words[i % len(words)],
            vals=[
                float(v) for v in rng.standard_normal(int(rng.integers(0, 9))).astype(np.float32)
            ],
        )
        for i in range(120)
    ]
    run = ex.run(spec.name, _slots(spec.input, [rg.encode(m) for m in msgs]), workers=2)
    got = sorted(
        (rg.decode(spec.output, row.tobytes()) for row in run.outputs), key=lambda s: int(s.id)
    )
    step = reference.reference_handler(spec)
    want = [o for m in msgs for o in step(records.to_numpy_message(m), None)]
    assert len(got) == len(want) == 120
    for g, w in zip(got, want):
        assert (int(g.id), int(g.count), str(g.text)) == (int(w.id), int(w.count), str(w.text))
        assert _ulps(np.float32([g.total]), np.float32([w.total]))[0] <= ULP_BOUND


def test_corrupt_bridged_messages_are_rejected_by_reason(notes):
    import ringgen as rg
    from ringgen.layout import layout_of as _layout

    unit, ex = notes
    spec = _only_kernel(unit)
    good = rg.encode(spec.input(id=1, text="fine", vals=[1.0, 2.0]))
    bad_magic = b"\x00" + good[1:]
    bad_crc = good[:-1] + bytes([good[-1] ^ 0xFF])  # last payload byte
    wrong_type = bytearray(good)
    wrong_type[28:32] = (_layout(spec.output).type_id).to_bytes(4, "little")
    run = ex.run(spec.name, _slots(spec.input, [good, bad_magic, bad_crc, bytes(wrong_type)]))
    rejected = {Reason(r).name: int(n) for r, n in enumerate(run.control["rejected"]) if n}
    assert rejected == {"BAD_MAGIC": 1, "BAD_CRC": 1, "BAD_TYPE": 1}
    assert int(run.control["processed"]) == 1 and len(run.outputs) == 1


# ---------------------------------------------------------------- Outbox limits and faults

BURSTS = """
import ringgen as rg
from ringgen.types import i32, i64


@rg.message
class Ask:
    id: i64
    n: i32
    den: i32


@rg.message
class Part:
    id: i64
    k: i32


@rg.ring_kernel
def burst(a: Ask, out: rg.Outbox[Part]) -> None:
    for k in range(a.n):
        out.emit(Part(id=a.id, k=k))


@rg.ring_kernel
def emit_then_fault(a: Ask, out: rg.Outbox[Part]) -> None:
    out.emit(Part(id=a.id, k=0))
    out.emit(Part(id=a.id, k=a.n // a.den))
"""


@pytest.fixture(scope="module")
def bursts(tmp_path_factory):
    work = tmp_path_factory.mktemp("metal_bursts")
    path = work / "burst_kernels.py"
    path.write_text(BURSTS)
    unit = collect(str(path))
    metal = work / "burst_kernels.metal"
    metal.write_text(emit(unit)["burst_kernels.metal"])
    return unit, build_executor(metal, unit.kernels, work / "build")


def _spec(unit, name):
    return next(k for k in unit.kernels if k.name == name)


@needs_reference
def test_outbox_in_a_loop_matches_reference_up_to_the_limit(bursts):
    unit, ex = bursts
    spec = _spec(unit, "burst")
    views = _random_views(spec.input, 300, seed=21)
    views["n"] = np.random.default_rng(21).integers(0, OUTBOX_LIMIT + 1, 300)
    run = ex.run(spec.name, views, workers=2)
    want, _, _ = _run_reference(spec, views)
    assert len(want) > 300
    key = lambda a: sorted(zip(a["id"].tolist(), a["k"].tolist()))  # noqa: E731
    assert key(run.outputs) == key(want)


@needs_reference
def test_outbox_past_the_limit_is_a_fault_like_the_reference(bursts):
    """An emit past OUTBOX_LIMIT faults the message (FAULT_OUTBOX) and, like every fault, publishes
    none of its emits."""
    unit, ex = bursts
    spec = _spec(unit, "burst")
    views = _random_views(spec.input, 3, seed=1)
    views["n"] = [OUTBOX_LIMIT, OUTBOX_LIMIT + 1, 1]
    run = ex.run(spec.name, views)
    want, _, want_rejected = _run_reference(spec, views)
    assert want_rejected == {Reason.OUTBOX_OVERFLOW: 1}
    assert int(run.control["rejected"][Reason.OUTBOX_OVERFLOW]) == 1
    assert (
        sorted(run.outputs["id"].tolist())
        == sorted(want["id"].tolist())
        == [0] * OUTBOX_LIMIT + [2]
    )


@needs_reference
def test_a_faulting_message_emits_nothing_like_the_reference(bursts):
    unit, ex = bursts
    spec = _spec(unit, "emit_then_fault")
    views = _random_views(spec.input, 200, seed=8)
    views["den"] = np.random.default_rng(8).integers(0, 3, 200)
    run = ex.run(spec.name, views, workers=2)
    want, _, want_rejected = _run_reference(spec, views)
    assert want_rejected[Reason.DIVISION_BY_ZERO] > 0
    assert {r: int(n) for r, n in enumerate(run.control["rejected"]) if n} == dict(want_rejected)
    key = lambda a: sorted(zip(a["id"].tolist(), a["k"].tolist()))  # noqa: E731
    assert key(run.outputs) == key(want)


@needs_reference
def test_language_forms_match_reference(tmp_path):
    """tests/language_kernels.py (tuples, enumerate, **, in, list literals, device helpers taking
    Array/List/Str and returning tuples, Outbox[Msg, 12]) on the Metal body, against the reference.
    """
    unit = collect(str(ROOT / "tests" / "language_kernels.py"))
    path = tmp_path / "language_kernels.metal"
    path.write_text(emit(unit)["language_kernels.metal"])
    ex = build_executor(path, unit.kernels, tmp_path / "build")
    for spec in unit.kernels:
        views = _random_views(spec.input, N_MESSAGES, seed=12)
        run = ex.run(spec.name, _to_slots(spec.input, views), workers=1)
        want, _, want_rejected = _run_reference(spec, views)
        _assert_records_match(_views(spec.output, run.outputs), want, spec.name)
        ctl = run.control
        assert int(ctl["processed"]) == N_MESSAGES
        assert {r: int(n) for r, n in enumerate(ctl["rejected"]) if n} == dict(want_rejected)
