"""Kernels the Metal barrier tests run through the shim (tests/test_metal_barrier.py): on Metal a step
is ``parties`` messages of one kernel, dispatched phase by phase. No f64 (Metal has none), no rg.now()
(the reference and the shim read different clocks). Each test uses barriers of its own."""

import ringgen as rg
from ringgen.types import Array, Str, f32, f64, i32, i64, u8

#: four messages add their part into the state, wait, and read the whole
gathering = rg.barrier("mb_gathering", parties=4)
#: a message that faults before the wait breaks its step
breaking = rg.barrier("mb_breaking", parties=4)
#: a message that returns early still arrives for the others
early = rg.barrier("mb_early", parties=2)
#: locals of several types across one wait and across two
keeping = rg.barrier("mb_keeping", parties=4)
#: an Outbox that emits before and after the wait
emitting = rg.barrier("mb_emitting", parties=2)
#: ordered=True: one thread runs each phase over the step's messages in order
ordering = rg.barrier("mb_ordering", parties=3)
#: a barrier of one party: every message is a step of its own
alone = rg.barrier("mb_alone", parties=1)
#: refused on Metal: two barriers of different sizes in one handler
pair_of_two = rg.barrier("mb_pair_of_two", parties=2)
trio = rg.barrier("mb_trio", parties=3)
#: refused on Metal: a step larger than the input queue
too_many = rg.barrier("mb_too_many", parties=64)


@rg.message
class Part:
    index: i32  # the slot this message adds to: out of range faults the handler before its wait
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
    rg.barrier_wait(gathering)
    return Whole(index=m.index, total=s.v[0] + s.v[1] + s.v[2] + s.v[3])


@rg.ring_kernel
def gather_f(m: Part, s: Slots) -> Whole:
    rg.atomic_add(s.v[m.index], m.value)
    rg.barrier_wait(breaking)
    return Whole(index=m.index, total=s.v[0] + s.v[1] + s.v[2] + s.v[3])


@rg.ring_kernel
def early_out(m: Part, s: Slots) -> Whole | None:
    rg.atomic_add(s.v[m.index], m.value)
    if m.value < 0:
        return Whole(index=m.index, total=-1)  # leaves before the wait, with a reply
    if m.value == 0:
        return None  # leaves before the wait, with none
    rg.barrier_wait(early)
    return Whole(index=m.index, total=s.v[0] + s.v[1] + s.v[2] + s.v[3])


@rg.message
class Pair:
    u: i32
    w: i64


@rg.message
class Kept:
    index: i32
    a: i32
    b: i64
    c: f32
    d: u8
    arr_sum: i32
    u: i32
    w: i64
    after_one: i32
    after_two: i32


@rg.state
class Tables:
    v: Array[i32, 4]  # phase 0 writes, phase 1 reads
    w: Array[i32, 4]  # phase 1 writes, phase 2 reads


@rg.ring_kernel
def keep(m: Part, s: Tables) -> Kept:
    a = m.value * 3
    b = i64(m.value) * 1000000007
    c = f32(m.value) * 0.25
    d = u8(m.value + 200)
    arr = [m.value, m.value + 1, m.value + 2]
    p = Pair(u=m.index, w=i64(m.value) << 33)
    unused_after = a + 1
    rg.atomic_add(s.v[m.index], m.value)
    rg.barrier_wait(keeping)
    one = s.v[0] + s.v[1] + s.v[2] + s.v[3] + unused_after - unused_after
    rg.atomic_add(s.w[m.index], one + m.index)
    rg.barrier_wait(keeping)
    two = s.w[0] + s.w[1] + s.w[2] + s.w[3]
    return Kept(
        index=m.index,
        a=a,
        b=b,
        c=c,
        d=d,
        arr_sum=arr[0] + arr[1] + arr[2],
        u=p.u,
        w=p.w,
        after_one=one,
        after_two=two,
    )


@rg.ring_kernel
def emit_around(m: Part, s: Slots, out: rg.Outbox[Whole]) -> None:
    rg.atomic_add(s.v[m.index], m.value)
    out.emit(Whole(index=m.index, total=-m.value))
    rg.barrier_wait(emitting)
    out.emit(Whole(index=m.index, total=s.v[0] + s.v[1] + s.v[2] + s.v[3]))


@rg.ring_kernel(ordered=True)
def in_order(m: Part, s: Slots) -> Whole:
    s.v[m.index] = s.v[m.index] + m.value
    rg.barrier_wait(ordering)
    return Whole(index=m.index, total=s.v[0] + s.v[1] + s.v[2] + s.v[3])


@rg.ring_kernel
def lone(m: Part, s: Slots) -> Whole:
    rg.atomic_add(s.v[m.index], m.value)
    rg.barrier_wait(alone)
    return Whole(index=m.index, total=s.v[0] + s.v[1] + s.v[2] + s.v[3])


@rg.ring_kernel
def two_sizes(m: Part) -> Whole:
    rg.barrier_wait(pair_of_two)
    rg.barrier_wait(trio)
    return Whole(index=m.index, total=0)


@rg.ring_kernel(capacity=16)
def too_big(m: Part) -> Whole:
    rg.barrier_wait(too_many)
    return Whole(index=m.index, total=0)


@rg.ring_kernel(capacity=8)
def gather_small(m: Part, s: Slots) -> Whole:
    rg.atomic_add(s.v[m.index], m.value)
    rg.barrier_wait(gathering)
    return Whole(index=m.index, total=s.v[0] + s.v[1] + s.v[2] + s.v[3])


#: bridged messages: the slot is decoded again in each phase; a message local with a Str lives
#: across the wait
talking = rg.barrier("mb_talking", parties=2)


@rg.message
class Note:
    index: i32
    text: Str[16]


@rg.message
class Echo:
    index: i32
    text: Str[16]
    total: i32


@rg.device
def doubled(x: i32) -> i32:
    return x * 2


@rg.ring_kernel
def talk(m: Note, s: Slots) -> Echo:
    e = Echo(index=m.index, text=m.text, total=0)  # a message local holding a Str
    n = doubled(i32(len(m.text)))
    rg.atomic_add(s.v[m.index], n)
    rg.barrier_wait(talking)
    e.total = s.v[0] + s.v[1] + s.v[2] + s.v[3] + doubled(1)
    return e


@rg.ring_kernel
def keep_f64(m: Part) -> Whole:
    x = f64(m.value) * 0.5
    rg.barrier_wait(keeping)
    return Whole(index=m.index, total=i32(x))
