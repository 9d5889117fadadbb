"""One order of header checks for every decoder (``ringgen.wire.header.HEADER_CHECKS``).

The same malformed bytes get the same Reason from ``rg.decode``, the cpu backend (its dead letters and
``stats().rejected``), the device codec compiled as C with gcc, and the device codec on OpenCL (PoCL).
Before, ``rg.decode`` and the cpu backend said BAD_SIZE where the device said BAD_MAGIC: a total size
below the header cut the message before its magic was looked at.
"""

from __future__ import annotations

import ctypes
import subprocess
import time
import types
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ringgen as rg
from ringgen.codegen.bridged_c import render_device_codec
from ringgen.codegen.dialect_opencl import OPENCL_DIALECT
from ringgen.codegen.header import render_header
from ringgen.layout import layout_of
from ringgen.protocol import Reason
from ringgen.wire.header import HEADER_CHECKS, HEADER_SIZE, MAGIC

import runtime_kernels as rk
from conftest import requires_gcc, requires_opencl

CLS = rk.Named
LAY = layout_of(CLS)
SLOT = LAY.slot_size
GOOD = rg.encode(CLS(id=5, name="header", scores=[1, 2, 3]), sequence=1)
OTHER_TYPE = LAY.type_id ^ 0x5A5A


def test_the_order_is_magic_size_type_crc():
    assert [(f, r) for f, r, _ in HEADER_CHECKS] == [
        ("magic", Reason.BAD_MAGIC),
        ("total_size", Reason.BAD_SIZE),
        ("type_id", Reason.BAD_TYPE),
        ("payload_crc", Reason.BAD_CRC),
    ]


def with_header(
    data: bytes = GOOD, *, magic=None, total=None, type_id=None, crc=None, cut=None
) -> bytes:
    """``data`` with header fields replaced (raw integers, any value) and cut to ``cut`` bytes."""
    buf = bytearray(data)
    for value, offset, size in ((magic, 0, 4), (total, 4, 8), (type_id, 28, 4), (crc, 40, 4)):
        if value is not None:
            buf[offset : offset + size] = value.to_bytes(size, "little")
    return bytes(buf[:cut] if cut is not None else buf)


#: (label, bytes, the Reason HEADER_CHECKS gives them), written out by hand.
TABLE = [
    ("valid", GOOD, Reason.NONE),
    ("bad magic", with_header(magic=0x1234), Reason.BAD_MAGIC),
    ("bad magic and total 10", with_header(magic=0x1234, total=10), Reason.BAD_MAGIC),
    ("bad magic and total 0", with_header(magic=0, total=0), Reason.BAD_MAGIC),
    (
        "bad magic, size, type, crc",
        with_header(magic=7, total=3, type_id=9, crc=1),
        Reason.BAD_MAGIC,
    ),
    ("total 10", with_header(total=10), Reason.BAD_SIZE),
    ("total 255", with_header(total=255), Reason.BAD_SIZE),
    ("total past the slot", with_header(total=SLOT + 1), Reason.BAD_SIZE),
    ("total 2**40", with_header(total=2**40), Reason.BAD_SIZE),
    ("total 10 and bad type", with_header(total=10, type_id=OTHER_TYPE), Reason.BAD_SIZE),
    ("bad type", with_header(type_id=OTHER_TYPE), Reason.BAD_TYPE),
    ("bad type and crc", with_header(type_id=OTHER_TYPE, crc=1), Reason.BAD_TYPE),
    ("bad crc", with_header(crc=zlib.crc32(GOOD[HEADER_SIZE:]) ^ 1), Reason.BAD_CRC),
    ("total 256, crc of nothing", with_header(total=256, crc=0), Reason.BAD_PAYLOAD),
    ("total 256, bad crc", with_header(total=256, crc=1), Reason.BAD_CRC),
    ("only the magic", with_header(cut=4), Reason.BAD_SIZE),
    ("3 bytes of the magic, its zero byte missing", with_header(cut=3), Reason.BAD_SIZE),
    ("3 bytes of another magic", with_header(magic=0x12345678, cut=3), Reason.BAD_MAGIC),
    ("2 bytes that happen to be the magic", MAGIC.to_bytes(4, "little")[:2], Reason.BAD_SIZE),
    ("empty", b"", Reason.BAD_MAGIC),
    ("256 zeros", bytes(256), Reason.BAD_MAGIC),
    ("a whole slot of 0xff", b"\xff" * SLOT, Reason.BAD_MAGIC),
]


