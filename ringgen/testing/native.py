"""The two in-process executors: the reference interpreter and the plain-C target (gcc + ctypes).

``run_reference`` runs the user's handler through ``ringgen.reference.interpreter`` message by message;
``build_c`` emits ``<name>.c`` (``ringgen.codegen.c_target``) with its header and builds a shared
library with gcc, and ``run_c`` drives one kernel of it over a batch. Both return per-message outputs
and statuses (``ringgen.protocol.Status``), so a test can compare message by message.
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np

from ..codegen import c_target
from ..codegen.header import render_header
from ..reference.records import HandlerFault, Record, from_array
from ..reference.interpreter import reference_handler
from ..errors import ToolchainError
from ..intrinsics import set_thread_id
from ..layout import layout_of
from ..protocol import N_REASONS, Status

__all__ = ["build_c", "run_c", "run_reference"]


def build_c(unit, workdir: Path, strict: bool = True, werror: bool = True) -> ctypes.CDLL:
    """Emit ``<name>.c`` and its header into ``workdir`` and build a shared library with gcc.

    Args:
        unit: the ``BuildUnit``.
        workdir: where the sources and the library go.
        strict: ``c_target.STRICT_FLAGS`` (floats bit-exact) or ``FAST_FLAGS``.
        werror: warnings fail the build (off for generated handlers, whose own code may compare a
            value with itself and the like).

    Raises:
        ToolchainError: gcc rejected the source (its stderr attached) or took over 120 s.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files = c_target.emit(unit)
    files[f"{unit.name}_types.h"] = render_header(unit)
    for name, text in files.items():
        (workdir / name).write_text(text)
    lib = workdir / f"lib{unit.name}.so"
    flags = c_target.STRICT_FLAGS if strict else c_target.FAST_FLAGS
    cmd = [
        "gcc",
        *flags,
        "-Wall",
        "-Wextra",
        *(["-Werror"] if werror else ["-w"]),
        "-Wno-unused-function",
        "-Wno-type-limits",
        "-Wno-sign-compare",
        "-shared",
        "-fPIC",
        str(workdir / f"{unit.name}.c"),
        "-o",
        str(lib),
        "-lm",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"gcc took over 120 s to build {unit.name}.c") from None
    if proc.returncode != 0:
        raise ToolchainError(f"gcc rejected {workdir / unit.name}.c:\n{proc.stderr.strip()}")
    return ctypes.CDLL(str(lib))


def run_c(lib, spec, inputs: np.ndarray, state: Optional[Record]):
    """Run kernel ``spec`` over ``inputs`` (view records) through the C driver, in order, message i as
    thread i; ``state`` (a Record) is updated in place.

    Returns:
        (outputs per message: a list of output records each, statuses: a list of ``Status`` ints).
    """
    limit = spec.outbox_limit
    n = len(inputs)
    out_cls = spec.output
    out_dtype = layout_of(out_cls).dtype if out_cls is not None else np.dtype("u1")
    outs = np.zeros(max(1, n * limit), dtype=out_dtype)
    counts = np.zeros(n, dtype=np.uint32)
    status = np.zeros(n, dtype=np.int32)
    faults = np.zeros(N_REASONS, dtype=np.uint64)
    inputs = np.ascontiguousarray(inputs)
    fn = getattr(lib, f"rg_run_{spec.name}")
    fn.restype = ctypes.c_uint64

    def ptr(a):
        return a.ctypes.data_as(ctypes.c_void_p)

    fn(
        ptr(inputs),
        ctypes.c_uint64(n),
        ptr(outs),
        ptr(counts),
        ptr(status),
        ptr(state.array) if state is not None else None,
        ptr(faults),
    )
    per_msg = [[outs[i * limit + j] for j in range(counts[i])] for i in range(n)]
    if int(faults.sum()) != int((status < 0).sum()):
        raise AssertionError(
            f"{spec.name}: the C driver counted {int(faults.sum())} faults for "
            f"{int((status < 0).sum())} faulting messages"
        )
    return per_msg, status.tolist()


def run_reference(spec, inputs: np.ndarray, state: Optional[Record]):
    """Run the reference handler over ``inputs`` in order (message i as thread i); ``state`` (a
    Record) is updated in place.

    Returns:
        (outputs per message, statuses), as ``run_c``.
    """
    handler = reference_handler(spec, raw=True)
    per_msg, status = [], []
    for i, row in enumerate(inputs):
        set_thread_id(i)  # the C driver runs message i as thread i
        try:
            outs = handler(from_array(spec.input, row), state)
        except HandlerFault as fault:
            per_msg.append([])
            status.append(-int(fault.reason))
            continue
        per_msg.append([o.array[0] for o in outs])
        status.append(int(Status.NONE) if spec.uses_outbox or not outs else int(Status.OUTPUT))
    return per_msg, status
