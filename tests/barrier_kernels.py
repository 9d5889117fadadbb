"""Kernels the barrier tests run on every host backend and PoCL: no rg.now() (OpenCL C has no clock),
integer state, so every backend agrees exactly. Each test uses barriers of its own: a broken barrier
stays broken until it is reset."""

import ringgen as rg
from ringgen.types import Array, i32

#: parties: the two kernels of each pair below
turns = rg.barrier("bk_turns", parties=2)
faulting = rg.barrier("bk_faulting", parties=2)
leaving = rg.barrier("bk_leaving", parties=2)


@rg.message
class Go:
    step: i32
    index: i32  # an index into the state: out of range faults the handler before its wait


@rg.message
class Went:
    step: i32
    count: i32


@rg.state
class Tally:
    counts: Array[i32, 2]


@rg.ring_kernel(ordered=True)
def turn_a(m: Go, t: Tally) -> Went:
    t.counts[m.index] = t.counts[m.index] + 1
    rg.barrier_wait(turns)
    return Went(step=m.step, count=t.counts[m.index])


@rg.ring_kernel(ordered=True)
def turn_b(m: Go, t: Tally) -> Went:
    t.counts[m.index] = t.counts[m.index] + 3
    rg.barrier_wait(turns)
    return Went(step=m.step, count=t.counts[m.index])


@rg.ring_kernel(ordered=True)
def fault_a(m: Go, t: Tally) -> Went:
    t.counts[m.index] = t.counts[m.index] + 1
    rg.barrier_wait(faulting)
    return Went(step=m.step, count=t.counts[m.index])


@rg.ring_kernel(ordered=True)
def fault_b(m: Go, t: Tally) -> Went:
    t.counts[m.index] = t.counts[m.index] + 1
    rg.barrier_wait(faulting)
    return Went(step=m.step, count=t.counts[m.index])


@rg.ring_kernel(ordered=True)
def leave_a(m: Go) -> Went:
    rg.barrier_wait(leaving)
    return Went(step=m.step, count=0)


@rg.ring_kernel(ordered=True)
def leave_b(m: Go) -> Went:
    rg.barrier_wait(leaving)
    return Went(step=m.step, count=0)


stopping = rg.barrier("bk_stopping", parties=2)


@rg.ring_kernel(ordered=True)
def stop_a(m: Go) -> Went:
    rg.barrier_wait(stopping)
    return Went(step=m.step, count=0)


@rg.ring_kernel(ordered=True)
def stop_b(m: Go) -> Went:
    rg.barrier_wait(stopping)
    return Went(step=m.step, count=0)


spread = rg.barrier("bk_spread", parties=2)


@rg.ring_kernel
def spread_a(m: Go) -> Went:
    rg.barrier_wait(spread)
    return Went(step=m.step, count=0)
