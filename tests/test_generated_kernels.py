"""Generated kernels on every CPU backend, against the reference (issue 10, part 1).

Hypothesis draws whole kernel modules (``ringgen.testing.kernel_modules``): every shape, schemas over
every scalar type with odd sizes and alignments, arrays, nested and bridged messages, boundary-valued
messages. Each module is built once and each of its kernels runs on the reference and on plain C,
OpenCL persistent and relaunch (PoCL) and the Metal shim executor; outputs, final state and fault
counts must agree. A failure shrinks to a minimal module and prints it as Python source with the
message seed and hypothesis' reproduction blob.

``RINGGEN_GEN_KERNELS`` sets how many kernels a run checks (default 64: eight per shape).
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, note, reject, seed, settings
from hypothesis import strategies as st

from ringgen.codegen.body_expr import ExprPrinter
from ringgen.errors import HandlerError
from ringgen.testing import (
    SHAPES,
    MismatchError,
    Profile,
    check_module,
    cpu_runners,
    kernel_modules,
)

pytestmark = [pytest.mark.opencl, pytest.mark.timeout(600)]

KERNELS = int(os.environ.get("RINGGEN_GEN_KERNELS", "64"))
#: The generator's seed: fixed (0) by default, so that CI checks the same 64 kernels on every run and
#: a red run is a regression, not a new random find; RINGGEN_GEN_SEED=random explores (and is how
#: the open disagreements in docs/testing.md were found), any integer picks another fixed set.
GEN_SEED = os.environ.get("RINGGEN_GEN_SEED", "0")
#: Shrinking re-runs a failing module many times on every backend; a run that failed once is
#: reported with its module and seed at once instead (RINGGEN_GEN_SHRINK=1 shrinks it).
PHASES = (Phase.explicit, Phase.reuse, Phase.generate) + (
    (Phase.shrink,) if os.environ.get("RINGGEN_GEN_SHRINK") == "1" else ()
)
#: Kernels per generated module: the module is compiled once per backend for all of them.
PER_MODULE = 2
MODULES_PER_SHAPE = max(1, math.ceil(KERNELS / (PER_MODULE * len(SHAPES))))
N_MESSAGES = 48

RUNNERS, ABSENT = cpu_runners(timeout=30.0)
#: What ran, over the whole file: backend -> kernels, shape -> kernels, and Metal's skips.
RAN: Counter = Counter()
SHAPES_RAN: Counter = Counter()
SKIPPED: Counter = Counter()


def _modules(shape: str):
    """Modules of PER_MODULE kernels of ``shape``; half of them without f64, so Metal runs them."""
    return st.booleans().flatmap(
        lambda f64: kernel_modules(
            shapes=(shape,), kernels=(PER_MODULE, PER_MODULE), profile=Profile(f64=f64)
        )
    )


def check(module, tmp_path, seed: int, runners=None) -> None:
    """Run ``module`` through every CPU backend; a module the compiler folds to a constant fault
    (a literal zero divisor, a constant index out of range) is not a test case."""
    note(module.source)
    try:
        report = check_module(
            module,
            RUNNERS if runners is None else runners,
            tmp_path,
            seed=seed,
            n_messages=N_MESSAGES,
        )
    except HandlerError as exc:
        if "by zero" in exc.message or "out of range" in exc.message:
            reject()
        raise
    RAN.update(report.ran)
    SHAPES_RAN.update(report.shapes)
    for backend, kernels in report.skipped.items():
        SKIPPED[backend] += len(kernels)


@pytest.mark.skipif(not RUNNERS, reason=f"no CPU backend present: {ABSENT}")
@pytest.mark.parametrize("shape", SHAPES)
def test_generated_kernels_agree_with_the_reference(shape, tmp_path_factory):
    """Every backend present gives what the reference gives, for generated kernels of ``shape``."""

    @settings(
        max_examples=MODULES_PER_SHAPE,
        deadline=None,
        print_blob=True,
        phases=PHASES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(module=_modules(shape), seed=st.integers(0, 2**16))
    def run(module, seed):
        check(module, tmp_path_factory.mktemp(shape), seed)

    if GEN_SEED != "random":
        run = seed(int(GEN_SEED))(run)
    run()


def test_every_shape_and_backend_ran():
    """The file checked at least RINGGEN_GEN_KERNELS kernels, of every shape, on every backend."""
    if len(SHAPES_RAN) < len(SHAPES):
        pytest.skip("only run after every shape's test (select the whole file)")
    assert set(SHAPES_RAN) == set(SHAPES)
    for runner in RUNNERS:
        ran = RAN[runner.name] + SKIPPED[runner.name]
        assert ran >= KERNELS, f"{runner.name}: {ran} kernels, wanted {KERNELS}"
    assert sum(SHAPES_RAN.values()) >= KERNELS
    print(
        f"\nkernels per backend: {dict(RAN)}; skipped: {dict(SKIPPED)}; shapes {dict(SHAPES_RAN)}"
    )


# ---------------------------------------------------------------- a broken emitter is caught

SUBTRACT = """
import ringgen as rg
from ringgen.types import i32, i64


