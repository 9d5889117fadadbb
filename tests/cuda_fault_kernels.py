"""A small kernel for the fault tests (tests/test_cuda_fault.py): launched with the test-only
``debug_fault`` option it dies on purpose; launched without it, it is the healthy kernel that the
same process launches next."""

import ringgen as rg
from ringgen.types import f32, i32, i64


@rg.message
class Ping:
    id: i64
    x: f32
    k: i32


@rg.ring_kernel(capacity=1024)
def ping(p: Ping) -> Ping:
    return Ping(id=p.id, x=p.x * 2.0, k=p.k + 1)
