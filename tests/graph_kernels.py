"""Kernels the graph tests compose: integer messages, so every backend agrees exactly."""

from typing import Optional

import ringgen as rg
from ringgen.types import Str, i32, i64


@rg.message
class Raw:
    id: i64
    x: i32


@rg.message
class Mid:
    id: i64
    y: i32


@rg.message
class Out:
    id: i64
    z: i64
    seq: i64


@rg.message
class Label:
    id: i64
    text: Str[16]


@rg.state
class Counter:
    n: i64


@rg.ring_kernel
def parse(r: Raw) -> Mid:
    return Mid(id=r.id, y=r.x // 4 + 1)


@rg.ring_kernel
def twice(m: Mid) -> Mid:
    return Mid(id=m.id, y=m.y * 2)


@rg.ring_kernel
def negate(m: Mid) -> Mid:
    return Mid(id=m.id, y=0 - m.y)


@rg.ring_kernel
def odd_only(m: Mid) -> Optional[Mid]:
    if m.y % 2 == 0:
        return None
    return m


@rg.ring_kernel
def repeat(m: Mid, out: rg.Outbox[Mid, 4]) -> None:
    k = m.y % 3
    if k < 0:
        k = k + 3
    for i in range(k):
        out.emit(Mid(id=m.id, y=m.y + i))


@rg.ring_kernel
def finish(m: Mid) -> Out:
    return Out(id=m.id, z=i64(m.y) * 10, seq=0)


@rg.ring_kernel(ordered=True)
def number(m: Mid, st: Counter) -> Out:
    st.n = st.n + 1
    return Out(id=m.id, z=i64(m.y), seq=st.n)


@rg.ring_kernel
def sink(m: Mid) -> None:
    pass


three = rg.pipeline(parse, twice, finish)
fanned = rg.graph(parse >> twice, parse >> negate, twice >> finish, negate >> finish)


@rg.ring_kernel
def overflow(m: Mid, out: rg.Outbox[Mid, 1]) -> None:
    out.emit(m)
    if m.y % 5 == 0:
        out.emit(m)  # a second emit faults this message (OUTBOX_OVERFLOW); the kernel goes on


@rg.ring_kernel
def label(m: Mid) -> Label:
    if m.y % 2 == 0:
        return Label(id=m.id, text="even")
    return Label(id=m.id, text="odd")


@rg.ring_kernel
def slow(m: Mid) -> Mid:
    # a slow middle stage: its queues and edges fill while the stages around it wait
    acc = m.y
    for i in range(400):
        acc = (acc * 7 + i) % 1000003
    return Mid(id=m.id, y=m.y + acc - acc)


@rg.ring_kernel
def stamp(m: Mid) -> Out:
    return Out(id=m.id, z=i64(m.y), seq=0)


slowed = rg.pipeline(parse, slow, stamp)


@rg.ring_kernel
def slow_native(m: Mid) -> Mid:
    # `slow` for native backends, where its 400 steps take about a microsecond: 0.44 ms a message
    acc = m.y
    for i in range(100000):
        acc = (acc * 7 + i) % 1000003
    return Mid(
        id=m.id, y=m.y if acc != -7 else m.y + 1
    )  # acc is never -7: a use the compiler keeps


slowed_native = rg.pipeline(parse, slow_native, stamp)


@rg.message
class Hop:
    id: i64
    s1: i64
    v: i64
    s3: i64


@rg.ring_kernel(ordered=True)
def hop1(r: Raw, st: Counter) -> Hop:
    st.n = st.n + 1  # this stage's own sequence: what it received, in order
    return Hop(id=r.id, s1=st.n, v=i64(r.x), s3=0)


@rg.ring_kernel
def hop2(h: Hop) -> Hop:
    return Hop(id=h.id, s1=h.s1, v=h.v * 3 + 1, s3=0)


@rg.ring_kernel(ordered=True)
def hop3(h: Hop, st: Counter) -> Hop:
    st.n = st.n + 1
    return Hop(id=h.id, s1=h.s1, v=h.v, s3=st.n)


#: The soak's pipeline: the first and last stages number what they receive, so the exit shows any
#: loss, duplicate or reordering on either edge.
soak = rg.pipeline(hop1, hop2, hop3)


@rg.ring_kernel
def hop0(r: Raw) -> Hop:
    return Hop(id=r.id, s1=r.id + 1, v=i64(r.x), s3=0)  # ids are sent 0, 1, ...: s1 as hop1's


#: The soak on the device strategies, which take one stateful stage (docs/graphs.md): the first
#: stage derives its number from the id instead, so the exit still shows any loss, duplicate or
#: reordering.
soak_device = rg.pipeline(hop0, hop2, hop3)

#: More graphs for the Metal graph driver (tests/test_metal_graph.py): an Outbox and an ordered
#: stage, an Optional stage, and a stage whose second emit faults.
outboxed = rg.pipeline(parse, repeat, number)
filtered = rg.pipeline(parse, odd_only, finish)
faulty = rg.pipeline(parse, overflow, finish)