@rg.message
class Req:
    id: i64
    a: i32
    b: i32


@rg.message
class Res:
    id: i64
    d: i32


@rg.ring_kernel
def subtract(m: Req) -> Res:
    return Res(id=m.id, d=m.a - m.b)
"""


@pytest.mark.skipif(not RUNNERS, reason=f"no CPU backend present: {ABSENT}")
def test_a_swapped_operator_in_the_body_printer_is_caught(monkeypatch, tmp_path):
    """With the C-family body printer emitting + for -, every backend disagrees with the reference,
    and the failure names the backend and field and prints the kernel's source."""
    printed = ExprPrinter.e_Binary

    def broken(self, e):
        return printed(self, attrs.evolve(e, op="+") if e.op == "-" else e)

    monkeypatch.setattr(ExprPrinter, "e_Binary", broken)
    with pytest.raises(MismatchError) as info:
        check_module(SUBTRACT, RUNNERS, tmp_path, seed=3)
    text = str(info.value)
    assert f"{RUNNERS[0].name} disagrees with the reference" in text
    assert "field d: reference" in text
    assert "kernel subtract, seed 3, 48 messages" in text
    assert "check_module(SOURCE, runners, tmp_path, seed=3, n_messages=48)" in text
    assert "def subtract(m: Req) -> Res:\n    return Res(id=m.id, d=m.a - m.b)" in text
    monkeypatch.undo()
    check_module(SUBTRACT, RUNNERS, tmp_path / "fixed", seed=3)  # and the real printer agrees


@pytest.mark.skipif(not RUNNERS, reason=f"no CPU backend present: {ABSENT}")
def test_a_broken_emitter_is_caught_in_generated_kernels(monkeypatch, tmp_path_factory):
    """The same broken printer is found by the generator itself, in a generated module whose source
    the failure prints (not shrunk here, to keep CI fast: shrinking is hypothesis' own business)."""
    printed = ExprPrinter.e_Binary

    def broken(self, e):
        return printed(self, attrs.evolve(e, op="+") if e.op == "-" else e)

    monkeypatch.setattr(ExprPrinter, "e_Binary", broken)
    c_only = [r for r in RUNNERS if r.name == "c"] or RUNNERS[:1]

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        phases=(Phase.generate,),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(module=kernel_modules(shapes=("one_to_one",), kernels=(1, 1)), seed=st.integers(0, 99))
    def run(module, seed):
        check(module, tmp_path_factory.mktemp("broken"), seed, runners=c_only)

    with pytest.raises(MismatchError) as info:
        run()
    text = str(info.value)
    assert "disagrees with the reference" in text and " - " in text.split("--- the module")[1]


# ---------------------------------------------------------------- regressions the generator found

#: OpenCL started a state class with one field without a default all zeroed, losing ``base``'s -128
#: (the reference then raised "missing field" instead of starting ``hist`` zeroed).
STATE_PARTLY_DEFAULTED = """
import ringgen as rg
from ringgen.types import Array, i32, i64


@rg.message
class Tick:
    id: i64
    n: i32


@rg.state
class Mixed:
    hist: Array[i32, 2]
    base: i32 = -128


@rg.ring_kernel
def mixed(m: Tick, s: Mixed) -> Tick:
    rg.atomic_add(s.base, m.n)
    rg.atomic_max(s.hist[m.n % 2], m.n)
    return Tick(id=m.id, n=m.n)
"""

#: Metal kept a kernel casting an f64 literal to an integer, whose cast helper needs trunc and fmod in
#: f64: the shim build failed with "rg_trunc_f64 was not declared". Metal now skips it.
F64_LITERAL_CAST = """
import ringgen as rg
from ringgen.types import i32, i64


@rg.message
class In0:
    id: i64
    x: i32


@rg.message
class Out0:
    id: i64
    r: i32


@rg.ring_kernel
def kernel0(m: In0) -> Out0:
    return Out0(id=m.id, r=i32(2.5) + m.x)
"""


