"""The watchdog of a resident kernel: is it stalled, with input waiting and nothing handled?

A kernel is **stalled** when it has input waiting (messages in its input queue, or messages sent and
not yet handled) and none of the counters that move when it finishes messages (``processed``,
``rejected``, ``emitted``, ``launches``) has moved for ``stall_timeout`` seconds. The heartbeat is
deliberately not progress: on CUDA a service block beats it while a worker is stuck in an endless
handler, so a moving heartbeat proves nothing about the messages.

There is no thread: every place the host already looks (``stats``, ``lifecycle``, a receive or a
send waiting, ``terminate``) reads the control block and calls ``Watchdog.observe``, so a caller
blocked in ``receive(timeout=None)`` polls it every millisecond at most (``Backoff``) and learns of
a stall within ``stall_timeout`` plus that poll. The clock starts when the kernel was last seen to
make progress, or at the first send after it was last seen idle (the host knows when input began
to wait), never earlier: a host that looks rarely may learn of a stall late, never wrongly.

Backends publish their counters once per batch they take (the cpu reference per chunk of 256, the
``c`` backend and the device kernels per batch), so a kernel handling a batch of slow messages shows
progress only when the batch is done: ``stall_timeout`` must exceed the time of the longest batch.
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from typing import Callable, Optional

import numpy as np

from ..protocol import Lifecycle
from .logs import kernel_logger

__all__ = ["DEFAULT_STALL_TIMEOUT_S", "Watchdog", "check_stall_timeout", "take_stall_timeout"]

log = kernel_logger(__name__)

#: Default of the launch option ``stall_timeout``: seconds, long enough that a healthy kernel taking
#: a whole queue of slow messages at once (progress is published per batch) is not mistaken for a
#: stuck one, short enough that a stuck one is noticed while someone is still waiting on it.
DEFAULT_STALL_TIMEOUT_S = 10.0


def check_stall_timeout(kernel: str, value: object) -> Optional[float]:
    """The launch option ``stall_timeout`` as seconds (None: the watchdog is off).

    Raises:
        ValueError: ``value`` is not None and not a finite real number > 0; names the kernel and
            the option.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"kernel {kernel}: launch option stall_timeout={value!r} is not a number; give "
            "seconds as an int or float, or None to switch the watchdog off"
        )
    seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds) or seconds <= 0:
        raise ValueError(
            f"kernel {kernel}: launch option stall_timeout={value!r} is not a finite number of "
            "seconds > 0; give e.g. stall_timeout=10.0, or None to switch the watchdog off"
        )
    return seconds


def take_stall_timeout(kernel: str, options: dict) -> Optional[float]:
    """Remove the launch option ``stall_timeout`` from ``options`` and return it checked
    (``DEFAULT_STALL_TIMEOUT_S`` when absent; ``check_stall_timeout``)."""
    return check_stall_timeout(kernel, options.pop("stall_timeout", DEFAULT_STALL_TIMEOUT_S))


class Watchdog:
    """The stall verdict of one kernel, updated by every observation of its control block.

    Thread-safe: a sender and a receiver may observe at the same time.

    Attributes:
        stall_timeout: seconds without progress, with input waiting, that make a stall (None: off).
        stalled: True from the observation that found the stall until one that sees progress or no
            input waiting.
    """

    def __init__(self, kernel: str, backend: str, stall_timeout: Optional[float]) -> None:
        self.kernel = kernel
        self.backend = backend
        self.stall_timeout = stall_timeout
        self.stalled = False
        self._lock = threading.Lock()
        self._mark: Optional[tuple[int, ...]] = None
        self._since = 0.0  # when the current stretch without progress, with input waiting, began
        self._waiting = False
        self._first_send: Optional[float] = None  # the first send since the last reset

    def note_send(self, n: int) -> None:
        """Record that ``n`` messages were published (called by the sender after each push): the
        first since the kernel was last seen idle or progressing is when input began to
        wait, so a stall is timed from there even when nobody looked in between."""
        if n and self._first_send is None:
            now = time.monotonic()
            with self._lock:
                if self._first_send is None:
                    self._first_send = now

    def observe(
        self, ctl: np.ndarray, state: Lifecycle, sent: int, depths: Callable[[], tuple[int, int]]
    ) -> Lifecycle:
        """The lifecycle to report for ``state`` read from ``ctl``: STALLED for a stalled ACTIVE
        kernel, else ``state`` unchanged.

        Args:
            ctl: the control block, read once (``ringgen.protocol.CONTROL_DTYPE``).
            state: the lifecycle the device reports in it.
            sent: messages the host has published to the input queue.
            depths: the handle's ``_queue_depths`` (input, output), read only for the log record.
        """
        if self.stall_timeout is None or state is not Lifecycle.ACTIVE:
            return state
        mark = _handled_mark(ctl)
        # Every message in the input queue is sent and not processed, so this one comparison
        # covers both kinds of waiting input; no queue needs reading on a poll.
        waiting = sent > mark[0]
        now = time.monotonic()
        with self._lock:
            if mark != self._mark or not waiting:
                self._mark, self._since, self._waiting = mark, now, waiting
                self._first_send = None
                if self.stalled:
                    self.stalled = False
                    log.info(
                        "kernel %s (%s) makes progress again",
                        *(self.kernel, self.backend),
                        extra={"kernel": self.kernel},
                    )
                return state
            if not self._waiting:  # input began to wait at the first send since the last look
                self._since = now if self._first_send is None else self._first_send
                self._waiting = True
            idle = now - self._since
            if idle < self.stall_timeout:
                return state
            if not self.stalled:
                self.stalled = True
                log.warning(
                    "kernel %s (%s) stalled: nothing handled for %.3f s with input waiting "
                    "(input queue depth %d, %d message(s) sent and not handled)",
                    *(self.kernel, self.backend, idle, depths()[0], sent - mark[0]),
                    extra={"kernel": self.kernel},
                )
        return Lifecycle.STALLED

    def stalled_for(self) -> float:
        """Seconds since the kernel last made progress with input waiting (0 when not stalled)."""
        with self._lock:
            return time.monotonic() - self._since if self.stalled else 0.0


def _handled_mark(ctl: np.ndarray) -> tuple[int, ...]:
    """The counters that move only when the kernel finishes messages: (processed, rejected,
    emitted, launches). ``processed`` comes first: every backend counts in it each message it takes,
    rejected ones included, so ``sent - processed`` is what is sent and not yet handled."""
    rec = ctl[()] if isinstance(ctl, np.ndarray) else ctl
    return (
        int(rec["processed"]),
        int(rec["rejected"].sum()),
        int(rec["emitted"]),
        int(rec["launches"]),
    )
