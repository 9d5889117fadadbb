"""Kernels only the OpenCL relaunch barrier tests run (tests/test_opencl_relaunch_barrier.py): a step
whose phase 0 never ends by itself, for a stop-now request that arrives while a step is in flight.
"""

import ringgen as rg
from ringgen.types import i32

#: a step of two: one message spins in phase 0 until a stop-now request, the other waits for it
stalling = rg.barrier("rk_stalling", parties=2)


@rg.message
class Ask:
    index: i32
    spin: i32  # nonzero: loop before the wait until the host asks to stop now


@rg.message
class Answer:
    index: i32
    loops: i32


@rg.ring_kernel
def stall(m: Ask) -> Answer:
    loops = 0
    while m.spin != 0:
        loops = loops + 1
    rg.barrier_wait(stalling)
    return Answer(index=m.index, loops=loops)
