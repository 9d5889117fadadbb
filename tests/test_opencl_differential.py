"""Differential tests: every example kernel, on every OpenCL device and mode, against the reference.

The same random messages go through the cpu reference backend (the user's handler run in Python) and
through the OpenCL kernel; the outputs must agree: integers exactly, floats within ``FLOAT_ULPS`` units
in the last place, state exactly. A parallel kernel with state may interleave its atomics in any order,
so there only the final state and each output field's multiset must agree (ids keep their order).
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import ringgen as rg
from ringgen.errors import QueueClosedError
from test_opencl_support import VECTOR_ADD_BODY, build_package, device_params, open_kernel

pytestmark = [pytest.mark.opencl, pytest.mark.timeout(300)]

#: Float agreement bound, in ULPs of the reference value (a handler's float arithmetic is rounded
#: per operation on both sides; the device's math library may differ by a few ULPs).
FLOAT_ULPS = 4
N_MESSAGES = 500
#: Example modules that declare ring kernels (others, such as a demo script, are skipped).
EXAMPLES = sorted(
    p.stem
    for p in (Path(__file__).parent.parent / "examples").glob("*.py")
    if not p.stem.startswith("_") and "ring_kernel" in p.read_text()
)


def random_messages(dtype: np.dtype, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` records of ``dtype`` with every leaf field random: small signed and unsigned integers,
    floats around zero with a wide spread, booleans 0/1."""
    arr = np.zeros(n, dtype=dtype)

    def fill(view: np.ndarray) -> None:
        dt = view.dtype
        if dt.names:
            for name in dt.names:
                fill(view[name])
            if dt.names == ("len", "data"):  # Str[N]: ASCII text of a random length <= N
                bound = dt["data"].shape[0]
                view["len"] = rng.integers(0, bound + 1, size=view.shape)
                view["data"] = rng.integers(97, 123, size=view["data"].shape)
            elif dt.names == ("len", "items"):  # List[T, N]: a random length <= N
                view["len"] = rng.integers(0, dt["items"].shape[0] + 1, size=view.shape)
            return
        if dt.subdtype is not None:
            fill(view)
            return
        if dt.kind == "b":
            view[...] = rng.integers(0, 2, size=view.shape)
        elif dt.kind == "i":
            view[...] = rng.integers(-1000, 1000, size=view.shape)
        elif dt.kind == "u":
            view[...] = rng.integers(0, 2000, size=view.shape) % (1 << (8 * dt.itemsize))
        elif dt.kind == "f":
            view[...] = rng.normal(0.0, 10.0, size=view.shape)

    fill(arr)
    if "id" in (dtype.names or ()):
        arr["id"] = np.arange(n)
    return arr


def _drain(k) -> np.ndarray:
    """Terminate ``k`` (it drains its input) and take every reply, in order."""
    k.terminate(timeout=10.0)
    parts = [np.zeros(0, dtype=k.out_codec.dtype)] if k.out_codec else []
    while k.out_codec is not None:
        try:
            part = k.receive_batch(timeout=0.0)
        except QueueClosedError:
            break
        if isinstance(part, list):  # a bridged output comes back as objects: compare their views
            part = k.out_codec.to_array(part) if part else np.zeros(0, k.out_codec.dtype)
        parts.append(part)
    return _concat(parts) if parts else np.zeros(0)


def _concat(parts):
    out = np.zeros(sum(len(p) for p in parts), dtype=parts[0].dtype)
    at = 0
    for p in parts:
        out[at : at + len(p)] = p
        at += len(p)
    return out


def _leaves(arr: np.ndarray, prefix: str = ""):
    if arr.dtype.names:
        for name in arr.dtype.names:
            yield from _leaves(arr[name], f"{prefix}{name}.")
    else:
        yield prefix.rstrip("."), arr


def _ulps(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    ref = ref.astype(np.float64 if ref.dtype.itemsize == 8 else np.float32)
    spacing = np.spacing(np.abs(ref).astype(ref.dtype))
    both_nan = np.isnan(ref) & np.isnan(got)
    same = (ref == got) | both_nan
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64)) / spacing.astype(np.float64)
    return np.where(same, 0.0, diff)


