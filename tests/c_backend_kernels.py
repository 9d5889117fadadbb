"""Kernels for tests/test_c_backend.py (handlers must live in a file: the compiler reads them)."""

import ringgen as rg
from ringgen.types import i64, u64


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