def to_slot(data: bytes) -> bytes:
    """``data`` zero-padded to the input slot, as ``send_raw`` queues it."""
    return data + bytes(SLOT - len(data))


def host_reason(data: bytes) -> Reason:
    try:
        rg.decode(CLS, data)
    except rg.WireFormatError as exc:
        return exc.reason
    return Reason.NONE


@pytest.mark.parametrize("label,data,expected", TABLE, ids=[t[0] for t in TABLE])
def test_rg_decode_follows_the_order_on_the_bytes_and_on_the_slot(label, data, expected):
    assert host_reason(to_slot(data)) == expected
    assert host_reason(data) == expected


# ---- the device codec as C, compiled with gcc -------------------------------------------------

HARNESS = """
void rg_test_decode(const rg_u8* slots, rg_u32 slot_size, rg_u32 n, rg_u32 type_id, int* reasons,
                    Named* outs)
{
    for (rg_u32 i = 0; i < n; ++i)
        reasons[i] = rg_decode_Named(slots + (rg_u64)i * slot_size, slot_size, type_id, &outs[i]);
}
"""


def _unit(name: str):
    layouts = (LAY,)
    return layouts, types.SimpleNamespace(
        name=name,
        module=CLS.__module__,
        source_file=__file__,
        ringgen_version=rg.__version__,
        fingerprint="test",
        messages=layouts,
    )


@pytest.fixture(scope="module")
def gcc_codec(tmp_path_factory):
    if requires_gcc.args[0]:
        pytest.skip("gcc not found")
    layouts, unit = _unit("order")
    prelude = "#define RG_FN static inline\n#define RG_GLOBAL\n#define RG_PRIVATE\n"
    folder = tmp_path_factory.mktemp("order")
    src, so = folder / "codec.c", folder / "codec.so"
    src.write_text(prelude + render_header(unit) + render_device_codec(layouts) + HARNESS)
    subprocess.run(
        ["gcc", "-std=c99", "-O1", "-shared", "-fPIC", str(src), "-o", str(so)],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(so))
    lib.rg_test_decode.restype = None

    def decode(datas: list[bytes]) -> list[Reason]:
        slots = np.frombuffer(b"".join(to_slot(d) for d in datas), np.uint8).copy()
        reasons = np.zeros(len(datas), np.int32)
        outs = np.zeros(len(datas), LAY.dtype)
        lib.rg_test_decode(
            slots.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_uint32(SLOT),
            ctypes.c_uint32(len(datas)),
            ctypes.c_uint32(LAY.type_id),
            reasons.ctypes.data_as(ctypes.c_void_p),
            outs.ctypes.data_as(ctypes.c_void_p),
        )
        return [Reason(int(r)) for r in reasons]

    return decode


def test_gcc_device_codec_gives_the_table_reasons(gcc_codec):
    assert gcc_codec([t[1] for t in TABLE]) == [t[2] for t in TABLE]


# ---- the cpu backend ----------------------------------------------------------------------------


def cpu_reasons(datas: list[bytes]) -> tuple[list[Reason], dict]:
    """Reasons of the dead letters of ``datas`` on the cpu backend, and its rejected counters."""
    with rg.launch(rk.summarize, backend="cpu", dead_letters=True, capacity=1024) as k:
        for d in datas:
            k.send_raw(d)
        bad = sum(1 for d in datas if host_reason(d) != Reason.NONE)
        letters, deadline = [], time.monotonic() + 30
        while len(letters) < bad and time.monotonic() < deadline:
            letters += k.receive_dead_letters()
            k.receive_batch(timeout=0.001)
        stats = k.terminate()
    return [d.reason for d in letters], dict(stats.rejected)


def test_cpu_backend_gives_the_table_reasons_in_dead_letters_and_stats():
    datas = [t[1] for t in TABLE]
    expected = [t[2] for t in TABLE if t[2] != Reason.NONE]
    reasons, rejected = cpu_reasons(datas)
    assert reasons == expected
    assert rejected == {r.name: expected.count(r) for r in set(expected)}


