"""A kernel of known work without a clock, for the OpenCL telemetry tests of tests/test_telemetry.py
(its own file: a package whose source calls rg.now() is refused on OpenCL as a whole)."""

import ringgen as rg
from ringgen.types import i64, u64


@rg.message
class Work:
    seq: i64
    k: i64


@rg.message
class Worked:
    seq: i64
    x: u64


@rg.ring_kernel(ordered=True)
def work(m: Work) -> Worked:
    """``k`` steps of a 64-bit LCG: a handler of known work that needs no clock (OpenCL has none)."""
    x = u64(m.seq)
    for i in range(m.k):
        x = x * u64(6364136223846793005) + u64(1442695040888963407)
    return Worked(seq=m.seq, x=x)
