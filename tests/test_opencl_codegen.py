"""The OpenCL emitter and the shared queue protocol: what the generated text is, and that compilers
accept it (gcc for the backend-neutral ring.h, PoCL or any OpenCL device for every example's .cl).
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap

import pytest

from ringgen import __version__, protocol
from ringgen.build import collect
from ringgen.codegen import opencl as emitter
from ringgen.codegen.header import render_header
from ringgen.errors import BackendUnavailableError
from test_opencl_support import DEVICES, build_package, open_kernel

#: A C11 prelude for ring.h: what a backend supplies, spelled with GCC's __atomic built-ins.
C11_PRELUDE = """
#define RG_FN static inline __attribute__((unused))
#define RG_GLOBAL
#define rg_load_acquire_u64(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define rg_store_release_u64(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define rg_load_relaxed_u64(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define rg_store_relaxed_u64(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define rg_load_acquire_u32(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define rg_store_release_u32(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define rg_atomic_fetch_add_u64(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
"""


def _examples():
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "examples"
    return sorted(p.stem for p in root.glob("*.py") if "ring_kernel" in p.read_text())


def test_ring_h_is_rendered_from_protocol():
    """Every Lifecycle, Reason and Status value and every control field offset comes from
    ringgen.protocol; nothing backend-specific appears in it."""
    text = emitter.render_ring_h()
    for state in protocol.DEVICE_LIFECYCLE:  # STALLED is the host's verdict only
        assert f"#define RG_LIFECYCLE_{state.name} {int(state)}" in text
    for reason in protocol.Reason:
        assert f"#define RG_REASON_{reason.name} {int(reason)}" in text
    for name, _, _, _, offset in protocol.CONTROL_FIELDS:
        assert f"RG_OFFSETOF(rg_control, {name}) == {offset}" in text
    for word in ("__global", "__device__", "atomic_load_explicit", "cuda", "device const"):
        assert word not in text, f"ring.h names backend construct {word!r}"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_ring_h_compiles_and_runs_as_c11(tmp_path):
    """With a C11 prelude, gcc accepts ring.h (its layout checks hold) and a producer/consumer pair
    built from its helpers passes a million values through a ring without loss or reordering."""
    unit = collect("examples/vector_add.py")
    program = render_header(unit) + C11_PRELUDE + emitter.render_ring_h() + textwrap.dedent("""
        #include <pthread.h>
        #include <stdio.h>
        #define CAP 64u
        static rg_queue_ctl q;
        static rg_u64 slots[CAP];
        static const rg_u64 N = 1000000u;
        static void* consumer(void* arg) {
            rg_u64 head = 0, expect = 0;
            while (expect < N) {
                rg_u64 tail = rg_queue_acquire_tail(&q);
                for (; head < tail; ++head, ++expect) {
                    if (slots[head % CAP] != expect) { *(int*)arg = 1; return 0; }
                }
                rg_queue_release_head(&q, head);
            }
            return 0;
        }
        int main(void) {
            int bad = 0;
            pthread_t t;
            pthread_create(&t, 0, consumer, &bad);
            rg_u64 tail = 0;
            while (tail < N) {
                if (rg_queue_free(&q, tail, CAP) == 0u) continue;
                slots[tail % CAP] = tail;
                rg_queue_publish_tail(&q, ++tail);
            }
            pthread_join(t, 0);
            printf("%s\\n", bad ? "REORDERED" : "OK");
            return bad;
        }
    """)
    src = tmp_path / "ring_test.c"
    src.write_text(program)
    exe = tmp_path / "ring_test"
    build = subprocess.run(
        ["gcc", "-std=c11", "-O2", "-Wall", "-Werror", "-pthread", str(src), "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "OK"


def test_emitted_source_is_deterministic_and_stamped():
    unit = collect("examples/threshold_filter.py")
    first = emitter.emit(unit)
    assert first == emitter.emit(unit)
    ((name, text),) = first.items()
    assert name == "threshold_filter.cl"
    assert unit.fingerprint in text and f"ringgen {__version__}" in text
    assert "rg_threshold_filter_persistent" in text and "rg_threshold_filter_relaunch" in text
    assert "#pragma OPENCL FP_CONTRACT OFF" in text
    # The handler body is the shared one, included verbatim.
    from ringgen.codegen.body import emit_body

    assert emit_body(unit) in text


@pytest.mark.opencl
@pytest.mark.parametrize("example", _examples())
@pytest.mark.parametrize("std", ["CL3.0", "CL1.2"])
def test_every_example_compiles_on_every_device(example, std):
    """Each example's .cl builds on each device: both entry points with OpenCL C 3.0, the relaunch
    ones alone with 1.2 (the path of drivers without C11 atomics)."""
    import pyopencl as cl

    from ringgen.runtime.opencl.build import context_for

    if not DEVICES:
        pytest.skip("no OpenCL device present")
    unit = collect(f"examples/{example}.py")
    (text,) = emitter.emit(unit).values()
    for d in DEVICES:
        if std == "CL3.0" and not d.cl_c_30:
            continue
        prg = cl.Program(context_for(d), text).build(
            options=[f"-cl-std={std}", "-DRG_GROUP_SIZE=64"], devices=[d.device]
        )
        names = set(prg.kernel_names.split(";"))
        for k in unit.kernels:
            assert f"rg_{k.name}_relaunch" in names
            assert (f"rg_{k.name}_persistent" in names) == (std == "CL3.0" and d.persistent)


NOW_KERNEL = """
import ringgen as rg
from ringgen.types import i64, u64


@rg.message
class Tick:
    id: i64


@rg.message
class Stamp:
    id: i64
    at: u64


@rg.ring_kernel
def stamp(t: Tick) -> Stamp:
    return Stamp(id=t.id, at=rg.now())
"""


@pytest.mark.opencl
def test_rg_now_is_refused_with_a_clear_error(tmp_path):
    """OpenCL C has no clock: a kernel calling rg.now() is refused at launch, by name."""
    if not DEVICES:
        pytest.skip("no OpenCL device present")
    mod = tmp_path / "now_kernel.py"
    mod.write_text(NOW_KERNEL)
    pkg, unit, codecs = build_package(tmp_path / "out", str(mod))
    with pytest.raises(BackendUnavailableError, match=r"stamp: now_kernel.cl calls rg.now\(\)"):
        open_kernel(pkg, unit, codecs, DEVICES[0], "relaunch")
