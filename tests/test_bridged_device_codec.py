"""The device codec (ringgen.codegen.bridged_c), compiled with gcc as plain C and driven through ctypes.

Plain C is the fourth dialect of the same text (RG_FN = static inline, RG_GLOBAL/RG_PRIVATE empty), so
what passes here is what OpenCL, CUDA and Metal compile. The host codec is the oracle:

* valid messages decode to the same values as ``rg.decode``, and the device encoder writes exactly the
  bytes of ``rg.encode`` (same header fields);
* 100,000 messages, corrupted in many ways and interleaved with valid ones, each get the Reason the
  host's reference decoder gives (and, for targeted corruptions, the Reason the corruption implies).
"""

from __future__ import annotations

import ctypes
import math
import subprocess
import types
import zlib

import attrs
import numpy as np
import pytest

import ringgen as rg
from ringgen.codegen.bridged_c import render_device_codec
from ringgen.codegen.header import render_header
from ringgen.layout import layout_of
from ringgen.protocol import Reason
from ringgen.types import Array, List, Str, bool_, f32, i8, i16, i64, u8, u16, i32
from ringgen.wire import codec_for
from ringgen.wire.columnar import view_to_objects

from conftest import requires_gcc, requires_nvcc


@rg.message
class FzPt:
    a: u8
    b: i32
    ok: bool_


@rg.message
class FzInner:
    name: Str[6]
    vals: List[i16, 3]


@rg.message
class FzMsg:
    id: i64
    name: Str[12]
    pt: FzPt
    inner: FzInner
    items: List[FzInner, 3]
    prices: List[f32, 5]
    vec: Array[u16, 2]
    grid: Array[Array[i8, 2], 2]
    pts: List[FzPt, 2]
    flag: bool_
    tail: Str[3]


CLASSES = (FzPt, FzInner, FzMsg)
LAY = layout_of(FzMsg)
SLOT = LAY.slot_size

HARNESS = """
/* test entry points: one ctypes call per batch */
void rg_test_decode(const rg_u8* slots, rg_u32 slot_size, rg_u32 n, rg_u32 type_id, int* reasons,
                    FzMsg* outs)
{
    for (rg_u32 i = 0; i < n; ++i)
        reasons[i] = rg_decode_FzMsg(slots + (rg_u64)i * slot_size, slot_size, type_id, &outs[i]);
}

void rg_test_encode(const FzMsg* ins, rg_u8* slots, rg_u32 slot_size, rg_u32 n, const rg_u64* stamps,
                    rg_u32 sender, rg_u32 receiver, const rg_u64* sequences, rg_u32* totals)
{
    for (rg_u32 i = 0; i < n; ++i)
        totals[i] = rg_encode_FzMsg(&ins[i], slots + (rg_u64)i * slot_size, stamps[i], sender, receiver,
                                    sequences[i]);
}
"""

PLAIN_C_PRELUDE = "#define RG_FN static inline\n#define RG_GLOBAL\n#define RG_PRIVATE\n"


