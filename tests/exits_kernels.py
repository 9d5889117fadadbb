"""Graphs with several exits and several stateful stages, for the device strategies
(tests/test_graph_exits_device.py): a fan-out to two exits of different message types (one of
them through an Outbox), two ordered stages each with a state of its own, and both at once."""

from __future__ import annotations

from typing import Optional

import ringgen as rg
from ringgen.types import Array, f64, i32, i64, u8


@rg.message
class Raw:
    id: i64
    v: i32


@rg.message
class Mid:
    id: i64
    v: i32


@rg.message
class Small:
    id: i32
    v: i32


@rg.message
class Wide:
    id: i64
    a: f64
    k: i32
    flag: u8


@rg.state
class Tally:
    n: i64 = 0
    last: i32 = -1


@rg.state
class Spread:
    flag: u8 = 7
    total: i64 = 0
    hist: Array[i32, 3] = 0


@rg.ring_kernel
def split(r: Raw) -> Mid:
    return Mid(id=r.id, v=r.v * 3 + 1)


@rg.ring_kernel
def narrow(m: Mid) -> Small:
    return Small(id=i32(m.id), v=m.v - 5)


@rg.ring_kernel
def widen(m: Mid, out: rg.Outbox[Wide, 3]) -> None:
    for j in range((m.v // 3) % 3):
        out.emit(Wide(id=m.id, a=f64(m.v) * 0.5 + f64(j), k=i32(j), flag=u8(m.v % 200)))


@rg.ring_kernel
def odd_narrow(m: Mid) -> Optional[Small]:
    if m.v % 2 == 0:
        return None
    return Small(id=i32(m.id), v=m.v)


# fan-out to two exits of different types: narrow (one Small per message), widen (0 to 2 Wides)
forked = rg.graph(split >> narrow, split >> widen, name="forked")
# three exits, one that skips (Optional)
trident = rg.graph(split >> narrow, split >> widen, split >> odd_narrow, name="trident")


@rg.ring_kernel(ordered=True)
def tally(r: Raw, st: Tally) -> Mid:
    st.n += 1
    v = r.v + i32(st.n)
    st.last = v
    return Mid(id=r.id, v=v)


@rg.ring_kernel(ordered=True)
def spread(m: Mid, st: Spread) -> Wide:
    st.total += i64(m.v)
    st.hist[m.v % 3] += 1
    st.flag = u8(st.flag + u8(1))
    return Wide(id=m.id, a=f64(st.total), k=m.v, flag=st.flag)


# two ordered stages, each with a state of its own
tallied = rg.pipeline(tally, spread, name="tallied")


@rg.ring_kernel(ordered=True)
def spread_side(m: Mid, st: Spread) -> Small:
    st.total += i64(m.v) * 2
    st.hist[(m.v + 1) % 3] += 2
    return Small(id=i32(m.id), v=i32(st.total % 1000))


# both: two exits of different types, each fed through a stateful stage
both = rg.graph(tally >> spread, tally >> spread_side, name="both")


@rg.ring_kernel(ordered=True)
def keep(m: Mid, st: Tally) -> None:
    st.n += 1
    st.last = m.v


# two exits, one without output (it only keeps its state): one tagged reply per entry message
sunk = rg.graph(tally >> spread_side, tally >> keep, name="sunk")


@rg.ring_kernel
def burst(m: Mid, out: rg.Outbox[Wide, 1]) -> None:
    for j in range((m.v // 3) % 3):  # two emits are one past the bound: a fault in this stage
        out.emit(Wide(id=m.id, a=f64(j), k=m.v, flag=u8(1)))


# two exits, one of which faults on some entry messages
faulted = rg.graph(split >> narrow, split >> burst, name="faulted")
