"""Termination of a ring kernel: the ``terminate`` half of ``KernelHandle`` (a mixin of it).

Policy (docs/runtime.md, "Lifecycle and termination"):

- ``terminate()`` drains: the kernel handles every message already accepted, for as long as it makes
  progress (processed, emitted or launch count moving, or replies coming out); it gives up
  only after ``stall_timeout`` seconds without any, or at the caller's ``timeout``.
- ``terminate(drain=False)`` stops now: the request is polled by every wait of the resident loop and
  by every loop of a handler, so the kernel leaves within milliseconds even with a full output
  queue nobody reads or a handler that loops forever; what it left is ``stats().unprocessed``.
- Giving up stops the kernel now as well and frees it, so its compute unit, queues and memory come
  back; only a kernel that ignores even that is abandoned (memory leaked rather than freed under it).
- While waiting, replies move into the host-side spill, so they stay readable after termination.
- A FAULTED kernel is released as far as possible and ``terminate`` raises ``KernelFaultError``.
- ``with``: a normal exit drains; an exit on an exception stops now and logs (never raises) a
  failure to, so the caller sees its own exception only.
"""

from __future__ import annotations

import time
from typing import Optional, TypeVar

import attrs
import numpy as np

from ..errors import KernelTimeoutError
from ..protocol import Lifecycle
from .logs import kernel_logger
from .trace import traced
from .stats import KernelStats
from .waiting import Backoff, check_timeout, deadline_after, expired

__all__ = ["STALL_TIMEOUT_S", "STOP_NOW_GRACE_S", "Termination"]

_Handle = TypeVar("_Handle", bound="Termination")  # `with launch(k) as h`: h keeps its type

log = kernel_logger(__name__)

#: Lifecycle states in which the kernel no longer runs (nothing more will be published).
_STOPPED = (Lifecycle.TERMINATED, Lifecycle.FAULTED)

#: Default ``stall_timeout`` of ``terminate``: how long a draining kernel may show no progress at all
#: (processed, emitted and launch counts frozen, no reply coming out) before terminate gives up.
#: Seconds, not milliseconds: a relaunch-mode kernel shows progress once per launch (up to
#: ``capacity`` messages), and a slow handler must not be mistaken for a stuck one.
STALL_TIMEOUT_S = 5.0

#: How long a stop-now request (``terminate(drain=False)``, or the one a giving-up terminate sends)
#: may take before the handle is abandoned instead: a kernel that honours it stops within
#: milliseconds (every wait and every handler loop polls it), so this only catches one that cannot.
STOP_NOW_GRACE_S = 2.0


