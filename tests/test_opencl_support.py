"""Shared fixtures of the OpenCL backend tests: devices, generated packages, the reference oracle.

One test function becomes one test per OpenCL device present (filtered by ``$RINGGEN_OPENCL_DEVICE``)
and per mode the device supports, the way PyOpenCL's own test fixtures do; with no device, or no
PyOpenCL, the tests skip cleanly. Packages are generated into a temporary folder (never into
``generated/``): header, serializers and ``<name>.cl``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import pytest

from ringgen.build import collect
from ringgen.codegen import opencl as opencl_emitter
from ringgen.codegen.bridged_c import emit_device_codec
from ringgen.codegen.header import render_header
from ringgen.codegen.writer import write_unit
from ringgen.runtime.cache import load_codecs

pytestmark = pytest.mark.opencl

#: The repository root, so that ``examples.*`` imports the same modules ``collect`` loads.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    from ringgen.runtime.opencl.build import list_devices

    DEVICES = list_devices()
except Exception:  # no PyOpenCL or no ICD loader: every OpenCL test skips
    DEVICES = []


def device_params(modes: tuple[str, ...] = ("persistent", "relaunch")) -> list:
    """pytest params ``(device, mode)`` for every device present and every mode it supports.

    Besides "persistent" and "relaunch", the mode "relaunch-cl1.2" is relaunch mode built with
    ``-cl-std=CL1.2``: the OpenCL 1.x atomics path that drivers without C11 atomics (NVIDIA) take;
    "persistent-2groups" is persistent mode with two resident groups (ordered kernels keep one).
    """
    params = []
    for d in DEVICES:
        for m in modes:
            if m == "persistent" and not d.persistent:
                continue
            if m == "relaunch-cl1.2" and not d.cl_c_30:
                continue  # that device builds relaunch mode with CL1.2 already
            if m == "persistent-2groups" and not (d.persistent and d.compute_units >= 2):
                continue
            params.append(pytest.param(d, m, id=f"cl{d.index}-{m}"))
    if not params:
        params.append(
            pytest.param(
                None,
                None,
                marks=pytest.mark.skip(
                    reason="no OpenCL device present (or none matches $RINGGEN_OPENCL_DEVICE)"
                ),
            )
        )
    return params


def build_package(
    tmp: Path, target: str, body: Optional[str] = None
) -> tuple[Path, object, object]:
    """Generate ``target`` (a module path or name) into ``tmp``; return (package dir, unit, codecs).

    Every target is written, as ``ringgen build`` does; ``body`` then replaces the handler text of the
    ``.cl`` (for handlers written by hand in a test).
    """
    unit = collect(target)
    pkg = write_unit(unit, tmp)
    if body is not None:
        src = opencl_emitter.render_source(
            unit, header=render_header(unit), body=body, codec=emit_device_codec(unit)
        )
        (pkg / opencl_emitter.source_name(unit)).write_text(src)
    return pkg, unit, load_codecs(pkg)


def open_kernel(pkg: Path, unit, codecs, device, mode, kernel: Optional[str] = None, **options):
    """Launch one kernel of a generated package on ``device`` in ``mode``."""
    from ringgen.runtime.opencl import OpenclKernel

    spec = unit.kernels[0] if kernel is None else next(k for k in unit.kernels if k.name == kernel)
    if mode == "relaunch-cl1.2":
        mode, options = "relaunch", dict(options, cl_std="CL1.2")
    elif mode == "persistent-2groups":
        mode, options = "persistent", dict(options, groups=1 if spec.ordered else 2)
    return OpenclKernel.open(spec, str(pkg), codecs=codecs, device=device, mode=mode, **options)


def test_device_discovery_reports_capabilities():
    """Every device found carries the capabilities that decide its mode."""
    if not DEVICES:
        pytest.skip("no OpenCL device present")
    for d in DEVICES:
        assert d.index.count(":") == 1
        assert d.persistent == (d.svm_fine_grain and d.svm_atomics) or not d.persistent
        assert d.compute_units >= 1


def test_device_filter_env(monkeypatch):
    """$RINGGEN_OPENCL_DEVICE narrows the device list; a pattern matching nothing empties it."""
    from ringgen.runtime.opencl import build as opencl_build

    if not DEVICES:
        pytest.skip("no OpenCL device present")
    monkeypatch.setenv(opencl_build.DEVICE_ENV, "no-such-device-anywhere")
    assert opencl_build.list_devices() == []
    with pytest.raises(opencl_build.BackendUnavailableError, match="no-such-device-anywhere"):
        opencl_build.select_device()
    monkeypatch.setenv(opencl_build.DEVICE_ENV, DEVICES[0].index)
    assert [d.index for d in opencl_build.list_devices()] == [DEVICES[0].index]


# ---- handlers written by hand in the compiler's output form, on examples/vector_add.py's messages ----

#: What the compiler emits for vector_add (used until and besides ringgen.codegen.body).
VECTOR_ADD_BODY = """
RG_FN int rg_handle_vector_add(RG_PRIVATE const AddRequest* in, RG_PRIVATE AddResponse* out,
                               RG_GLOBAL void* state, RG_PRIVATE void* outbox,
                               RG_GLOBAL rg_u32* stop)
{
    out->id = in->id;
    out->sum = in->a + in->b;
    return RG_STATUS_OUTPUT;
}
"""

#: A handler indexing a 4-element array with the request id, bounds-checked as the compiler does:
#: ids outside 0..3 are an INDEX_OUT_OF_RANGE fault.
FAULTING_BODY = """
RG_FN int rg_handle_vector_add(RG_PRIVATE const AddRequest* in, RG_PRIVATE AddResponse* out,
                               RG_GLOBAL void* state, RG_PRIVATE void* outbox,
                               RG_GLOBAL rg_u32* stop)
{
    rg_f32 table[4] = {10.0f, 20.0f, 30.0f, 40.0f};
    if (in->id < 0 || in->id >= 4) {
        return RG_STATUS_FAULT_INDEX;
    }
    out->id = in->id;
    out->sum = table[in->id] + in->a;
    return RG_STATUS_OUTPUT;
}
"""

#: A handler that never returns for id == -1 (the volatile counter keeps the loop from being
#: optimized away): its kernel can never acknowledge termination.
STUCK_BODY = """
RG_FN int rg_handle_vector_add(RG_PRIVATE const AddRequest* in, RG_PRIVATE AddResponse* out,
                               RG_GLOBAL void* state, RG_PRIVATE void* outbox,
                               RG_GLOBAL rg_u32* stop)
{
    volatile rg_i64 spins = 0;
    while (in->id == -1) {
        spins += 1;
    }
    out->id = in->id;
    out->sum = in->a + in->b;
    return RG_STATUS_OUTPUT;
}
"""

VECTOR_ADD = "examples/vector_add.py"


@functools.lru_cache(maxsize=None)
def _cached_package(root: str, body_name: str):
    body = globals()[body_name]
    return build_package(Path(root) / body_name.lower(), VECTOR_ADD, body=body)


def vector_add_package(tmp_path_factory, body_name: str = "VECTOR_ADD_BODY"):
    """(package dir, unit, codecs) of vector_add with one of the hand-written bodies above."""
    root = tmp_path_factory.getbasetemp() / "opencl_pkgs"
    return _cached_package(str(root), body_name)


def requests(codecs, n: int, start: int = 0):
    """``n`` AddRequest records with ids start.. and distinct float operands."""
    import numpy as np

    arr = np.zeros(n, dtype=codecs["AddRequest"].dtype)
    arr["id"] = np.arange(start, start + n)
    arr["a"] = (np.arange(n) % 1000).astype(np.float32) * 0.5
    arr["b"] = 1.25
    return arr
