"""Hybrid logical clocks (Kulkarni et al., 2014): the stamp every message of a graph carries.

A stamp is a ``u64``: the top 48 bits are physical microseconds since ``HLC_EPOCH`` (2026-01-01
00:00 UTC; 48 bits last until 2034-11), the low 16 a logical counter. Packed this way, a stamp's
order is the HLC order, and the two HLC rules are integer arithmetic on the packed value:

- send (or a local event): ``t = max(t + 1, pt << 16)``
- receive of a stamp ``m``: ``t = max(max(t, m) + 1, pt << 16)``

where ``pt`` is the physical clock; ``+ 1`` increments the counter, and a full counter carries into
the physical part (the clock then runs a microsecond ahead of ``pt`` until ``pt`` catches up), which
keeps every stamp unique and increasing. If event ``e`` happens before ``f`` (same clock earlier,
or a message sent by ``e`` and received before ``f``), then ``stamp(e) < stamp(f)``.

A message carries its stamp in a field declared ``stamp: rg.HLC`` (any name); the bridged header
reserves a word for it too (``hlc``, ringgen/wire/header.py), which no strategy writes yet.
``ringgen.runtime.topic_host`` applies the rules on every hop of the host strategy;
``ringgen.runtime.causal`` merges a fan-in in stamp order. On the ``shared_memory`` device
strategy the fused kernel applies them without ``pt`` (``templates/graph/fused.c.j2``: receive
``t = max(t, m) + 1``, send ``t = t + 1``): its stamps follow the physical clock through the
stamp the host writes into the entry's message (``ringgen.runtime.causal.HostStamps``).
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

from .schema import is_message_class, spec_of
from .types import HLC

__all__ = [
    "HLC_EPOCH_UNIX_US",
    "HybridClock",
    "hlc_field",
    "hlc_parts",
    "physical_now",
    "read_stamps",
    "write_stamps",
]

#: 2026-01-01 00:00 UTC in microseconds since the Unix epoch: the zero of a stamp's physical part.
HLC_EPOCH_UNIX_US = 1_767_225_600_000_000

_LOGICAL_BITS = 16


def physical_now() -> int:
    """The physical clock as a stamp's top 48 bits read it: microseconds since ``HLC_EPOCH``."""
    return time.time_ns() // 1000 - HLC_EPOCH_UNIX_US


def hlc_parts(stamp: int) -> tuple[int, int]:
    """``(physical microseconds since HLC_EPOCH, logical counter)`` of a packed stamp."""
    stamp = int(stamp)
    return stamp >> _LOGICAL_BITS, stamp & ((1 << _LOGICAL_BITS) - 1)


class HybridClock:
    """One node's hybrid logical clock (a stage, or the host), as a packed ``u64``.

    Not thread-safe: the owner serializes the calls (the forwarder holds one lock for all clocks).
    """

    __slots__ = ("name", "now")

    def __init__(self, name: str) -> None:
        self.name = name
        self.now = 0

    def _floor(self) -> int:
        return physical_now() << _LOGICAL_BITS

    def send(self, n: int = 1) -> int:
        """Stamp ``n`` consecutive send events; returns the first stamp (the others follow it by 1)."""
        first = max(self.now + 1, self._floor())
        self.now = first + n - 1
        return first

    def receive(self, stamp: int) -> int:
        """Apply the receive rule for a message stamped ``stamp``; returns the new clock."""
        self.now = max(max(self.now, int(stamp)) + 1, self._floor())
        return self.now

    def next_lower_bound(self) -> int:
        """The least stamp this clock's next send can have (without advancing it): every later
        message of this node is stamped at least this."""
        return max(self.now + 1, self._floor())

    def __repr__(self) -> str:
        us, c = hlc_parts(self.now)
        return f"<HybridClock {self.name}: {us} us + {c}>"


def hlc_field(cls: Any) -> Optional[str]:
    """The name of the first field of message class ``cls`` declared ``rg.HLC``, or None."""
    if cls is None or not is_message_class(cls):
        return None
    for f in spec_of(cls).fields:
        if f.type is HLC:
            return f.name
    return None


def read_stamps(chunk: Any, field: str) -> np.ndarray:
    """The stamps of a batch (a structured array, or a list of bridged objects) as ``uint64``."""
    if isinstance(chunk, np.ndarray):
        return chunk[field].astype(np.uint64, copy=False)
    return np.fromiter((int(getattr(m, field)) for m in chunk), dtype=np.uint64, count=len(chunk))


def write_stamps(chunk: Any, field: str, first: int) -> Any:
    """Stamp a batch ``first, first + 1, ...`` in place (arrays) or per object (lists); returns it."""
    n = len(chunk)
    if isinstance(chunk, np.ndarray):
        if not chunk.flags.writeable:
            chunk = chunk.copy()
        chunk[field] = np.arange(first, first + n, dtype=np.uint64)
        return chunk
    for i, m in enumerate(chunk):
        setattr(m, field, first + i)
    return chunk