def codec_source() -> str:
    layouts = tuple(layout_of(c) for c in CLASSES)
    unit = types.SimpleNamespace(
        name="fuzz",
        module=__name__,
        source_file=__file__,
        ringgen_version=rg.__version__,
        fingerprint="test",
        messages=layouts,
    )
    return PLAIN_C_PRELUDE + render_header(unit) + render_device_codec(layouts) + HARNESS


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if requires_gcc.args[0]:
        pytest.skip("gcc not found")
    folder = tmp_path_factory.mktemp("codec")
    src, so = folder / "codec.c", folder / "codec.so"
    src.write_text(codec_source())
    subprocess.run(
        [
            "gcc",
            "-std=c99",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-shared",
            "-fPIC",
            str(src),
            "-o",
            str(so),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    dll = ctypes.CDLL(str(so))
    dll.rg_test_decode.restype = None
    dll.rg_test_encode.restype = None
    return dll


def device_decode(lib, slots: np.ndarray, type_id: int = LAY.type_id):
    n = len(slots)
    slots = np.ascontiguousarray(slots, dtype=np.uint8)
    reasons = np.zeros(n, dtype=np.int32)
    outs = np.zeros(n, dtype=LAY.dtype)
    lib.rg_test_decode(
        slots.ctypes.data_as(ctypes.c_void_p),
        ctypes.c_uint32(SLOT),
        ctypes.c_uint32(n),
        ctypes.c_uint32(type_id),
        reasons.ctypes.data_as(ctypes.c_void_p),
        outs.ctypes.data_as(ctypes.c_void_p),
    )
    return reasons, outs


def device_encode(lib, views: np.ndarray, stamps, sender, receiver, sequences):
    n = len(views)
    slots = np.full(
        (n, SLOT), 0xAB, dtype=np.uint8
    )  # garbage: the encoder must write every byte it uses
    totals = np.zeros(n, dtype=np.uint32)
    stamps = np.ascontiguousarray(stamps, dtype=np.uint64)
    sequences = np.ascontiguousarray(sequences, dtype=np.uint64)
    lib.rg_test_encode(
        views.ctypes.data_as(ctypes.c_void_p),
        slots.ctypes.data_as(ctypes.c_void_p),
        ctypes.c_uint32(SLOT),
        ctypes.c_uint32(n),
        stamps.ctypes.data_as(ctypes.c_void_p),
        ctypes.c_uint32(sender),
        ctypes.c_uint32(receiver),
        sequences.ctypes.data_as(ctypes.c_void_p),
        totals.ctypes.data_as(ctypes.c_void_p),
    )
    return slots, totals


# ---- random valid messages --------------------------------------------------------------------

ALPHABET = list("abcxyz019 _-") + ["é", "ß", "€", "中", "😀", "𝄞"]


def rand_str(rng, max_bytes: int) -> str:
    out, size = "", 0
    for _ in range(rng.integers(0, max_bytes + 1)):
        ch = ALPHABET[rng.integers(len(ALPHABET))]
        if size + len(ch.encode()) > max_bytes:
            break
        out, size = out + ch, size + len(ch.encode())
    return out


def rand_pt(rng) -> FzPt:
    return FzPt(
        int(rng.integers(0, 256)), int(rng.integers(-(2**31), 2**31)), bool(rng.integers(2))
    )


def rand_inner(rng) -> FzInner:
    return FzInner(
        rand_str(rng, 6), [int(v) for v in rng.integers(-(2**15), 2**15, rng.integers(0, 4))]
    )


def rand_msg(rng) -> FzMsg:
    return FzMsg(
        id=int(rng.integers(-(2**63), 2**63 - 1)),
        name=rand_str(rng, 12),
        pt=rand_pt(rng),
        inner=rand_inner(rng),
        items=[rand_inner(rng) for _ in range(rng.integers(0, 4))],
        prices=[float(np.float32(v)) for v in rng.normal(0, 100, rng.integers(0, 6))],
        vec=[int(v) for v in rng.integers(0, 2**16, 2)],
        grid=[[int(v) for v in rng.integers(-128, 128, 2)] for _ in range(2)],
        pts=[rand_pt(rng) for _ in range(rng.integers(0, 3))],
        flag=bool(rng.integers(2)),
        tail=rand_str(rng, 3),
    )


def to_slot(data: bytes) -> np.ndarray:
    slot = np.zeros(SLOT, dtype=np.uint8)
    slot[: len(data)] = np.frombuffer(data, np.uint8)
    return slot


def normalise(value):
    """Comparable form of a decoded message: NaNs (which never compare equal) become a marker."""
    if attrs.has(type(value)):
        return (type(value).__name__,) + tuple(
            normalise(getattr(value, a.name)) for a in attrs.fields(type(value))
        )
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def host_reason(data: bytes):
    """(Reason, message or None) from the host decoder, the oracle."""
    try:
        return Reason.NONE, rg.decode(FzMsg, data)
    except rg.WireFormatError as exc:
        return exc.reason, None


# ---- tests ------------------------------------------------------------------------------------


def test_codec_compiles_as_strict_c99_and_cxx17(tmp_path):
    if requires_gcc.args[0]:
        pytest.skip("gcc not found")
    src = tmp_path / "codec.c"
    src.write_text(codec_source())
    for cmd in (
        ["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-c"],
        ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-x", "c++", "-c"],
    ):
        subprocess.run(cmd + [str(src), "-o", str(tmp_path / "codec.o")], check=True)


CUDA_KERNEL = """
extern "C" __global__ void rg_test_codec(const rg_u8* slots, rg_u32 slot_size, rg_u32 type_id, int* reasons,
                                         rg_u8* out, rg_u32* totals)
{
    rg_u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    FzMsg m;
    int r = rg_decode_FzMsg(slots + (rg_u64)i * slot_size, slot_size, type_id, &m);
    reasons[i] = r;
    totals[i] = r == 0 ? rg_encode_FzMsg(&m, out + (rg_u64)i * slot_size, 0, 7u, 9u, i) : 0u;
}
"""


@requires_nvcc
def test_codec_compiles_as_cuda(tmp_path):
    from ringgen.check import find_nvcc
    from ringgen.codegen.dialect_cuda import CUDA_DIALECT

    layouts = tuple(layout_of(c) for c in CLASSES)
    unit = types.SimpleNamespace(
        name="fuzzcu",
        module=__name__,
        source_file=__file__,
        ringgen_version=rg.__version__,
        fingerprint="test",
        messages=layouts,
    )
    # the order of templates/cuda/kernel.cu.j2: header, prelude, then the codec
    src = tmp_path / "codec.cu"
    src.write_text(
        render_header(unit) + CUDA_DIALECT.prelude() + render_device_codec(layouts) + CUDA_KERNEL
    )
    subprocess.run(
        [
            find_nvcc(),
            "-arch=sm_90",
            "-std=c++17",
            "-Werror",
            "all-warnings",
            "-c",
            str(src),
            "-o",
            str(tmp_path / "codec.o"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )


def test_valid_messages_decode_and_reencode_identically(lib):
    rng = np.random.default_rng(1)
    msgs = [rand_msg(rng) for _ in range(2000)]
    stamps = rng.integers(0, 2**62, len(msgs), dtype=np.uint64)
    seqs = rng.integers(0, 2**62, len(msgs), dtype=np.uint64)
    host = [
        rg.encode(m, sender=7, receiver=9, sequence=int(q), timestamp=int(t))
        for m, t, q in zip(msgs, stamps, seqs)
    ]
    reasons, views = device_decode(lib, np.stack([to_slot(b) for b in host]))
    assert (reasons == 0).all(), np.unique(reasons)
    assert [normalise(o) for o in view_to_objects(FzMsg, views)] == [normalise(m) for m in msgs]
    slots, totals = device_encode(lib, views, stamps, 7, 9, seqs)
    for i, data in enumerate(host):
        assert totals[i] == len(data)
        assert slots[i, : totals[i]].tobytes() == data, f"message {i} differs"


def test_wrong_type_id_is_bad_type(lib):
    data = rg.encode(rand_msg(np.random.default_rng(2)))
    reasons, _ = device_decode(lib, to_slot(data)[None], type_id=LAY.type_id ^ 1)
    assert reasons[0] == Reason.BAD_TYPE


def _fix_crc(buf: bytearray, total: int) -> None:
    buf[40:44] = zlib.crc32(bytes(buf[256:total])).to_bytes(4, "little")


def corrupt(rng, data: bytes):
    """One corrupted copy of ``data`` (padded to a slot) and the Reason it must get, if one is implied."""
    buf = bytearray(to_slot(data).tobytes())
    total = len(data)
    kind = int(rng.integers(10))
    if kind == 0:  # magic
        buf[0:4] = int(rng.integers(0, 2**32) | 1 << 20).to_bytes(4, "little")
        return buf, Reason.BAD_MAGIC
    if kind == 1:  # total size out of range
        bad = int(rng.choice([rng.integers(0, 256), rng.integers(SLOT + 1, 2**40)]))
        buf[4:12] = bad.to_bytes(8, "little")
        return buf, Reason.BAD_SIZE
    if kind == 2:  # total size in range but wrong, CRC fixed for it
        new = int(rng.integers(256, SLOT + 1))
        buf[4:12] = new.to_bytes(8, "little")
        _fix_crc(buf, new)
        return buf, (Reason.BAD_SIZE if new > total else None)
    if kind == 3:  # type id
        buf[28:32] = (
            int.from_bytes(buf[28:32], "little") ^ int(rng.integers(1, 2**32))
        ).to_bytes(4, "little")
        return buf, Reason.BAD_TYPE
    if kind == 4:  # payload bytes flipped, CRC left alone
        for _ in range(rng.integers(1, 4)):
            buf[int(rng.integers(256, total))] ^= int(rng.integers(1, 256))
        return buf, Reason.BAD_CRC
    if kind == 5:  # the CRC field itself
        buf[40 + int(rng.integers(4))] ^= int(rng.integers(1, 256))
        return buf, Reason.BAD_CRC
    if kind == 6:  # member count, CRC fixed
        buf[256] = int(rng.choice([0, 255, rng.integers(12, 255)]))
        _fix_crc(buf, total)
        return buf, Reason.BAD_PAYLOAD
    if (
        kind == 7 and buf[265] != 0
    ):  # a byte that is never UTF-8 into the (non-empty) name, CRC fixed
        n = ~int.from_bytes(buf[265:269], "little", signed=True)
        buf[256 + 9 + 8 + int(rng.integers(n))] = int(rng.choice([0xC0, 0xC1, 0xF5, 0xF8, 0xFF]))
        _fix_crc(buf, total)
        return buf, Reason.BAD_UTF8
    # anything else: random payload bytes (the oracle decides), or a 32-bit word replaced by an
    # interesting value (counts and string headers: -1, 0, bounds, huge), CRC fixed
    if rng.integers(2):
        for _ in range(rng.integers(1, 4)):
            buf[int(rng.integers(256, total))] = int(rng.integers(256))
    else:
        at = int(rng.integers(257, max(258, total - 3)))
        word = int(rng.choice([-1, 0, 1, 2, 3, 4, 5, 6, 7, 13, -2, -7, -13, 2**31 - 1, -(2**31)]))
        buf[at : at + 4] = word.to_bytes(4, "little", signed=True)
    _fix_crc(buf, total)
    return buf, None


@pytest.mark.timeout(600)
def test_fuzz_100k_corrupted_and_valid_messages(lib):
    rng = np.random.default_rng(12345)
    base = [rg.encode(rand_msg(rng), sequence=i) for i in range(500)]
    n = 100_000
    slots = np.zeros((n, SLOT), dtype=np.uint8)
    implied = [None] * n
    for i in range(n):
        data = base[int(rng.integers(len(base)))]
        if i % 4 == 0:  # valid ones interleaved
            slots[i, : len(data)] = np.frombuffer(data, np.uint8)
            implied[i] = Reason.NONE
        else:
            buf, implied[i] = corrupt(rng, data)
            slots[i] = np.frombuffer(bytes(buf), np.uint8)
    reasons, views = device_decode(lib, slots)
    seen: dict[int, int] = {}
    for i in range(n):
        expected, obj = host_reason(slots[i].tobytes())
        seen[int(expected)] = seen.get(int(expected), 0) + 1
        assert reasons[i] == expected, (i, Reason(int(reasons[i])).name, expected.name)
        if implied[i] is not None:
            assert expected == implied[i], (i, expected.name, implied[i].name)
        if expected == Reason.NONE:
            assert normalise(view_to_objects(FzMsg, views[i : i + 1])[0]) == normalise(obj)
    # every validation Reason was exercised, and plenty of each
    print({Reason(k).name: v for k, v in sorted(seen.items())})
    for r in (
        Reason.NONE,
        Reason.BAD_MAGIC,
        Reason.BAD_SIZE,
        Reason.BAD_TYPE,
        Reason.BAD_CRC,
        Reason.BAD_PAYLOAD,
        Reason.BAD_UTF8,
    ):
        assert seen.get(int(r), 0) > 500, (r.name, seen)
