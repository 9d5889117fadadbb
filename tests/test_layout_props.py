"""Property test: the layout engine, numpy, gcc, nvcc and OpenCL agree on every random schema.

Hypothesis draws the schemas (at least 50 per run, nested messages and arrays included); then ONE
probe program per toolchain is compiled for all of them, because a compile per example would take
minutes on a 2-core machine. Each probe prints (or writes into a buffer) every ``sizeof`` and
``offsetof`` of the generated header, and the numbers must equal the layout engine's and numpy's.
The header's own static assertions are a second line of defence: a disagreement fails the compile.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import requires_gcc, requires_nvcc, requires_opencl, schemas
from hypothesis import HealthCheck, Phase, given, settings

import ringgen as rg
from ringgen.build import BuildUnit
from ringgen.codegen.header import render_header
from ringgen.codegen.serializers import compute_struct_format

N_SCHEMAS = 60


@pytest.fixture(scope="module")
def random_layouts():
    """Layouts of the classes of >= 50 hypothesis-drawn schemas, dependencies first."""
    drawn: list[list[type]] = []

    @settings(
        max_examples=N_SCHEMAS,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(schemas())
    def draw(classes):
        drawn.append(classes)

    draw()
    assert len(drawn) >= 50, f"hypothesis drew only {len(drawn)} schemas"
    return [rg.layout_of(cls) for classes in drawn for cls in classes]


@pytest.fixture(scope="module")
def probe_header(random_layouts, tmp_path_factory):
    unit = BuildUnit(
        name="probe",
        module="ringgen_test_dynamic",
        source_file="probe.py",
        messages=tuple(random_layouts),
        kernels=(),
        device_functions=(),
        fingerprint="0" * 64,
    )
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe_types.h").write_text(render_header(unit))
    return folder


def _expected(layouts) -> list[tuple[str, int]]:
    """What each probe must report, in order: size, then each field's offset and size."""
    out = []
    for m in layouts:
        out.append((f"{m.name} size", m.size))
        for f in m.fields:
            out.append((f"{m.name}.{f.name} offset", f.offset))
            out.append((f"{m.name}.{f.name} size", f.size))
    return out


def _c_probe(layouts) -> str:
    lines = ["#include <stdio.h>", '#include "probe_types.h"', "int main(void) {"]
    for m in layouts:
        lines.append(f'    printf("{m.name} size %lu\\n", (unsigned long)sizeof({m.name}));')
        for f in m.fields:
            lines.append(
                f'    printf("{m.name}.{f.name} offset %lu\\n", '
                f"(unsigned long)RG_OFFSETOF({m.name}, {f.name}));"
            )
            lines.append(
                f'    printf("{m.name}.{f.name} size %lu\\n", '
                f"(unsigned long)sizeof((({m.name}*)0)->{f.name}));"
            )
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n"


def _parse(output: str) -> list[tuple[str, int]]:
    rows = []
    for line in output.strip().splitlines():
        key, _, value = line.rpartition(" ")
        rows.append((key, int(value)))
    return rows


def test_at_least_50_schemas_with_nesting_and_arrays(random_layouts):
    from ringgen.types import ArrayType, MessageType

    kinds = {type(f.type) for m in random_layouts for f in m.fields}
    assert len(random_layouts) >= 50
    assert MessageType in kinds and ArrayType in kinds


def test_numpy_dtype_agrees_with_layout(random_layouts):
    for m in random_layouts:
        assert m.kind == "direct"
        assert m.dtype.itemsize == m.size, m.name
        assert m.dtype.alignment == m.align, m.name
        assert m.size % m.align == 0
        for f in m.fields:
            sub, offset = m.dtype.fields[f.name][:2]
            assert offset == f.offset, f"{m.name}.{f.name}"
            assert sub.itemsize == f.size, f"{m.name}.{f.name}"
            assert f.offset % f.align == 0, f"{m.name}.{f.name} misaligned"
        # fields never overlap and stay inside the struct
        spans = sorted((f.offset, f.offset + f.size) for f in m.fields)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), m.name
        assert spans[-1][1] <= m.size


def test_struct_format_agrees_with_layout(random_layouts):
    import struct

    for m in random_layouts:
        assert struct.calcsize(compute_struct_format(m)) == m.size, m.name


def test_numpy_bytes_land_at_layout_offsets(random_layouts):
    """Writing one field through numpy puts its bytes exactly at the layout's offset."""
    for m in random_layouts[:20]:
        for f in m.fields:
            arr = np.zeros(1, dtype=m.dtype)
            view = arr[f.name]
            raw = view.view(np.uint8).reshape(-1) if view.dtype.names is None else None
            if raw is None:
                continue
            raw[:] = 0xAB
            data = arr.tobytes()
            assert data[f.offset : f.offset + f.size] == b"\xab" * f.size, f"{m.name}.{f.name}"
            assert data.count(0xAB) == f.size


def _run_probe(cmd, folder, binary):
    subprocess.run(cmd, cwd=folder, check=True, capture_output=True, text=True, timeout=300)
    return subprocess.run(
        [str(binary)], check=True, capture_output=True, text=True, timeout=60
    ).stdout


@requires_gcc
def test_gcc_agrees(random_layouts, probe_header):
    (probe_header / "probe_gcc.c").write_text(_c_probe(random_layouts))
    out = _run_probe(
        [
            "gcc",
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Werror",
            "-I.",
            "probe_gcc.c",
            "-o",
            "probe_gcc",
        ],
        probe_header,
        probe_header / "probe_gcc",
    )
    assert _parse(out) == _expected(random_layouts)


@requires_nvcc
def test_nvcc_agrees(random_layouts, probe_header):
    from ringgen.check import find_nvcc

    (probe_header / "probe_nvcc.c").write_text(_c_probe(random_layouts))
    out = _run_probe(
        [find_nvcc(), "-x", "cu", "-arch=sm_90", "-I.", "probe_nvcc.c", "-o", "probe_nvcc"],
        probe_header,
        probe_header / "probe_nvcc",
    )
    assert _parse(out) == _expected(random_layouts)


@requires_opencl
def test_opencl_agrees(random_layouts, probe_header):
    import pyopencl as cl

    from ringgen.check import opencl_device

    expected = _expected(random_layouts)
    body = []
    i = 0
    for m in random_layouts:
        body.append(f"    out[{i}] = sizeof({m.name});")
        i += 1
        for f in m.fields:
            body.append(f"    out[{i}] = __builtin_offsetof({m.name}, {f.name});")
            body.append(f"    out[{i + 1}] = sizeof((({m.name}*)0)->{f.name});")
            i += 2
    src = (
        (probe_header / "probe_types.h").read_text()
        + "\n__kernel void probe(__global ulong* out) {\n"
        + "\n".join(body)
        + "\n}\n"
    )
    device, _ = opencl_device()
    ctx = cl.Context([device])
    queue = cl.CommandQueue(ctx)
    prog = cl.Program(ctx, src).build()
    result = np.zeros(len(expected), dtype=np.uint64)
    buf = cl.Buffer(ctx, cl.mem_flags.WRITE_ONLY, result.nbytes)
    prog.probe(queue, (1,), None, buf)
    cl.enqueue_copy(queue, result, buf)
    queue.finish()
    assert list(zip([k for k, _ in expected], result.tolist())) == expected
