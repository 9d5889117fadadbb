"""The CUDA handle's zero-copy API: views of the mapped rings themselves, for callers that fill
inputs or read replies in place (``reserve``/``commit``, ``receive_view``/``release``).

A mixin of ``CudaKernelHandle``: it uses the handle's queues (``inq``, an ``InputRing``; ``outq``, a
``PositionalOutput`` for a kernel returning one message), its latency lane (``_lane``), its locks and
its counters. A message that ``send`` put into the lane comes first: ``reserve`` offers no slot
until the kernel has answered it, and ``receive_view`` returns its reply (a view of the lane's
reply slot) before the ring's.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ...protocol import Lifecycle
from ..waiting import deadline_after
from .queues import PositionalOutput

__all__ = ["ZeroCopy"]


class ZeroCopy:
    """``reserve``/``commit`` and ``receive_view``/``release`` on the mapped rings (direct messages
    only)."""

    def reserve(self, n: int) -> np.ndarray:
        """A writable view of up to ``n`` free input slots (contiguous; possibly fewer, possibly
        empty). Fill it, then ``commit(k)`` the first k. Only direct input messages."""
        self._check_sendable()
        if self.in_codec.bridged:
            raise TypeError(f"kernel {self.name}: reserve() needs a direct input message")
        lane = self._lane
        if lane is not None and not lane.answered():
            return self.inq.reserve(0, self._admit_head())  # nothing may pass the lane's message
        return self.inq.reserve(n, self._admit_head())

    def commit(self, n: int) -> None:
        """Publish the first ``n`` slots of the last ``reserve`` view (one release store of the tail)."""
        with self._send_lock:
            self.inq.commit(n)
            self._sent += n
            self._watchdog.note_send(n)

    def receive_view(
        self, max_n: Optional[int] = None, timeout: Optional[float] = 0.0, *, min_n: int = 1
    ) -> np.ndarray:
        """Zero-copy receive: a read-only view of up to ``max_n`` replies in the ring (contiguous, in
        order), valid until ``release(len(view))``.

        Polls until ``min_n`` replies are ready (fewer when the ring wraps or a hole comes first) or
        ``timeout`` seconds pass (None: no limit). Waiting for a whole batch here costs one Python
        call instead of one per published chunk."""
        if not isinstance(self.outq, PositionalOutput) or self.outq.slots is None:
            raise TypeError(
                f"kernel {self.name}: receive_view() needs a kernel returning one direct message"
            )
        n = self.capacity if max_n is None else int(max_n)
        want = max(1, min(int(min_n), n, self.capacity - (self.outq.head & (self.capacity - 1))))
        deadline = deadline_after(timeout, f"kernel {self.name}.receive_view")
        polls = 0
        lane = self._lane
        while True:
            if lane is not None and lane.busy():
                with self._recv_lock:
                    view = lane.view() if lane.busy() else None
                if view is not None and len(view):
                    return view
                if view is None:
                    polls += 1
                    if deadline is not None and time.monotonic() >= deadline:
                        return self.outq.slots[:0]
                    if polls & 1023 == 0 and self._lifecycle_now() in (
                        Lifecycle.TERMINATED,
                        Lifecycle.FAULTED,
                    ):
                        return self.outq.slots[:0]
                    continue
            if self.outq.depth() >= want or polls & 1023 == 1023:
                with self._recv_lock:
                    # Decided under the lock a lane write needs (LatencyLane.fast_put_one's gate).
                    view = self.outq.view(n) if lane is None or not lane.busy() else None
                if view is None:
                    continue
                if len(view) >= want or (len(view) and len(view) < n and self.outq.has_holes()):
                    return view
                if deadline is not None and time.monotonic() >= deadline:
                    return view
                if self._lifecycle_now() in (Lifecycle.TERMINATED, Lifecycle.FAULTED):
                    return view
            polls += 1

    def release(self, n: int) -> None:
        """Hand the first ``n`` replies of the last ``receive_view`` back to the kernel."""
        with self._recv_lock:
            lane = self._lane
            if lane is not None and lane.busy():
                lane.release(n)  # the view was the lane's reply
            else:
                self.outq.release(n)
            self._received += n
