"""Kernels the topic and causal-order tests compose: integer messages carrying an ``rg.HLC`` stamp,
so every backend agrees exactly; sixteen subscribers of one handler, each its own kernel."""

from typing import Optional

import ringgen as rg
from ringgen.types import Str, i32, i64


@rg.message
class Tick:
    id: i64
    x: i32
    src: i32
    stamp: rg.HLC


@rg.message
class Plain:
    id: i64
    x: i32


@rg.ring_kernel
def source(t: Tick) -> Tick:
    return Tick(id=t.id, x=t.x + 1, src=0, stamp=t.stamp)


@rg.ring_kernel
def left(t: Tick) -> Tick:
    return Tick(id=t.id, x=t.x * 3, src=1, stamp=t.stamp)


@rg.ring_kernel
def right(t: Tick) -> Tick:
    return Tick(id=t.id, x=t.x - 7, src=2, stamp=t.stamp)


@rg.ring_kernel(order="causal")
def merge(t: Tick) -> Tick:
    return Tick(id=t.id, x=t.x, src=t.src, stamp=t.stamp)


@rg.ring_kernel
def join(t: Tick) -> Tick:
    return Tick(id=t.id, x=t.x, src=t.src, stamp=t.stamp)


def _subscriber(t: Tick) -> Tick:
    return Tick(id=t.id, x=t.x * 2 + 1, src=t.src, stamp=t.stamp)


#: sixteen subscribers: one handler, sixteen kernels (a kernel is one stage), each bound to a module
#: variable of its name so that the build collects it
SUBSCRIBERS = []
for _i in range(16):
    globals()[f"sub{_i}"] = rg.ring_kernel(name=f"sub{_i}")(_subscriber)
    SUBSCRIBERS.append(globals()[f"sub{_i}"])


@rg.ring_kernel
def plain_source(p: Plain) -> Plain:
    return Plain(id=p.id, x=p.x + 1)


@rg.ring_kernel
def evens(t: Tick) -> Optional[Tick]:
    if t.id % 2 == 1:
        return None
    return Tick(id=t.id, x=t.x, src=3, stamp=t.stamp)


@rg.ring_kernel
def burst(t: Tick, out: rg.Outbox[Tick, 3]) -> None:
    for i in range(t.id % 3):
        out.emit(Tick(id=t.id * 4 + i, x=t.x, src=4, stamp=t.stamp))


@rg.message
class Note:
    id: i64
    text: Str[16]
    stamp: rg.HLC


@rg.ring_kernel
def note_source(n: Note) -> Note:
    return Note(id=n.id, text=n.text, stamp=n.stamp)


@rg.ring_kernel
def note_sub(n: Note) -> Note:
    return Note(id=n.id + 1000, text=n.text, stamp=n.stamp)
