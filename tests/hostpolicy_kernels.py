"""Kernels for the spill and terminate tests and for ``bench/terminate.py`` (handlers must live in a
file: the compiler reads them)."""

import ringgen as rg
from ringgen.types import i32, i64


@rg.message
class Job:
    seq: i64
    n: i32


@rg.message
class Part:
    seq: i64
    k: i32


@rg.ring_kernel(capacity=256)
def fanout(j: Job, out: rg.Outbox[Part]) -> None:
    """Emits ``n`` replies per input (0 to OUTBOX_LIMIT)."""
    for k in range(j.n):
        out.emit(Part(seq=j.seq, k=i32(k)))


@rg.ring_kernel(capacity=64)
def spin(j: Job) -> Part:
    """Loops ``n`` times; a negative ``n`` loops forever (a handler that never returns)."""
    total = i64(0)
    i = i32(0)
    while i < j.n or j.n < 0:
        total += i64(i)
        i += 1
        if i > 1000000000:
            i = 0
    return Part(seq=j.seq, k=i32(total % 1000))
