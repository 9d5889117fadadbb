"""Eight one-message-in, one-out stages for the per-hop measurements of tests/test_graph_device.py:
``hops(n)`` is ``hop0 >> hop1 >> ... >> hop{n-1}``; each adds its number, so a reply tells which
stages it went through."""

import ringgen as rg
from ringgen.types import i64


@rg.message
class Hop:
    id: i64
    v: i64


@rg.ring_kernel
def hop0(m: Hop) -> Hop:
    return Hop(id=m.id, v=m.v + 1)


@rg.ring_kernel
def hop1(m: Hop) -> Hop:
    return Hop(id=m.id, v=m.v + 2)


@rg.ring_kernel
def hop2(m: Hop) -> Hop:
    return Hop(id=m.id, v=m.v + 3)


@rg.ring_kernel
def hop3(m: Hop) -> Hop:
    return Hop(id=m.id, v=m.v + 4)


@rg.ring_kernel
def hop4(m: Hop) -> Hop:
    return Hop(id=m.id, v=m.v + 5)


@rg.ring_kernel
def hop5(m: Hop) -> Hop:
    return Hop(id=m.id, v=m.v + 6)


@rg.ring_kernel
def hop6(m: Hop) -> Hop:
    return Hop(id=m.id, v=m.v + 7)


@rg.ring_kernel
def hop7(m: Hop) -> Hop:
    return Hop(id=m.id, v=m.v + 8)


STAGES = (hop0, hop1, hop2, hop3, hop4, hop5, hop6, hop7)


def hops(n: int):
    """The linear graph of the first ``n`` stages (1 <= n <= 8)."""
    return rg.pipeline(*STAGES[:n], name=f"hops{n}")
