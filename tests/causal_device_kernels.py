"""Kernels the device causal-order tests compose (tests/test_causal_device.py): a stamped message
that also carries, per stage, the stamp its handler received, so the host can read every hop's
stamps back; ``source`` reaches the causal ``merge`` directly and through ``mid`` (paths of two
lengths), and ``burst`` emits several messages per input through an Outbox."""

from typing import Optional

import ringgen as rg
from ringgen.types import i32, i64, u64


@rg.message
class Hop:
    id: i64
    x: i32
    src: i32
    seen_source: u64  # the stamp source received (the host's)
    seen_mid: u64  # the stamp mid received (source's)
    seen_merge: u64  # the stamp merge received (source's or mid's)
    stamp: rg.HLC


@rg.message
class Bare:
    id: i64
    x: i32


@rg.ring_kernel
def source(h: Hop) -> Hop:
    # the stamp written here is replaced by the device's send rule
    return Hop(id=h.id, x=h.x + 1, src=0, seen_source=h.stamp, seen_mid=0, seen_merge=0, stamp=7)


@rg.ring_kernel
def mid(h: Hop) -> Optional[Hop]:
    if h.id % 5 == 4:
        return None
    return Hop(
        id=h.id,
        x=h.x * 3,
        src=1,
        seen_source=h.seen_source,
        seen_mid=h.stamp,
        seen_merge=0,
        stamp=0,
    )


@rg.ring_kernel
def burst(h: Hop, out: rg.Outbox[Hop, 3]) -> None:
    for i in range(h.id % 3):
        out.emit(
            Hop(
                id=h.id,
                x=h.x - i,
                src=2 + i,
                seen_source=h.seen_source,
                seen_mid=h.stamp,
                seen_merge=0,
                stamp=0,
            )
        )


@rg.ring_kernel(order="causal")
def merge(h: Hop) -> Hop:
    return Hop(
        id=h.id,
        x=h.x,
        src=h.src,
        seen_source=h.seen_source,
        seen_mid=h.seen_mid,
        seen_merge=h.stamp,
        stamp=0,
    )


@rg.ring_kernel
def bare_source(b: Bare) -> Hop:
    return Hop(id=b.id, x=b.x, src=0, seen_source=0, seen_mid=0, seen_merge=0, stamp=0)


@rg.ring_kernel
def strip(h: Hop) -> Bare:
    return Bare(id=h.id, x=h.x)


@rg.ring_kernel
def restamp(b: Bare) -> Hop:
    return Hop(id=b.id, x=b.x, src=9, seen_source=0, seen_mid=0, seen_merge=0, stamp=0)


def two_paths():
    """source >> merge and source >> mid >> merge: merge takes source's message before mid's."""
    return rg.graph(source >> merge, source >> mid, mid >> merge, name="two_paths")


def with_burst():
    """source >> merge, source >> burst >> merge: 0 to 2 messages through the longer path."""
    return rg.graph(source >> merge, source >> burst, burst >> merge, name="with_burst")
