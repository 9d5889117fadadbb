"""Python evaluates operands and arguments left to right and raises the first fault it meets; C
leaves the order of a call's arguments and of an operator's operands unspecified (gcc evaluated
``min(a, b)``'s ``b`` first), and the fault helpers keep the first fault *they* set. The body
printer sequences every operand or argument that can fault, but the last, into a temporary with
the comma operator (``ExprPrinter.in_order``), and the checked indices of an indexed base before
its own index (``ExprPrinter.e_Index``), so every backend reports the reason Python does.

Found by the generated kernels (seed 23, 160 kernels): ``min(x if (v % v) >= ... else x,
a[i] % ...)`` faulted DIVISION_BY_ZERO on the reference and INDEX_OUT_OF_RANGE on ``c`` and the
Metal shim (gcc), which evaluated the second argument first.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import pytest

import ringgen as rg
from ringgen.build import collect
from ringgen.codegen.body import emit_body
from ringgen.testing import check_module
from ringgen.testing.runners import cpu_runners

sys.path.insert(0, str(Path(__file__).resolve().parent))

RUNNERS, ABSENT = cpu_runners(timeout=30.0)

#: Every message faults twice in one expression, with two reasons: a zero divisor (``m.x - m.x``)
#: and an index past the array (``4 + m.id - m.id``); which one Python meets first is the reason.
ORDER = """
import ringgen as rg
from ringgen.types import Array, i32, i64


@rg.message
class Req:
    id: i64
    x: i32
    a: Array[i32, 4]
    g: Array[Array[i32, 2], 2]


@rg.message
class Res:
    id: i64
    r: i32
    b: bool


@rg.device
def pick(p: i32, q: i32) -> i32:
    return p - q


@rg.ring_kernel
def div_first_min(m: Req) -> Res:
    return Res(id=m.id, r=min(m.x // (m.x - m.x), m.a[i64(4) + m.id - m.id]), b=False)


@rg.ring_kernel
def index_first_max(m: Req) -> Res:
    return Res(id=m.id, r=max(m.a[i64(4) + m.id - m.id], m.x % (m.x - m.x)), b=False)


@rg.ring_kernel
def div_first_add(m: Req) -> Res:
    return Res(id=m.id, r=(m.x // (m.x - m.x)) + m.a[i64(4) + m.id - m.id], b=False)


@rg.ring_kernel
def index_first_compare(m: Req) -> Res:
    return Res(id=m.id, r=i32(0), b=m.a[i64(4) + m.id - m.id] < m.x // (m.x - m.x))


@rg.ring_kernel
def div_first_call(m: Req) -> Res:
    return Res(id=m.id, r=pick(m.x // (m.x - m.x), m.a[i64(4) + m.id - m.id]), b=False)


@rg.ring_kernel
def index_first_nested(m: Req) -> Res:
    return Res(id=m.id, r=m.g[i64(4) + m.id - m.id][m.x // (m.x - m.x)], b=False)


@rg.ring_kernel
def three_arguments(m: Req) -> Res:
    v = min(m.a[i64(4) + m.id - m.id], m.x // (m.x - m.x), m.a[i64(5) + m.id - m.id])
    return Res(id=m.id, r=v, b=False)
"""


#: The reason Python meets first, per kernel of ORDER.
FIRST = {
    "div_first_min": "DIVISION_BY_ZERO",
    "index_first_max": "INDEX_OUT_OF_RANGE",
    "div_first_add": "DIVISION_BY_ZERO",
    "index_first_compare": "INDEX_OUT_OF_RANGE",
    "div_first_call": "DIVISION_BY_ZERO",
    "index_first_nested": "INDEX_OUT_OF_RANGE",
    "three_arguments": "INDEX_OUT_OF_RANGE",
}


def test_the_reference_faults_with_the_reason_python_meets_first(module_file):
    """The oracle itself (the cpu backend runs the reference interpreter): each message once."""
    mod = importlib.import_module(module_file(ORDER).stem)
    for name, reason in FIRST.items():
        with rg.launch(getattr(mod, name), backend="cpu") as k:
            k.send_batch(
                [mod.Req(id=i, x=3 + i, a=[1, 2, 3, 4], g=[[1, 2], [3, 4]]) for i in range(3)]
            )
            deadline = time.monotonic() + 30
            while k.stats().processed < 3:
                assert time.monotonic() < deadline, f"{name}: not processed"
                time.sleep(0.01)
        assert k.stats().telemetry.rejected == {reason: 3}, name


@pytest.mark.skipif(not RUNNERS, reason=f"no CPU backend present: {ABSENT}")
def test_every_backend_reports_the_fault_python_meets_first(tmp_path):
    """Every CPU backend (c, the c backend, PoCL persistent and relaunch, the Metal shim) agrees
    with the reference, fault reasons included (``check_module`` compares them)."""
    report = check_module(ORDER, RUNNERS, tmp_path, seed=5, n_messages=24)
    assert all(report.ran.get(r.name, 0) == len(FIRST) for r in RUNNERS), report.ran


def test_the_printer_sequences_faulting_operands_and_leaves_the_rest_alone(module_file):
    unit = collect(module_file(ORDER))
    text = emit_body(unit)
    handler = text.split("rg_handle_div_first_min(", 1)[1].split("\n}\n", 1)[0]
    # the divisor's quotient is taken into a temporary before the index is evaluated
    assert "rg_seq" in handler and "rg_py_min_i32(rg_seq" in handler
    three = text.split("rg_handle_three_arguments(", 1)[1].split("\n}\n", 1)[0]
    assert three.count("rg_seq") >= 4  # two temporaries, each declared and assigned, then used
    nested = text.split("rg_handle_index_first_nested(", 1)[1].split("\n}\n", 1)[0]
    # the base's index goes into a temporary before the index that divides is evaluated
    assert "(rg_ix" in nested and "->g[rg_ix" in nested
    plain = emit_body(collect(module_file(ORDER.replace("m.x // (m.x - m.x)", "m.x"))))
    assert "rg_seq" not in plain.split("rg_handle_div_first_min(", 1)[1].split("\n}\n", 1)[0]