@pytest.mark.skipif(not RUNNERS, reason=f"no CPU backend present: {ABSENT}")
def test_state_with_and_without_defaults_starts_the_same_everywhere(tmp_path):
    report = check_module(STATE_PARTLY_DEFAULTED, RUNNERS, tmp_path, seed=1)
    assert report.ran == {r.name: 1 for r in RUNNERS}


@pytest.mark.skipif(not RUNNERS, reason=f"no CPU backend present: {ABSENT}")
def test_metal_skips_an_f64_literal_cast_to_an_integer(tmp_path):
    report = check_module(F64_LITERAL_CAST, RUNNERS, tmp_path, seed=1)
    assert report.ran == {r.name: 1 for r in RUNNERS if r.name != "metal-shim"}
    if any(r.name == "metal-shim" for r in RUNNERS):
        (why,) = report.skipped["metal-shim"]
        assert "Metal has no double" in why


U64_LIST_OUT = """
import ringgen as rg
from ringgen.types import List, i8, i64, u64


@rg.message
class In1:
    id: i64
    f0: i8
    f1: List[u64, 5]


@rg.message
class Out1:
    id: i64
    r0: i8
    b0: List[u64, 5]


@rg.ring_kernel
def kernel1(m: In1) -> Out1:
    return Out1(id=m.id, r0=m.f0, b0=m.f1)
"""


@pytest.mark.skipif(not RUNNERS, reason=f"no CPU backend present: {ABSENT}")
def test_a_u64_list_above_and_below_2_63_survives_exactly(tmp_path):
    """Found by the generator (bridged_out, seed 0): a decoded List[u64] of values on both sides of
    2**63 went through float64 (np.asarray of Python ints) and lost its low bits."""
    report = check_module(U64_LIST_OUT, RUNNERS, tmp_path, seed=0)
    # the c backend refuses bridged kernels (docs/c-backend.md): skipped, not compared
    assert report.ran == {r.name: 1 for r in RUNNERS if r.name != "c-backend"}


TRUNC_OF_A_FOLDED_NAN = """
import math

import ringgen as rg
from ringgen.types import f32, i64


@rg.message
class In0:
    id: i64
    x: f32


@rg.message
class Out0:
    id: i64
    t: f32
    b: f32


@rg.state
class State0:
    g0: f32


@rg.ring_kernel(ordered=True)
def tanh_of_trunc(m: In0, s: State0) -> Out0:
    s.g0 = max(f32(-0.0), f32(0.0)) / min(f32(0.0), f32(1.0))
    return Out0(id=m.id, t=math.tanh(math.trunc(s.g0)), b=math.trunc(s.g0))
"""


def test_trunc_of_a_nan_known_at_compile_time_stays_nan(tmp_path):
    """Found on PoCL by the generator (seed 1, ordered kernel0, message seed 84): PoCL 3.1 folded
    trunc() of a NaN the compiler could see to 0.0 (persistent) or garbage (relaunch)."""
    report = check_module(TRUNC_OF_A_FOLDED_NAN, RUNNERS, tmp_path, seed=1, n_messages=8)
    assert report.ran["opencl-persistent"] == 1 or "opencl-persistent" in ABSENT


DIVIDE_BY_A_LITERAL_ZERO = """
import ringgen as rg
from ringgen.types import f32, f64, i16, i64, u64


@rg.message
class In1:
    id: i64
    x: f32


@rg.message
class Out1:
    id: i64
    a: i16
    b: f32
    c: f64


@rg.ring_kernel
def kernel1(m: In1) -> Out1:
    v1 = max(i16((f32(0.5) / f32(0.0))), i16(-100))
    return Out1(id=m.id, a=v1, b=m.x / f32(0.0), c=f64(-1.0) // f64(0.0))


@rg.ring_kernel
def kernel2(m: In1) -> Out1:
    v1 = u64((f64(1.0) // f64(-0.0)))
    return Out1(id=m.id, a=i16(0), b=(f32(0.0) / f32(0.0)) + m.x, c=f64(v1))
"""


@pytest.mark.skipif(not RUNNERS, reason=f"no CPU backend present: {ABSENT}")
def test_a_literal_zero_divisor_gives_inf_and_the_range_fault_after_it(tmp_path):
    """Found on CUDA by the generator (optional seed 228, bridged_out seed 2952): x / 0.0 with a
    literal zero is undefined in C++, and nvcc folded it away with the range fault after it."""
    report = check_module(DIVIDE_BY_A_LITERAL_ZERO, RUNNERS, tmp_path, seed=1)
    assert sum(report.ran.values()) >= 2
