"""Kernels of the bridged latency-path tests (tests/test_cuda_bridged_fast.py, and the ``gpu`` tests
of test_cuda_gpu.py): an Outbox of bridged replies whose handler faults on an empty list, a
Str-in/Str-out echo whose handler divides by a field (a zero faults), and a direct input with a
bridged reply."""

import ringgen as rg
from ringgen.types import List, Str, i32, i64


@rg.message
class Tagged:
    id: i64
    tags: List[i32, 4]


@rg.message
class Label:
    id: i64
    text: Str[12]


@rg.ring_kernel
def labels(t: Tagged, out: rg.Outbox[Label, 4]) -> None:
    lead = t.tags[0]  # an empty list faults: INDEX_OUT_OF_RANGE, no reply
    for x in t.tags:
        if x > lead:
            out.emit(Label(id=t.id, text="above"))
        elif x > 0:
            out.emit(Label(id=t.id, text="positive"))


@rg.message
class Note:
    id: i64
    every: i32
    text: Str[40]


@rg.ring_kernel
def shout(n: Note) -> Note:
    step = 100 // n.every  # every == 0 faults: DIVISION_BY_ZERO, no reply
    return Note(id=n.id + step, every=n.every, text=n.text)


@rg.message
class Count:
    id: i64
    n: i32


@rg.ring_kernel
def spell(c: Count) -> Label:
    """A direct input, a bridged reply (the lane's request is a struct, its reply an encoded slot)."""
    if c.n < 0:
        return Label(id=c.id, text="negative")
    if c.n > 9:
        return Label(id=c.id, text="many")
    return Label(id=c.id, text="few")
