"""The same device codec text, compiled as OpenCL C 3.0 with the OpenCL prelude and run on PoCL.

A kernel decodes every slot of a corrupted-and-valid corpus and re-encodes the valid ones; the Reasons
must be the host's and the re-encoded bytes ``rg.encode``'s (same header fields).
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import ringgen as rg
from ringgen.codegen.bridged_c import render_device_codec
from ringgen.codegen.dialect_opencl import OPENCL_DIALECT
from ringgen.codegen.header import render_header
from ringgen.layout import layout_of

from conftest import requires_opencl
from test_bridged_device_codec import (
    CLASSES,
    LAY,
    SLOT,
    FzMsg,
    corrupt,
    host_reason,
    normalise,
    rand_msg,
)

pytestmark = [pytest.mark.opencl, requires_opencl]

KERNEL = """
__kernel void rg_test_codec(__global const rg_u8* slots, rg_u32 slot_size, rg_u32 type_id,
                            __global int* reasons, __global rg_u8* out, __global rg_u32* totals)
{
    rg_u32 i = (rg_u32)get_global_id(0);
    FzMsg m;
    int r = rg_decode_FzMsg(slots + (size_t)i * slot_size, slot_size, type_id, &m);
    reasons[i] = r;
    totals[i] = r == 0 ? rg_encode_FzMsg(&m, out + (size_t)i * slot_size, 0, 7u, 9u, (rg_u64)i) : 0u;
}
"""


def test_opencl_codec_matches_host():
    import pyopencl as cl

    layouts = tuple(layout_of(c) for c in CLASSES)
    unit = types.SimpleNamespace(
        name="fuzzcl",
        module=__name__,
        source_file=__file__,
        ringgen_version=rg.__version__,
        fingerprint="test",
        messages=layouts,
    )
    # the order of templates/opencl/kernel.cl.j2: header, prelude, (ring.h), codec
    source = render_header(unit) + OPENCL_DIALECT.prelude() + render_device_codec(layouts) + KERNEL
    ctx = cl.create_some_context(interactive=False)
    queue = cl.CommandQueue(ctx)
    prg = cl.Program(ctx, source).build(options=["-cl-std=CL3.0"])

    rng = np.random.default_rng(7)
    base = [rg.encode(rand_msg(rng), sequence=i) for i in range(200)]
    n = 4000
    slots = np.zeros((n, SLOT), dtype=np.uint8)
    for i in range(n):
        data = base[int(rng.integers(len(base)))]
        if i % 3 == 0:
            slots[i, : len(data)] = np.frombuffer(data, np.uint8)
        else:
            slots[i] = np.frombuffer(bytes(corrupt(rng, data)[0]), np.uint8)
    mf = cl.mem_flags
    d_slots = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=slots)
    reasons = np.zeros(n, np.int32)
    totals = np.zeros(n, np.uint32)
    out = np.zeros((n, SLOT), np.uint8)
    d_reasons = cl.Buffer(ctx, mf.WRITE_ONLY, reasons.nbytes)
    d_totals = cl.Buffer(ctx, mf.WRITE_ONLY, totals.nbytes)
    d_out = cl.Buffer(ctx, mf.WRITE_ONLY, out.nbytes)
    prg.rg_test_codec(
        queue,
        (n,),
        None,
        d_slots,
        np.uint32(SLOT),
        np.uint32(LAY.type_id),
        d_reasons,
        d_out,
        d_totals,
    )
    for host, dev in ((reasons, d_reasons), (totals, d_totals), (out, d_out)):
        cl.enqueue_copy(queue, host, dev)
    queue.finish()
    valid = 0
    for i in range(n):
        expected, obj = host_reason(slots[i].tobytes())
        assert reasons[i] == expected, (i, int(reasons[i]), expected.name)
        if expected != 0:
            continue
        valid += 1
        got = out[i, : totals[i]].tobytes()
        if i % 3 == 0:  # an uncorrupted message: the device writes exactly rg.encode's bytes
            assert got == rg.encode(obj, sender=7, receiver=9, sequence=i, timestamp=0)
        else:  # a corruption that stayed valid (a bool byte of 0x61 stays 0x61): same values
            assert normalise(rg.decode(FzMsg, got)) == normalise(obj)
    assert valid > n // 4
