"""The queue protocol in C: ``templates/common/ring.h.j2`` rendered from ``ringgen.protocol``.

Every GPU backend includes the same text after its prelude (which supplies the memory-order helpers
the protocol names), so it is rendered in one place and each backend's emitter calls ``render_ring_h``.
"""

from __future__ import annotations

from .. import protocol
from .env import render

__all__ = ["render_ring_h"]


def render_ring_h() -> str:
    """The shared queue protocol in C (constants, control block, queue helpers), backend-neutral."""
    return render("common/ring.h.j2", **protocol.render_context())
