"""The stages bench/graph.py composes: eight kernels of one handler shape (``Val`` in, ``Val`` out,
``v + 1``), so an N-stage pipeline adds N to ``v`` and every hop costs the same."""

import ringgen as rg
from ringgen.types import i64


@rg.message
class Val:
    id: i64
    v: i64


@rg.ring_kernel
def stage1(m: Val) -> Val:
    return Val(id=m.id, v=m.v + 1)


@rg.ring_kernel
def stage2(m: Val) -> Val:
    return Val(id=m.id, v=m.v + 1)


@rg.ring_kernel
def stage3(m: Val) -> Val:
    return Val(id=m.id, v=m.v + 1)


@rg.ring_kernel
def stage4(m: Val) -> Val:
    return Val(id=m.id, v=m.v + 1)


@rg.ring_kernel
def stage5(m: Val) -> Val:
    return Val(id=m.id, v=m.v + 1)


@rg.ring_kernel
def stage6(m: Val) -> Val:
    return Val(id=m.id, v=m.v + 1)


@rg.ring_kernel
def stage7(m: Val) -> Val:
    return Val(id=m.id, v=m.v + 1)


@rg.ring_kernel
def stage8(m: Val) -> Val:
    return Val(id=m.id, v=m.v + 1)


STAGES = (stage1, stage2, stage3, stage4, stage5, stage6, stage7, stage8)