# ---- random headers -----------------------------------------------------------------------------

_u32 = st.integers(0, 2**32 - 1)
headers = st.fixed_dictionaries(
    {
        "magic": st.one_of(st.none(), st.just(MAGIC), _u32),
        "total": st.one_of(
            st.none(),
            st.integers(0, 300),
            st.integers(SLOT - 4, SLOT + 4),
            st.integers(0, 2**64 - 1),
        ),
        "type_id": st.one_of(st.none(), st.just(OTHER_TYPE), _u32),
        "crc": st.one_of(st.none(), _u32),
        "cut": st.one_of(st.none(), st.integers(0, len(GOOD))),
    }
)


@settings(max_examples=300, deadline=None)
@given(fields=headers)
def test_random_headers_get_one_reason_from_rg_decode_and_gcc(gcc_codec, fields):
    data = with_header(**fields)
    on_slot = host_reason(to_slot(data))
    assert gcc_codec([data]) == [on_slot]
    total = int.from_bytes(to_slot(data)[4:12], "little")
    if total <= len(data) or on_slot in (Reason.BAD_MAGIC, Reason.BAD_SIZE):
        # the bytes given are all the check reads: the same Reason without the padding
        assert host_reason(data) == on_slot


def _corpus(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = {}
        if rng.random() < 0.4:
            f["magic"] = int(rng.choice([MAGIC, rng.integers(0, 2**32)]))
        if rng.random() < 0.4:
            f["total"] = int(rng.choice([rng.integers(0, 300), rng.integers(0, 2**40), SLOT + 1]))
        if rng.random() < 0.3:
            f["type_id"] = OTHER_TYPE
        if rng.random() < 0.3:
            f["crc"] = int(rng.integers(0, 2**32))
        if rng.random() < 0.2:
            f["cut"] = int(rng.integers(0, len(GOOD)))
        out.append(with_header(**f))
    return out


def test_random_corpus_same_reasons_on_cpu_gcc_and_rg_decode(gcc_codec):
    datas = _corpus(400, seed=11)
    on_slot = [host_reason(to_slot(d)) for d in datas]
    assert gcc_codec(datas) == on_slot
    reasons, _ = cpu_reasons(datas)
    assert reasons == [r for r in on_slot if r != Reason.NONE]
    assert len(set(on_slot)) >= 5


# ---- OpenCL (PoCL) ------------------------------------------------------------------------------

KERNEL = """
__kernel void rg_test_order(__global const rg_u8* slots, rg_u32 slot_size, rg_u32 type_id,
                            __global int* reasons)
{
    rg_u32 i = (rg_u32)get_global_id(0);
    Named m;
    reasons[i] = rg_decode_Named(slots + (size_t)i * slot_size, slot_size, type_id, &m);
}
"""


@pytest.mark.opencl
@requires_opencl
def test_opencl_device_codec_gives_the_same_reasons():
    import pyopencl as cl

    layouts, unit = _unit("ordercl")
    source = render_header(unit) + OPENCL_DIALECT.prelude() + render_device_codec(layouts) + KERNEL
    ctx = cl.create_some_context(interactive=False)
    queue = cl.CommandQueue(ctx)
    prg = cl.Program(ctx, source).build(options=["-cl-std=CL3.0"])
    datas = [t[1] for t in TABLE] + _corpus(400, seed=12)
    slots = np.frombuffer(b"".join(to_slot(d) for d in datas), np.uint8).copy()
    mf = cl.mem_flags
    d_slots = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=slots)
    reasons = np.zeros(len(datas), np.int32)
    d_reasons = cl.Buffer(ctx, mf.WRITE_ONLY, reasons.nbytes)
    prg.rg_test_order(
        queue, (len(datas),), None, d_slots, np.uint32(SLOT), np.uint32(LAY.type_id), d_reasons
    )
    cl.enqueue_copy(queue, reasons, d_reasons)
    queue.finish()
    assert [Reason(int(r)) for r in reasons] == [host_reason(to_slot(d)) for d in datas]
    assert [Reason(int(r)) for r in reasons[: len(TABLE)]] == [t[2] for t in TABLE]
