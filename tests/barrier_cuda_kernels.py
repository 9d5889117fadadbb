"""Kernels the CUDA barrier tests run (``pytest -m gpu``): a parallel kernel whose concurrent handler
calls (threads of one resident grid) meet at a barrier of 4 parties. A module of its own, so the GPU
run compiles only these two kernels."""

import ringgen as rg
from ringgen.types import Array, i32

wave = rg.barrier("bc_wave", parties=4)
wave_f = rg.barrier("bc_wave_f", parties=4)


@rg.message
class Part:
    index: i32  # the slot this call adds to: out of range faults the call before its wait
    value: i32


@rg.message
class Whole:
    index: i32
    total: i32


@rg.state
class Slots:
    v: Array[i32, 4]


@rg.ring_kernel
def gather(m: Part, s: Slots) -> Whole:
    rg.atomic_add(s.v[m.index], m.value)
    rg.barrier_wait(wave)
    return Whole(index=m.index, total=s.v[0] + s.v[1] + s.v[2] + s.v[3])


@rg.ring_kernel
def gather_f(m: Part, s: Slots) -> Whole:
    rg.atomic_add(s.v[m.index], m.value)
    rg.barrier_wait(wave_f)
    return Whole(index=m.index, total=s.v[0] + s.v[1] + s.v[2] + s.v[3])
