"""Stateful counters: a parallel kernel updates a histogram and totals in state with atomics."""

import ringgen as rg
from ringgen.types import Array, i32, i64, u32, u64

N_BINS = 16


@rg.state
class Totals:
    count: u64 = 0
    total: i64 = 0
    largest: i32 = -2147483648
    hist: Array[u32, 16] = 0


@rg.message
class Sample:
    id: i64
    value: i32


@rg.message
class Ack:
    id: i64
    bin: i32
    seen_before: u32  # how many samples had landed in this bin before this one


@rg.ring_kernel
def counters(s: Sample, st: Totals) -> Ack:
    rg.atomic_add(st.count, 1)
    rg.atomic_add(st.total, s.value)
    rg.atomic_max(st.largest, s.value)
    b = s.value % N_BINS  # floors like Python: always in 0..15, also for negative values
    before = rg.atomic_add(st.hist[b], 1)
    return Ack(id=s.id, bin=b, seen_before=before)