def assert_agree(ref: np.ndarray, got: np.ndarray, *, ordered: bool, what: str) -> None:
    """Outputs agree field by field: integers exactly, floats within FLOAT_ULPS; with ``ordered``
    False only each field's multiset (sorted values) is compared."""
    assert len(got) == len(ref), f"{what}: {len(got)} outputs, the reference gave {len(ref)}"
    for (name, r), (_, g) in zip(_leaves(ref), _leaves(got)):
        if not ordered and name != "id":
            r, g = np.sort(r, axis=0), np.sort(g, axis=0)
        if r.dtype.kind == "f":
            worst = float(_ulps(r, g).max()) if r.size else 0.0
            assert worst <= FLOAT_ULPS, f"{what}: field {name} differs by {worst:g} ULPs"
        else:
            np.testing.assert_array_equal(g, r, err_msg=f"{what}: field {name}")


def _run_both(kernel, pkg, unit, codecs, device, mode, messages):
    spec = kernel.spec
    ref = rg.launch(kernel, backend="cpu", capacity=4096)
    ref.send_batch(messages, timeout=30)
    ref_out = _drain(ref)
    k = open_kernel(pkg, unit, codecs, device, mode, kernel=spec.name, capacity=4096)
    k.send_batch(messages, timeout=30)
    dev_out = _drain(k)
    assert k.stats().processed == len(messages)
    return ref, ref_out, k, dev_out


def _check(kernel, ref, ref_out, k, dev_out, what):
    spec = kernel.spec
    parallel_state = spec.state is not None and not spec.ordered
    if spec.output is not None:
        assert_agree(ref_out, dev_out, ordered=not parallel_state, what=what)
    assert k.stats().rejected == ref.stats().rejected, what
    if spec.state is not None:
        codec = k.codecs[spec.state.__name__]
        ref_state = codec.to_array([ref.state()])
        dev_state = codec.to_array([k.state()])
        assert_agree(ref_state, dev_state, ordered=True, what=f"{what} final state")


@pytest.mark.parametrize("device,mode", device_params())
def test_hand_written_vector_add_matches_reference(tmp_path, device, mode):
    """The skeleton around the compiler's output form for vector_add (independent of the body
    emitter) agrees with the reference."""
    from examples.vector_add import vector_add

    pkg, unit, codecs = build_package(tmp_path, "examples/vector_add.py", body=VECTOR_ADD_BODY)
    msgs = random_messages(codecs["AddRequest"].dtype, N_MESSAGES, np.random.default_rng(1))
    ref, ref_out, k, dev_out = _run_both(vector_add, pkg, unit, codecs, device, mode, msgs)
    _check(vector_add, ref, ref_out, k, dev_out, f"vector_add ({mode})")


@pytest.mark.parametrize("example", EXAMPLES + ["tests/runtime_kernels", "tests/language_kernels"])
@pytest.mark.parametrize(
    "device,mode", device_params(("persistent", "persistent-2groups", "relaunch", "relaunch-cl1.2"))
)
def test_example_matches_reference(tmp_path, example, device, mode):
    """Every kernel of every example (and of the runtime tests' kernels: faults by division by zero
    and out-of-range index, optional output, state without output, ordered state, bridged Str/List
    in and out; tests/language_kernels.py: tuples, enumerate, **, in, list literals, device helpers
    with Array/List/Str parameters and tuple returns, Outbox[Msg, 12]) gives what the reference gives on
    the same random messages."""
    path = example + ".py" if "/" in example else f"examples/{example}.py"
    pkg, unit, codecs = build_package(tmp_path, path)
    module = sys.modules[unit.module]
    for spec in unit.kernels:
        kernel = getattr(module, spec.func.__name__)
        msgs = random_messages(
            codecs[spec.input.__name__].dtype,
            N_MESSAGES,
            np.random.default_rng(zlib.crc32(spec.name.encode())),
        )
        ref, ref_out, k, dev_out = _run_both(kernel, pkg, unit, codecs, device, mode, msgs)
        _check(kernel, ref, ref_out, k, dev_out, f"{example}.{spec.name} ({mode})")
