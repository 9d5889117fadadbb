"""Kernels for tests/test_c_backend.py (handlers must live in a file: the compiler reads them)."""

import ringgen as rg
from ringgen.types import i32, i64, u64


@rg.message
class Tick:
    seq: i64


@rg.message
class Stamp:
    seq: i64
    t: u64


@rg.ring_kernel(ordered=True)
def stamp(m: Tick) -> Stamp:
    """Replies with the kernel's clock (rg.now(): CLOCK_MONOTONIC nanoseconds on the c backend)."""
    return Stamp(seq=m.seq, t=rg.now())


@rg.message
class Burst:
    seq: i64
    n: i32


@rg.ring_kernel(capacity=256)
def burst(b: Burst, out: rg.Outbox[Tick, 12]) -> None:
    """Emits ``n`` ticks: up to 12 (the Outbox's own limit, above the default 8); 13 overflows."""
    for k in range(b.n):
        out.emit(Tick(seq=b.seq * 100 + i64(k)))
