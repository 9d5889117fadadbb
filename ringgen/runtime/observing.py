"""Observing a ring kernel: the lifecycle, stats and state snapshots of ``KernelHandle``, and the
fault it reports (a mixin of it).

Every observer reads the transport under the receive lock, and after termination reads the final
snapshot instead (docs/runtime.md, "Threads"). A kernel can die on the device without writing
FAULTED to its control block (a CUDA kernel that loses its context); every observer of the lifecycle
also asks the backend (``_device_fault``), at most every ``DEVICE_FAULT_POLL_S`` seconds, so such a
kernel is reported FAULTED within that time. Every observer of an ACTIVE kernel also asks its
``Watchdog`` (``ringgen.runtime.watchdog``), which reports STALLED for a kernel with input waiting
that has handled nothing for the launch option ``stall_timeout``.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import attrs
import numpy as np

from ..errors import KernelFaultError, KernelStalledError
from ..protocol import CONTROL_DTYPE, Lifecycle, Reason
from .logs import kernel_logger
from .stats import KernelStats, stats_from_control
from .telemetry import Telemetry
from .termination import _STOPPED

__all__ = ["DEVICE_FAULT_POLL_S", "Observation"]

log = kernel_logger(__name__)

#: How often (seconds) an observer of the lifecycle asks the backend whether the device itself still
#: runs the kernel (``_device_fault``). A dead kernel cannot write FAULTED to its control block, so this
#: check is what makes it visible; 10 ms keeps the cost off hot polling loops and the detection well
#: inside the 100 ms a user waits at most to learn of it.
DEVICE_FAULT_POLL_S = 0.010


class Observation:
    """``lifecycle``, ``stats``, ``state`` and the fault errors of ``KernelHandle``.

    It relies on what ``KernelHandle`` defines: ``name``, ``backend``, ``spec``, ``capacity``, the
    receive lock, ``_spill``, ``_spilled``, ``_sent``, ``_received``, ``_accepting``, ``_launched``,
    ``_released``, ``_final_stats``, ``_final_state``, ``_device_error``, ``_device_checked_at``,
    ``_watchdog``, ``_dead_letters_dropped`` and the transport hooks (``_control``, ``_queue_depths``,
    ``_latency``, ``_read_state``, ``_device_fault``, ``_fault_detail``).
    """

    @property
    def lifecycle(self) -> Lifecycle:
        """The kernel's lifecycle state (``ringgen.protocol.Lifecycle``)."""
        with self._recv_lock:
            if self._released:
                return self._final_stats.lifecycle if self._final_stats else Lifecycle.TERMINATED
            if not self._launched:
                return Lifecycle.CREATED
            return self._lifecycle_now()

    def _lifecycle_now(self, ctl: Optional[np.ndarray] = None) -> Lifecycle:
        """The lifecycle in ``ctl`` (default: the control block now), STALLED when the watchdog
        finds an ACTIVE kernel stalled."""
        if ctl is None:
            ctl = self._control()
        try:
            state = Lifecycle(int(ctl["state"]))
        except ValueError:
            state = Lifecycle.FAULTED
        if state is Lifecycle.STALLED:  # host only: a device never writes it
            state = Lifecycle.FAULTED
        if state not in _STOPPED and self._device_died():
            state = Lifecycle.FAULTED
        if state is Lifecycle.FAULTED:
            # Sends check this flag only, so the hot path reads no control block; every observer
            # of the fault (receive, stats, a blocked send) closes the input side here.
            self._accepting = False
        elif state is Lifecycle.ACTIVE and self._watchdog.stall_timeout is not None:
            state = self._watchdog.observe(ctl, state, self._sent, self._queue_depths)
        return state

    def _stalled_error(self, call: str) -> KernelStalledError:
        """What a ``call`` (receive, send) of a STALLED kernel raises."""
        with self._recv_lock:
            depth, pending = 0, 0
            if not self._released:
                depth = self._queue_depths()[0]
                pending = max(0, self._sent - int(self._control()["processed"]))
        return KernelStalledError(
            f"kernel {self.name} ({self.backend}): {call} gave up: the kernel handled nothing for "
            f"{self._watchdog.stalled_for():.3f} s with input waiting (input queue depth {depth}, "
            f"{pending} message(s) sent and not handled; "
            f"launch option stall_timeout={self._watchdog.stall_timeout:g} s)",
            hint="a handler in an endless loop never returns: stop the kernel with "
            "terminate(drain=False); a handler slower than stall_timeout is not stuck: launch "
            "with a larger stall_timeout (None switches the watchdog off)",
        )

    def _device_died(self) -> bool:
        """True once the backend reports that the device no longer runs the kernel.

        Asks ``_device_fault`` at most every ``DEVICE_FAULT_POLL_S`` seconds and remembers the answer.
        """
        if self._device_error is not None:
            return True
        now = time.monotonic()
        if now - self._device_checked_at < DEVICE_FAULT_POLL_S:
            return False
        self._device_checked_at = now
        self._device_error = self._device_fault()
        if self._device_error is not None:
            log.error(
                "kernel %s (%s) died on the device: %s",
                *(self.name, self.backend, self._device_error),
                extra={"kernel": self.name},
            )
        return self._device_error is not None

    def stats(self) -> KernelStats:
        """A snapshot of the kernel's counters (``KernelStats``); after termination, the final one."""
        with self._recv_lock:
            if self._released:
                return self._stats_after_release()
            return self._stats_now()

    def _stats_now(self, lifecycle: Optional[Lifecycle] = None) -> KernelStats:
        in_depth, out_depth = self._queue_depths()
        ctl = self._control()  # one read: lifecycle and counters from the same moment
        if lifecycle is None:
            lifecycle = self._lifecycle_now(ctl)
        stats = stats_from_control(
            ctl,
            kernel=self.name,
            backend=self.backend,
            input_depth=in_depth,
            output_depth=out_depth + self._spill.count,
            capacity=self.capacity,
            sent=self._sent,
            received=self._received,
            latency=self._latency(),
            lifecycle=lifecycle,
            dead_letters_dropped=self._dead_letters_dropped(),
            spilled=self._spilled,
            telemetry=self._telemetry(ctl),
        )
        if self._device_error is not None:
            stats = attrs.evolve(stats, fault=self._device_error)
        return stats

    def _telemetry(self, ctl: np.ndarray) -> Optional[Telemetry]:
        """The decoded telemetry buffer (``ringgen.runtime.telemetry``), or None where the backend
        records none or the launch option ``telemetry`` is off; ``ctl`` gives the per-reason counts.
        """
        return None

    def _stats_after_release(self) -> KernelStats:
        final = self._final_stats
        if final is None:  # abandoned before any snapshot could be read
            final = stats_from_control(
                np.zeros((), dtype=CONTROL_DTYPE),
                kernel=self.name,
                backend=self.backend,
                input_depth=0,
                output_depth=0,
                capacity=self.capacity,
                sent=self._sent,
                received=self._received,
                lifecycle=Lifecycle.FAULTED,
                spilled=self._spilled,
            )
        return attrs.evolve(final, output_depth=self._spill.count, received=self._received)

    def state(self) -> Any:
        """A copy of the kernel's ``@rg.state`` object as it is now (None for a stateless kernel).

        After termination, the state as the kernel left it. Changing the copy changes nothing.
        """
        if self.spec.state is None:
            return None
        with self._recv_lock:
            if self._released:
                return self._final_state
            return self._read_state()

    def _fault_error(self, what: str, *, final: bool = False) -> KernelFaultError:
        fault = self._final_stats.fault if final and self._final_stats else None
        if fault is None:
            fault = self._device_error
        if fault is None and not self._released:
            code = int(self._control()["fault"])
            if code:
                fault = Reason(code).name if code in Reason._value2member_map_ else f"REASON_{code}"
        detail = self._fault_detail()
        return KernelFaultError(
            f"kernel {self.name} ({self.backend}) {what}: it stopped on "
            + (f"fault {fault}" if fault else "an unexpected error")
            + (f": {detail}" if detail else ""),
            hint="see stats() for its counters; launch it again to continue",
        )

    def _input_depth_safe(self) -> int:
        with self._recv_lock:
            return self._spill.count if self._released else self._queue_depths()[0]
