"""Barriers on Metal (docs/barriers.md, "Metal: a dispatch per phase"), run through the shim.

A kernel that waits is cut at each wait into phases; a step is ``parties`` messages of one dispatch,
and each phase is a dispatch of its own, so no message starts phase j+1 before every message of its
step has finished phase j. These tests run the emitted ``.metal`` on CPU threads and compare each
step with the reference: the Python handler run on ``parties`` threads that share the state and
meet at the host barrier. Every run is bounded (pytest-timeout, thread joins with a timeout, and the
executor's batch limit), so a hang fails the test instead of stopping the suite.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import numpy as np
import pytest

import barrier_kernels as bk
import barrier_kernels_metal as bm
import ringgen as rg
from ringgen.barriers import host_barrier
from ringgen.build import collect
from ringgen.codegen.body import emit_program
from ringgen.codegen.body_phases import emit_split_program, live_across
from ringgen.codegen.metal import emit, skipped_kernels
from ringgen.codegen.writer import write_unit
from ringgen.dsl import compile_program
from ringgen.metal_shim import available_compilers, check_metal
from ringgen.metal_shim.executor import build_executor, slot_dtype
from ringgen.protocol import Lifecycle, Reason
from ringgen.reference import records
from ringgen.reference.interpreter import reference_handler

pytestmark = [
    pytest.mark.skipif(not available_compilers(), reason="no g++ or clang++"),
    pytest.mark.timeout(300),
]

#: How long a reference step may take before the test calls it a hang.
STEP_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def metal(tmp_path_factory):
    """(unit, executor) of tests/barrier_kernels_metal.py, built once (warnings are errors)."""
    work = tmp_path_factory.mktemp("metal_barrier")
    unit = collect(bm.__file__)
    ((name, text),) = emit(unit).items()
    path = work / name
    path.write_text(text)
    return unit, build_executor(path, unit.kernels, work / "build")


def _spec(unit, name):
    return next(k for k in unit.kernels if k.name == name)


def _parts(spec, pairs):
    arr = np.zeros(len(pairs), dtype=slot_dtype(spec.input))
    arr["index"] = [p[0] for p in pairs]
    arr["value"] = [p[1] for p in pairs]
    return arr


def _reference(spec, steps, barrier, state=None):
    """Run each step's messages on the reference, one thread per message, sharing the state.

    Returns (outputs per step as a Counter of tuples, faults as a Counter of Reason names, state).
    """
    handler = reference_handler(spec, raw=True)
    st = records.new_state(spec.state)
    if state is not None:
        st.array[0] = state
    outs, faults = [], Counter()
    for msgs in steps:
        host_barrier(barrier).reset()
        got, lock = [], threading.Lock()

        def party(row):
            try:
                result = handler(row, st)
            except records.HandlerFault as fault:
                with lock:
                    faults[fault.reason.name] += 1
                return
            with lock:
                got.extend(_row(r.array[0]) for r in result)

        threads = [threading.Thread(target=party, args=(row,), daemon=True) for row in msgs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(STEP_TIMEOUT_S)
        assert not any(t.is_alive() for t in threads), f"{spec.name}: a reference step hung"
        outs.append(Counter(got))
    host_barrier(barrier).reset()
    return outs, faults, st.array[0]


def _row(value):
    """A view record (or a field of one) as nested tuples, so rows can be counted."""
    if isinstance(value, np.ndarray):
        return tuple(_row(x) for x in value)
    if isinstance(value, (np.void, tuple, list)):
        items = value.tolist() if isinstance(value, np.void) else value
        return tuple(_row(x) for x in items)
    return value


def _metal_steps(run, sizes):
    """The Metal outputs cut into steps of ``sizes`` outputs each, as Counters of tuples."""
    rows = [_row(r) for r in run.outputs]
    out, at = [], 0
    for n in sizes:
        out.append(Counter(rows[at : at + n]))
        at += n
    assert at == len(rows), (at, len(rows))
    return out


def _rejected(control):
    return {Reason(r).name: int(n) for r, n in enumerate(control["rejected"]) if n}


# ---------------------------------------------------------------- what the target emits


def test_waiting_kernels_are_emitted_only_what_metal_cannot_keep_is_skipped():
    reasons = skipped_kernels(collect(bm.__file__))
    assert set(reasons) == {"two_sizes", "too_big", "keep_f64"}
    assert "f64" in reasons["keep_f64"]  # Metal has no double, with or without a barrier
    assert "barriers of different sizes" in reasons["two_sizes"]
    assert "'mb_pair_of_two' (2 parties)" in reasons["two_sizes"]
    assert "more than the input queue's capacity (16)" in reasons["too_big"]
    # the kernels of tests/test_barrier.py are emitted too
    assert skipped_kernels(collect(bk.__file__)) == {}


def test_the_emitted_source_compiles_in_the_shim(tmp_path):
    for module in (bm, bk):
        unit = collect(module.__file__)
        ((name, text),) = emit(unit).items()
        path = tmp_path / name
        path.write_text(text)
        result = check_metal(path)
        assert result.ok, result.stderr
        assert "rg_barrier_wait" not in text  # nothing spins
        assert "kernel void gather_phase1(" in text or "kernel void turn_a_phase1(" in text


def test_other_targets_keep_the_unsplit_handler():
    """The split is Metal's rendering only: the shared printer's text has no phases, and the
    split text prints non-waiting handlers exactly as the shared printer does."""
    unit = collect(bm.__file__)
    program = compile_program(unit.kernels, unit.device_functions, unit.source_file)
    shared = emit_program(program)
    assert "rg_phase0_" not in shared and "RG_FN int rg_handle_gather(" in shared
    split = emit_split_program(program)
    assert "RG_FN int rg_handle_gather(" not in split
    assert "RG_FN int rg_phase0_keep(" in split and "RG_FN int rg_phase2_keep(" in split
    assert "RG_BAR_STORAGE" not in split


def test_only_locals_live_across_a_wait_are_kept():
    program = compile_program([bm.keep.spec])
    (fn,) = program.handlers
    first, second = live_across(fn)
    assert set(first) == {"a", "arr", "b", "c", "d", "p", "unused_after"}
    assert set(second) == {"a", "arr", "b", "c", "d", "p", "one"}


def test_the_manifest_records_the_phases(tmp_path):
    out = write_unit(collect(bm.__file__), tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    kernels = {k["name"]: k for k in manifest["kernels"]}
    keep = kernels["keep"]["abi"]["metal"]
    assert keep["phases"] == ["keep_process", "keep_phase1", "keep_phase2"]
    assert keep["parties"] == 4 and keep["scratch_buffer"] == 7 and keep["scratch_bytes"] > 0
    assert "metal" in kernels["two_sizes"]["skipped"]
    assert "metal" not in kernels["gather"]["skipped"]


# ---------------------------------------------------------------- steps agree with the reference


@pytest.mark.parametrize("workers", [1, 4])
def test_gather_steps_agree_with_the_reference(metal, workers):
    """Four messages add their part into the shared state, wait, and each reads the whole: every
    reply of a step sees every part of it, step after step."""
    unit, ex = metal
    spec = _spec(unit, "gather")
    steps = [[(i, (s + 1) * 10**i) for i in range(4)] for s in range(5)]
    msgs = _parts(spec, [p for step in steps for p in step])
    run = ex.run("gather", msgs, workers=workers)
    ref_out, ref_faults, ref_state = _reference(
        spec, [_parts(spec, s) for s in steps], bm.gathering
    )
    assert _metal_steps(run, [4] * 5) == ref_out
    assert not ref_faults and not _rejected(run.control)
    assert run.state[0].tobytes() == ref_state.tobytes()
    assert run.held == 0 and int(run.control["processed"]) == 20


def test_two_waits_keep_locals_of_every_type(metal):
    """i32, i64, f32, u8, an Array and a message local live across one wait and two."""
    unit, ex = metal
    spec = _spec(unit, "keep")
    steps = [[(i, 7 * s + i - 3) for i in range(4)] for s in range(3)]
    run = ex.run("keep", _parts(spec, [p for step in steps for p in step]), workers=4)
    ref_out, ref_faults, ref_state = _reference(spec, [_parts(spec, s) for s in steps], bm.keeping)
    assert _metal_steps(run, [4] * 3) == ref_out
    assert not ref_faults and not _rejected(run.control)
    assert run.state[0].tobytes() == ref_state.tobytes()
    for row in ref_out[0]:
        value = row[1] // 3
        assert row[5] == 3 * value + 3 and row[8] == sum(v for _, v in steps[0])


def test_the_ordered_kernels_of_the_barrier_tests_agree_with_the_reference(tmp_path):
    """tests/barrier_kernels.py's turn_a (ordered=True, a plain write to state): on Metal a step
    is two of its messages; the one thread runs each phase over them in order."""
    unit = collect(bk.__file__)
    ((name, text),) = emit(unit).items()
    (tmp_path / name).write_text(text)
    ex = build_executor(tmp_path / name, unit.kernels, tmp_path / "build")
    spec = _spec(unit, "turn_a")
    steps = [[(s, 0), (s, 1)] for s in range(6)]
    msgs = np.zeros(12, dtype=slot_dtype(spec.input))
    msgs["step"] = [p[0] for step in steps for p in step]
    msgs["index"] = [p[1] for step in steps for p in step]
    run = ex.run("turn_a", msgs)
    ref_msgs = [msgs[2 * s : 2 * s + 2] for s in range(6)]
    ref_out, _, ref_state = _reference(spec, ref_msgs, bk.turns)
    assert _metal_steps(run, [2] * 6) == ref_out
    assert [r.tolist() for r in run.outputs[:4]] == [(0, 1), (0, 1), (1, 2), (1, 2)]
    assert run.state[0].tobytes() == ref_state.tobytes()


def test_ordered_metal_kernel_agrees_with_the_reference(metal):
    unit, ex = metal
    spec = _spec(unit, "in_order")
    steps = [[(i, s + i) for i in range(3)] for s in range(4)]
    run = ex.run("in_order", _parts(spec, [p for st in steps for p in st]))
    ref_out, _, ref_state = _reference(spec, [_parts(spec, s) for s in steps], bm.ordering)
    assert _metal_steps(run, [3] * 4) == ref_out
    assert run.state[0].tobytes() == ref_state.tobytes()


def test_bridged_messages_are_decoded_in_every_phase(metal):
    """A bridged input is decoded again in each phase (its slot does not change before commit), a
    message local holding a Str lives across the wait, a device function runs on both sides, and a corrupt slot is
    rejected in phase 0 without blocking its step."""
    unit, ex = metal
    spec = _spec(unit, "talk")
    words = [(0, "ab"), (1, "héllo"), (2, ""), (3, "ring kernels!")]
    msgs = [bm.Note(index=i, text=t) for i, t in words]

    def slots(payloads):
        arr = np.zeros(len(payloads), slot_dtype(spec.input))
        for i, data in enumerate(payloads):
            arr[i] = np.frombuffer(data.ljust(arr.dtype.itemsize, b"\0"), arr.dtype)[0]
        return arr

    run = ex.run("talk", slots([rg.encode(m) for m in msgs]), workers=2)
    got = [rg.decode(bm.Echo, row.tobytes()) for row in run.outputs]
    rows = [records.to_numpy_message(m).array[0] for m in msgs]
    ref_out, _, ref_state = _reference(spec, [rows[:2], rows[2:]], bm.talking)
    ref = sorted((row[0], row[2]) for step in ref_out for row in step)  # (index, text, total)
    assert sorted((int(g.index), int(g.total)) for g in got) == ref
    assert sorted((int(g.index), str(g.text)) for g in got) == sorted(words)
    assert run.state[0].tobytes() == ref_state.tobytes()
    bad = bytearray(rg.encode(msgs[0]))
    bad[0] ^= 0xFF
    run = ex.run("talk", slots([bytes(bad), rg.encode(msgs[1])]), workers=2)
    assert _rejected(run.control) == {"BAD_MAGIC": 1} and len(run.outputs) == 1
    (echo,) = [rg.decode(bm.Echo, row.tobytes()) for row in run.outputs]
    assert (int(echo.index), int(echo.total)) == (1, 2 * len("héllo".encode()) + 2)


def test_a_barrier_of_one_party_is_a_step_per_message(metal):
    unit, ex = metal
    spec = _spec(unit, "lone")
    pairs = [(i % 4, i + 1) for i in range(9)]
    run = ex.run("lone", _parts(spec, pairs), workers=4)
    totals = [int(r["total"]) for r in run.outputs]
    assert totals == list(np.cumsum([v for _, v in pairs]))  # in order: one message a step
    assert run.batches == 9


# ---------------------------------------------------------------- returning or faulting early


def test_a_fault_before_the_wait_breaks_its_step_like_the_reference(metal):
    """A message that faults before the wait can never arrive: the others of its step leave the
    wait with BARRIER_BROKEN, as on every backend; the next step is whole again (a step is one
    dispatch on Metal, so nothing of a broken step carries over)."""
    unit, ex = metal
    spec = _spec(unit, "gather_f")
    steps = [[(0, 1), (1, 10), (7, 100), (3, 1000)], [(0, 1), (1, 10), (2, 100), (3, 1000)]]
    run = ex.run("gather_f", _parts(spec, [p for st in steps for p in st]), workers=4)
    ref_out, ref_faults, ref_state = _reference(spec, [_parts(spec, s) for s in steps], bm.breaking)
    assert _rejected(run.control) == {"BARRIER_BROKEN": 3, "INDEX_OUT_OF_RANGE": 1}
    assert dict(ref_faults) == _rejected(run.control)
    assert _metal_steps(run, [0, 4]) == ref_out
    assert run.state[0].tobytes() == ref_state.tobytes()


def test_a_message_that_returns_before_the_wait_does_not_block_its_step(metal):
    """A message that returns (a reply, or None) before the wait gives the reply the unsplit handler
    gives; on Metal it has arrived for the others, who pass and see every write of the step. (The
    reference cannot judge this: there such a call never arrives and its party waits for another.)
    """
    unit, ex = metal
    spec = _spec(unit, "early_out")
    pairs = [(0, 5), (1, -7), (2, 0), (3, 9), (0, 1), (1, 2)]  # three steps of two
    run = ex.run("early_out", _parts(spec, pairs), workers=2)
    got = _metal_steps(run, [2, 1, 2])
    assert got[0] == Counter({(1, -1): 1, (0, 5 - 7): 1})  # (1, -7) replies -1 before the wait
    assert got[1] == Counter({(3, 5 - 7 + 0 + 9): 1})  # (2, 0) returns None before the wait
    assert got[2] == Counter({(0, 10): 1, (1, 10): 1})
    assert not _rejected(run.control) and int(run.control["processed"]) == 6


def test_an_outbox_keeps_its_emits_across_the_wait(metal):
    """Emits before the wait are kept with the message and published with those after it."""
    unit, ex = metal
    spec = _spec(unit, "emit_around")
    steps = [[(0, 3), (1, 4)], [(2, 5), (3, 6)]]
    run = ex.run("emit_around", _parts(spec, [p for st in steps for p in st]), workers=2)
    ref_out, _, _ = _reference(spec, [_parts(spec, s) for s in steps], bm.emitting)
    assert _metal_steps(run, [4, 4]) == ref_out
    assert Counter(tuple(r.tolist()) for r in run.outputs) >= Counter({(0, -3): 1, (0, 7): 1})


# ---------------------------------------------------------------- a step that is not whole


def test_fewer_messages_than_parties_stay_queued_until_their_step_is_whole(metal):
    """Six messages for a barrier of four: one step runs, the other two wait in the input queue
    (none passes before all parties arrived), and the run ends instead of hanging."""
    unit, ex = metal
    spec = _spec(unit, "gather")
    pairs = [(i % 4, 1) for i in range(6)]
    run = ex.run("gather", _parts(spec, pairs), workers=4)
    assert run.held == 2 and len(run.outputs) == 4
    assert [int(r["total"]) for r in run.outputs] == [4] * 4
    assert int(run.control["processed"]) == 4


def test_a_terminate_breaks_a_step_that_can_never_be_whole(metal):
    """With a terminate request, the two messages that can never make a step of four run as a
    short step: each leaves the wait with BARRIER_BROKEN, and the kernel terminates."""
    unit, ex = metal
    spec = _spec(unit, "gather")
    pairs = [(i % 4, 1) for i in range(6)]
    run = ex.run("gather", _parts(spec, pairs), workers=4, terminate=True, max_batches=50)
    assert run.held == 0 and len(run.outputs) == 4
    assert _rejected(run.control) == {"BARRIER_BROKEN": 2}
    assert int(run.control["state"]) == Lifecycle.TERMINATED
    assert run.state[0]["v"].tolist() == [
        2,
        2,
        1,
        1,
    ]  # the short step's writes before the wait stay


def test_a_step_waits_for_output_room(metal):
    """A full output queue holds the whole step back (never part of it): with 8 output slots and
    the host draining every third batch, the third step waits once, then every step completes."""
    unit, ex = metal
    spec = _spec(unit, "gather_small")
    steps = [[(i, s + 1) for i in range(4)] for s in range(4)]
    run = ex.run("gather_small", _parts(spec, [p for st in steps for p in st]), drain_every=3)
    assert [int(r["total"]) for r in run.outputs] == [4] * 4 + [12] * 4 + [24] * 4 + [40] * 4
    assert int(run.control["output_stalls"]) >= 1 and run.held == 0


def test_graphs_with_a_waiting_stage_are_refused_by_the_metal_graph_driver():
    from ringgen.codegen.metal_graph import skipped_graphs

    unit = collect(bm.__file__)
    g = rg.pipeline(bm.gather, name="mb_waiting_graph")
    assert "waits on a barrier" in skipped_graphs(unit, (g,))["mb_waiting_graph"]
