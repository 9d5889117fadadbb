"""The two held-out Outbox kernels of issue 10 that faulted on the H200 (a 16-byte reply store into a
slot that was not 16-byte aligned): ``Bucket`` (32 bytes, 8-byte aligned) emitted 0-2 times per
input, and a one-line Outbox of a 16-byte ``{id: i64, y: f32, k: i32}``. Checked on the GPU by
tests/test_cuda_outbox_alignment.py; their text is also part of tests/cuda_alignment_kernels.py."""

import ringgen as rg
from ringgen.types import f32, f64, i32, i64, u64


# ---- kernels ----
@rg.message
class Tick:
    seq: u64
    value: i32
    px: f64


@rg.message
class Bucket:
    seq: u64
    bucket: i32
    rem: i32
    px: f64
    big: i32


@rg.ring_kernel(capacity=1024)
def bucketize(t: Tick, out: rg.Outbox[Bucket]) -> None:
    b = t.value // 7
    r = t.value % 7
    if r != 0:
        out.emit(Bucket(seq=t.seq, bucket=b, rem=r, px=t.px * 2.0, big=0))
    if t.value > 100:
        out.emit(Bucket(seq=t.seq, bucket=b, rem=r, px=t.px + 1.0, big=1))


@rg.message
class Point:
    id: i64
    x: f32


@rg.message
class Scaled:
    id: i64
    y: f32
    k: i32


@rg.ring_kernel(capacity=1024)
def scale(p: Point, out: rg.Outbox[Scaled]) -> None:
    out.emit(Scaled(id=p.id, y=p.x * 3.0, k=7))