class Termination:
    """``terminate`` and the context manager of ``KernelHandle``.

    It relies on what ``KernelHandle`` defines: ``name``, ``backend``, ``spec``, ``capacity``,
    ``out_codec``, the three locks, ``_term_lock``, ``_spill``, ``_spilled``, ``_accepting``,
    ``_launched``, ``_released``, ``_final_stats``, ``_final_state``, ``_lifecycle_now``,
    ``_stats_now``, ``_fault_error``, ``_drain_dead_letters`` and the transport hooks
    (``_control``, ``_pop``, ``_read_state``, ``_request_terminate``, ``_request_stop_now``,
    ``_synchronize``, ``_release``, ``_abandon``).
    """

    @traced("terminate")
    def terminate(
        self,
        timeout: Optional[float] = None,
        *,
        drain: bool = True,
        stall_timeout: Optional[float] = STALL_TIMEOUT_S,
    ) -> KernelStats:
        """Stop the kernel: request, wait for it to stop, synchronize, free.

        By default the kernel drains: every message already accepted is handled, for as long as the
        kernel makes progress. Replies published before it stopped stay readable with ``receive``.
        Calling it again is harmless (it returns the final stats). Returns the final ``KernelStats``.

        Args:
            timeout: the longest wait in seconds for the kernel to stop (None: no limit).
            drain: False to stop now: the kernel leaves without handling what is still queued (its
                count is ``stats().unprocessed``), also while its output queue is full or a handler
                is in a loop; it returns within milliseconds and the handle is freed.
            stall_timeout: while draining, give up after this many seconds without any progress
                (None: never). Progress is the processed, emitted or launch count moving,
                or a reply coming out.

        Raises:
            KernelTimeoutError: the kernel did not stop within ``timeout``, or made no progress for
                ``stall_timeout`` seconds. It was then asked to stop now; the message says whether
                it did (the handle is freed, ``stats().unprocessed`` counts what it left) or had to
                be abandoned (its memory is leaked rather than freed under a running kernel).
            KernelFaultError: the kernel had stopped on a fault; what could be released was, and
                the replies published before the fault stay readable.
        """
        timeout = check_timeout(timeout, f"kernel {self.name}.terminate")
        stall_timeout = check_timeout(
            stall_timeout, f"kernel {self.name}.terminate", "stall_timeout"
        )
        with self._term_lock:
            if self._released:
                return self.stats()
            self._accepting = False
            if not self._launched:
                self._released = True
                self._abandon()
                return self.stats()
            deadline = deadline_after(timeout)
            with self._send_lock:  # no send is mid-publish when the request goes out
                if drain:
                    self._request_terminate()
                else:
                    self._request_stop_now()
            limit = timeout
            if not drain and (timeout is None or timeout > STOP_NOW_GRACE_S):
                limit, deadline = STOP_NOW_GRACE_S, deadline_after(STOP_NOW_GRACE_S)
            state, why = self._await_stop(deadline, stall_timeout if drain else None)
            if why is not None:
                self._give_up(state, why, limit if why == "timeout" else stall_timeout, drain)
            self._finish(state)
            log.debug(
                "terminated kernel %s on %s", self.name, self.backend, extra={"kernel": self.name}
            )
            if state is Lifecycle.FAULTED:
                raise self._fault_error("was terminated after a fault", final=True)
            return self.stats()

    def _await_stop(
        self, deadline: Optional[float], stall_timeout: Optional[float]
    ) -> tuple[Lifecycle, Optional[str]]:
        """Wait for the kernel to stop, moving its replies into the spill meanwhile.

        Returns (lifecycle, None) once it stopped, else (lifecycle, "timeout") when ``deadline``
        passed or (lifecycle, "stall") when nothing moved for ``stall_timeout`` seconds.
        """
        backoff = Backoff(spin_time=50e-6)
        progress = None
        moved_at = time.monotonic()
        while True:
            drained = self._drain_output()
            with self._recv_lock:
                ctl = self._control()
                state = self._lifecycle_now(ctl)
            if state in _STOPPED:
                return state, None
            now = time.monotonic()
            mark = _progress_mark(ctl)
            if drained or mark != progress:
                progress, moved_at = mark, now
                backoff.reset()
            if expired(deadline):
                return state, "timeout"
            if stall_timeout is not None and now - moved_at >= stall_timeout:
                return state, "stall"
            limit = deadline
            if stall_timeout is not None:
                stall_at = moved_at + stall_timeout
                limit = stall_at if limit is None else min(limit, stall_at)
            backoff.wait(limit)

    def _finish(self, state: Lifecycle) -> None:
        """Take the final snapshot, wait for the kernel to exit and free it (abandon it when it
        cannot be waited for, e.g. a device that died)."""
        # The lock order of every path that takes more than one: send -> receive -> dead-letter.
        # Holding all three, no other thread is inside the transport when it is freed, and each
        # one that comes next finds _released set and reads the final snapshot instead.
        with self._send_lock, self._recv_lock, self._dl_lock:
            try:
                self._drain_output()
                self._drain_dead_letters()
                final = self._stats_now(lifecycle=state)
                self._final_stats = attrs.evolve(
                    final, unprocessed=max(0, final.sent - final.processed)
                )
                self._final_state = self._read_state() if self.spec.state is not None else None
                self._synchronize(STOP_NOW_GRACE_S)
            except Exception as exc:  # a dead device or a launch that never ends: keep the memory
                log.warning(
                    "kernel %s (%s): could not wait for it to exit (%s); abandoned",
                    self.name,
                    self.backend,
                    exc,
                    extra={"kernel": self.name},
                )
                self._abandon()
                self._released = True
                return
            self._released = True
            self._release()

    def _drain_output(self) -> int:
        """Move the replies that are ready into the spill; returns how many."""
        if self.out_codec is None:
            return 0
        with self._recv_lock:
            if self._released or not self._launched:
                return 0
            batch = self._pop(self.capacity)
            self._spill.put(batch)
            self._spilled += len(batch)
            return len(batch)

    def _give_up(self, state: Lifecycle, why: str, limit: Optional[float], drained: bool) -> None:
        """After a timeout or a stall: stop the kernel now, free it (or abandon it), and raise."""
        if why == "timeout":
            what = f"did not acknowledge terminate within {limit:g} s"
        else:
            what = f"made no progress for {limit:g} s while draining"
        if drained:
            with self._send_lock:
                self._request_stop_now()
            _, late = self._await_stop(deadline_after(STOP_NOW_GRACE_S), None)
        else:
            late = "timeout"
        if late is None:
            self._finish(Lifecycle.FAULTED)
            left = self._final_stats.unprocessed if self._final_stats else 0
            outcome = f"it was stopped without draining ({left} message(s) unprocessed)"
        else:
            try:
                self._final_stats = self._stats_now(lifecycle=Lifecycle.FAULTED)
            except Exception:  # the transport may be what failed; the error below says enough
                self._final_stats = None
            with self._send_lock, self._recv_lock, self._dl_lock:
                self._abandon()
                self._released = True
            outcome = "it did not stop when told to either and was abandoned (its memory is kept)"
        raise KernelTimeoutError(
            f"kernel {self.name} ({self.backend}) {what} (lifecycle {state.name}); {outcome}",
            hint="a handler that never returns (an endless loop) keeps a kernel from draining; "
            "a kernel that is only slow needs a longer timeout or stall_timeout",
        )

    def __enter__(self: _Handle) -> _Handle:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Terminate the kernel: drain it on a normal exit; on an exception stop it now, and log
        (never raise) a failure to, so the caller sees its own exception only."""
        if exc_type is None:
            self.terminate()
            return
        try:
            self.terminate(drain=False)
        except Exception:
            log.exception(
                "terminating kernel %s while handling another error",
                self.name,
                extra={"kernel": self.name},
            )


def _progress_mark(ctl: np.ndarray) -> tuple[int, ...]:
    """The control-block counters that move while a kernel makes progress (compared between polls
    by ``terminate``; any change counts). Not the heartbeat: on CUDA the poller beats it while a
    worker is stuck in an endless handler, so it would hide that stall (as for the watchdog)."""
    return tuple(int(ctl[f]) for f in ("processed", "emitted", "launches"))
