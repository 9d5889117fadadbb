"""Kernels for tests/test_telemetry.py (handlers must live in a file: the compiler reads them)."""

import ringgen as rg
from ringgen.types import i64, u64


@rg.message
class Wait:
    seq: i64
    ns: u64


@rg.message
class Waited:
    seq: i64
    took: u64


@rg.ring_kernel(ordered=True)
def wait(m: Wait) -> Waited:
    """Spins on rg.now() until ``ns`` nanoseconds have passed: a handler of a known duration."""
    t0 = rg.now()
    t = t0
    while t - t0 < m.ns:
        t = rg.now()
    return Waited(seq=m.seq, took=t - t0)
