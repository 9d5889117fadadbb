"""Waiting on queues: deadlines and progressive backoff, shared by every backend's host side.

Host code polls (a queue counter in pinned or shared memory cannot signal the host), so each wait is
a loop of polls with a ``Backoff`` between them: a few free polls, because a reply usually arrives
within microseconds and sleeping even 50 µs would dominate its latency, then sleeps that double up to
a cap, so a long wait costs almost no CPU. ``wait_async`` awaits instead of sleeping, so asyncio
callers never block their event loop.
"""

from __future__ import annotations

import asyncio
import math
import numbers
import os
import time
from typing import Optional

__all__ = ["Backoff", "check_timeout", "deadline_after", "expired", "time_left"]

#: Gives up the CPU for a moment and releases the GIL (``time.sleep(0)`` where the OS has no
#: ``sched_yield``).
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


def check_timeout(timeout: object, call: str = "", argument: str = "timeout") -> Optional[float]:
    """``timeout`` as a float of seconds (None stays None), or a ``ValueError`` naming the call.

    A NaN would compare false with every clock reading, so a wait bounded by it would never end;
    a negative number, a bool or a non-number is as surely a mistake. Infinity means no limit, as
    None does.

    Args:
        timeout: the value the caller was given.
        call: the call that took it, for the message (e.g. ``"kernel add: receive"``).
        argument: the argument's name.

    Returns:
        None (no limit: ``timeout`` was None or infinite), or the timeout as a finite float >= 0.

    Raises:
        ValueError: ``timeout`` is not None and not a finite real number >= 0.
    """
    if timeout is None:
        return None
    if type(timeout) in (float, int) and 0 <= timeout < math.inf:  # the usual case: no ABC check
        return float(timeout)
    where = f"{call}: " if call else ""
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise ValueError(
            f"{where}{argument}={timeout!r} is not a number; give seconds as an int or float, "
            "or None to wait without limit"
        )
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"{where}{argument}={timeout!r} is not a number of seconds >= 0; "
            "give a value >= 0, or None to wait without limit"
        )
    return None if math.isinf(value) else value


def deadline_after(
    timeout: Optional[float], call: str = "", argument: str = "timeout"
) -> Optional[float]:
    """The ``time.monotonic()`` deadline for ``timeout`` seconds from now (None: wait forever).

    Raises:
        ValueError: ``timeout`` is invalid (``check_timeout``), naming ``call`` and ``argument``.
    """
    seconds = check_timeout(timeout, call, argument)
    if seconds is None:
        return None
    return time.monotonic() + seconds


def expired(deadline: Optional[float]) -> bool:
    """True once ``deadline`` (from ``deadline_after``; None = never) has passed."""
    return deadline is not None and time.monotonic() >= deadline


def time_left(deadline: Optional[float]) -> Optional[float]:
    """Seconds until ``deadline`` (None: no limit), never below 0: the timeout of the next step of
    a wait made of several."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class Backoff:
    """Progressive waiting for a poll loop: free polls for ``spin_time``, then sleeps doubling to ``max_sleep``.

    A fresh ``Backoff`` per wait; ``reset()`` after progress. The free-poll phase is measured in time,
    not in polls: a device reply usually arrives within microseconds, and Linux rounds even a 20 µs
    ``time.sleep`` up to 60-100 µs, which would dominate the round trip whenever a reply takes longer
    than a fixed number of polls (how long a poll takes depends on the backend). After that the sleeps
    double, so a long wait costs almost no CPU.
    """

    __slots__ = ("spin_time", "sleep", "min_sleep", "max_sleep", "yields", "_spin_until")

    def __init__(
        self,
        spin_time: float = 200e-6,
        min_sleep: float = 20e-6,
        max_sleep: float = 1e-3,
        yields: bool = True,
    ) -> None:
        self.spin_time = spin_time
        self.yields = yields
        self.min_sleep = min_sleep
        self.max_sleep = max_sleep
        self.reset()

    def reset(self) -> None:
        """Start over with free polls (call it after the poll made progress)."""
        self._spin_until: Optional[float] = None
        self.sleep = self.min_sleep

    def next_sleep(self, deadline: Optional[float] = None) -> float:
        """The next step's sleep in seconds (0 for a free poll), never past ``deadline``."""
        now = time.monotonic()
        if self._spin_until is None:
            self._spin_until = now + self.spin_time
        if now < self._spin_until:
            return 0.0
        s = self.sleep
        self.sleep = min(self.sleep * 2, self.max_sleep)
        if deadline is not None:
            s = max(0.0, min(s, deadline - now))
        return s

    def wait(self, deadline: Optional[float] = None) -> None:
        """Wait one step (never past ``deadline``); a free poll yields the CPU and returns.

        A free poll is ``os.sched_yield()`` (about 1 µs, and it lets other threads run), not
        ``time.sleep(0)``: that costs 60-100 µs on Linux (the timer slack; measured 76 µs p50 on the
        2-core CI machine), which made every wait at least one such sleep long. With ``yields``
        False a free poll returns at once: where the thread that answers is a CPU thread that never
        sleeps (a resident PoCL kernel), a yield on its core hands it the core for a whole time
        slice (3-4 ms measured on the 2-core CI machine under load; bench/NOTES-opencl.md), while
        a sleep keeps this thread first in line when it wakes."""
        s = self.next_sleep(deadline)
        if s > 0.0:
            time.sleep(s)
        elif self.yields:
            _yield()

    async def wait_async(self, deadline: Optional[float] = None) -> None:
        """Like ``wait``, but awaits ``asyncio.sleep`` so the event loop keeps running."""
        await asyncio.sleep(self.next_sleep(deadline))
