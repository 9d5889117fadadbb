"""Persistent mode of the OpenCL backend: resident work-groups polling queues in fine-grained SVM.

The control block, both queue counters and both rings live in fine-grained SVM with atomics, which host
and kernel share while ``rg_<k>_persistent`` stays resident on the handle's own command queue. The
host's side of each queue is ``ringgen.runtime.host_ring`` over that SVM (one-word loads and stores,
x86-64 TSO: argued in ``ringgen.runtime.opencl``).
"""

from __future__ import annotations

import time
import weakref
from typing import Any, ClassVar, Optional

import numpy as np

from ...errors import BackendUnavailableError, KernelTimeoutError
from ...layout import layout_of
from ...protocol import (
    CONTROL_DTYPE,
    CONTROL_SIZE,
    QUEUE_CTL_DTYPE,
    TERMINATE_DRAIN,
    TERMINATE_STOP_NOW,
    Lifecycle,
)
from ..dead_letters import DEAD_LETTER_CTL_DTYPE
from ..host_ring import RingConsumer, RingProducer
from .barrier_words import barrier_words
from ..telemetry import Telemetry
from .common import _LINE, OpenclKernel, _bytes
from .build import context_for

__all__ = ["OpenclPersistentKernel"]

#: Slots the host copies before it publishes them, so copying overlaps the kernel's processing.
_PUBLISH_CHUNK = 16384

#: Memory of kernels that failed before their launch was enqueued (no event to wait for): kept, since
#: whether the device still uses it cannot be known.
_ABANDONED: list = []
#: Resident kernels whose handle was dropped without ``terminate``, or abandoned by it: asked to stop
#: now, their memory kept until their launch completes (freed by the next launch that finds them done,
#: or by ``_reap_orphans``). Freeing SVM under a resident kernel would let it scribble on reused memory.
_ORPHANS: list = []


def _stop_orphan(ctl: np.ndarray, allocs: list, queue: Any, event: Any) -> None:
    """Finalizer of a persistent handle dropped while its kernel runs: ask the kernel to stop now
    (no one will drain its output queue again, so a drain request could wait forever on a full one)
    and keep its memory alive until it has."""
    ctl["terminate"] = TERMINATE_STOP_NOW
    _ORPHANS.append((allocs, queue, event))


#: How long a launch waits for orphaned kernels (asked to stop now) to give their compute units back.
_ORPHAN_WAIT_S = 2.0


def _reap_orphans() -> None:
    """Free the memory of every orphaned kernel whose launch has completed."""
    import pyopencl as cl

    done = cl.command_execution_status.COMPLETE
    for entry in list(_ORPHANS):
        allocs, _queue, event = entry
        if event.command_execution_status == done:
            _ORPHANS.remove(entry)
            for arr in allocs:
                arr.base.release()


class OpenclPersistentKernel(OpenclKernel):
    """Persistent mode: resident work-groups polling queues in fine-grained SVM.

    One group by default: PoCL runs a work-group on one worker thread, a resident group must never
    wait for a thread (groups <= compute units = POCL_MAX_PTHREAD_COUNT), and on a small machine the
    host thread needs a core of its own to feed and drain the rings. Within a group, ``group_size``
    work-items run the handler on consecutive messages; with ``groups`` > 1 the groups claim ranges
    and publish them in input order.
    """

    persistent: ClassVar[bool] = True
    #: A waiting receive polls without yielding, then sleeps: the resident group is a PoCL worker
    #: thread that never sleeps, and where it shares this thread's core (another process busy on
    #: the other one), each ``sched_yield`` gave it the core for a whole time slice (3-4 ms a round
    #: trip on the 2-core CI machine against 0.3 ms with plain polls and sleeps; NOTES-opencl.md).
    free_poll_yields: ClassVar[bool] = False
    #: ... and for 50 us, not 200: a reply on a quiet machine comes within that (10-40 us for 1 to
    #: 4,096 messages, and a large batch's replies stream in), and under load a thread that sleeps
    #: sooner is scheduled sooner (4,096: 200 vs 362 us p50 at load average 1.4; NOTES-opencl.md).
    free_poll_s: ClassVar[float] = 50e-6

    def _svm(self, nbytes: int) -> np.ndarray:
        import pyopencl as cl

        flags = (
            cl.svm_mem_flags.READ_WRITE
            | cl.svm_mem_flags.SVM_FINE_GRAIN_BUFFER
            | cl.svm_mem_flags.SVM_ATOMICS
        )
        try:
            arr = cl.svm_empty(self._ctx, flags, max(nbytes, _LINE), np.uint8, alignment=_LINE)
        except (RuntimeError, cl.Error) as exc:  # "clSVMAlloc failed": open() names the capacity
            raise MemoryError(
                f"clSVMAlloc of {max(nbytes, _LINE):,} bytes failed ({exc})"
            ) from None
        arr[:] = 0
        self._allocs.append(arr)
        return arr

    def _launch(self) -> None:
        import pyopencl as cl

        self._ctx = context_for(self.device_info)
        self._allocs: list[np.ndarray] = []
        self._wait_for_compute_units()
        prg = self._build()
        cap = self.capacity
        ctl = self._svm(CONTROL_SIZE)
        inq = self._svm(QUEUE_CTL_DTYPE.itemsize)
        outq = self._svm(QUEUE_CTL_DTYPE.itemsize)
        in_ring = self._svm(cap * self.in_slot.itemsize)
        out_ring = self._svm(cap * self.out_slot.itemsize)
        # The dead-letter queue: its rg_dead_letter_ctl and a ring of input-sized slots (one line
        # and capacity 0 when disabled: the kernel then returns nothing and counts no drops).
        dlq = self._svm(DEAD_LETTER_CTL_DTYPE.itemsize)
        dl_cap = self.dead_letter_capacity
        dl_ring = self._svm(dl_cap * self.in_slot.itemsize)
        groups = self._svm(5 * _LINE)  # rg_groups: claim, turn, reserve, exited, dl_reserve
        state = self._svm(self.spec.state and layout_of(self.spec.state).size or 1)
        if self.spec.state is not None:
            init = _bytes(self._initial_state())
            state[: init.size] = init
        self._state_mem = state
        self._ctl = ctl.view(CONTROL_DTYPE)
        self._ctl_rec = self._ctl[0]
        # Word views of the queues' control (memoryviews of format "Q": a poll or a publish is one
        # aligned 8-byte load or store, and reads give Python ints without a numpy scalar).
        self._words = [memoryview(q).cast("Q") for q in (inq, outq, dlq)]
        in_words, out_words, dl_words = self._words
        self._inq = RingProducer(
            in_ring, self.in_slot, cap, in_words, 0, publish_chunk=_PUBLISH_CHUNK
        )
        self._outq = RingConsumer(out_ring, self.out_slot, cap, out_words, 0)
        # The dead-letter queue is a ring of input slots, handed out as their bytes.
        self._dlq = RingConsumer(dl_ring, self.in_slot, dl_cap, dl_words, 0)
        self._dl_dropped_at = DEAD_LETTER_CTL_DTYPE.fields["dropped"][1] // 8
        self._ctl["state"] = int(Lifecycle.LAUNCHED)
        self._queue = cl.CommandQueue(self._ctx, self.device_info.device)
        kernel = self._entry_point(prg, "persistent")
        kernel.set_args(
            cl.SVM(ctl),
            cl.SVM(inq),
            cl.SVM(in_ring),
            np.uint64(cap),
            cl.SVM(outq),
            cl.SVM(out_ring),
            np.uint64(cap),
            cl.SVM(dlq),
            cl.SVM(dl_ring),
            np.uint64(dl_cap),
            cl.SVM(state),
            cl.SVM(groups),
            # The barriers it waits on: storage every kernel of the process shares (docs/barriers.md).
            *(cl.SVM(barrier_words(self._ctx, name)) for name in self._abi().get("barriers", ())),
        )
        self._event = cl.enqueue_nd_range_kernel(
            self._queue, kernel, (self.group_size * self.groups,), (self.group_size,)
        )
        self._queue.flush()
        # Dropped without terminate, the handle must neither free memory under the running kernel nor
        # leave it spinning: the finalizer (holding no reference to self) stops it and parks the memory.
        self._finalizer = weakref.finalize(
            self, _stop_orphan, self._ctl, self._allocs, self._queue, self._event
        )

    def _wait_for_compute_units(self) -> None:
        """Reap finished orphans; raise when kernels that never stopped hold too many compute units.

        A resident group holds a compute unit (on PoCL, a worker thread) until its kernel returns: a
        launch that cannot get one would wait for ACTIVE until ``launch_timeout`` with no hint why.

        Raises:
            BackendUnavailableError: orphans still running after ``_ORPHAN_WAIT_S`` leave fewer
                than ``groups`` compute units.
        """
        units = self.device_info.compute_units
        deadline = time.monotonic() + _ORPHAN_WAIT_S
        while True:
            _reap_orphans()
            running = len(_ORPHANS)
            if running + self.groups <= units:
                return
            if time.monotonic() >= deadline:
                raise BackendUnavailableError(
                    f"kernel {self.name}: {running} abandoned persistent kernel(s) still run on "
                    f"{self.device_info.label}, which has {units} compute unit(s); this launch "
                    f"needs {self.groups} more",
                    hint="a kernel is abandoned only when its handler ignores the stop request "
                    "(hand-written code without the loop polls); its compute unit never comes "
                    "back: restart the process, or use mode='relaunch'",
                )
            time.sleep(0.01)

    # ---- transport

    def _push(self, batch: np.ndarray) -> int:
        head = self._inq.device_head()
        timer = self._timer
        if timer is None:
            return self._inq.put(batch, head)
        stamp = timer.stamp()  # before the put publishes anything
        n = self._inq.put(batch, head)
        timer.sent(n, stamp)
        timer.completed(head)
        return n

    def _pop(self, max_n: int) -> np.ndarray:
        out = self._outq.take(max_n)
        timer = self._timer
        if timer is not None:
            # The input head is released after the outputs are published (in input order): every
            # message below it has its replies visible now.
            timer.completed(self._inq.device_head())
            if len(out) and timer.due():
                timer.sample_depths(*self._queue_depths())
        return out

    def _pop_into(self, dst: np.ndarray) -> Optional[int]:
        n = self._outq.take_into(dst)
        timer = self._timer
        if timer is not None:  # as in _pop: every message below the input head is answered now
            timer.completed(self._inq.device_head())
            if n and timer.due():
                timer.sample_depths(*self._queue_depths())
        return n

    def _pop_dead_letters(self, max_n: int) -> np.ndarray:
        return self._dlq.take(max_n).view(np.uint8).reshape(-1, self.in_slot.itemsize)

    def _dead_letters_dropped(self) -> int:
        return self._words[2][self._dl_dropped_at]

    def _control(self) -> np.ndarray:
        return self._ctl_rec

    def _telemetry(self, ctl: np.ndarray) -> Optional[Telemetry]:
        return self._timer_read(ctl, self._inq.device_head())

    def _queue_depths(self) -> tuple[int, int]:
        return self._inq.tail - self._inq.device_head(), self._outq.depth()

    def _read_state(self) -> Any:
        size = layout_of(self.spec.state).size
        return self._state_from_bytes(self._state_mem[:size].copy())

    def _request_terminate(self) -> None:
        self._ctl["terminate"] = TERMINATE_DRAIN

    def _request_stop_now(self) -> None:
        # The resident loop polls it in every wait, and the handlers' loops at every back-edge.
        self._ctl["terminate"] = TERMINATE_STOP_NOW

    def _synchronize(self, timeout: float) -> None:
        import pyopencl as cl

        deadline = time.monotonic() + timeout
        while self._event.command_execution_status != cl.command_execution_status.COMPLETE:
            if time.monotonic() >= deadline:
                raise KernelTimeoutError(
                    f"kernel {self.name} (opencl) acknowledged termination but its launch did not "
                    f"complete within {timeout:g} s"
                )
            time.sleep(50e-6)
        self._queue.finish()

    def _release(self) -> None:
        self._finalizer.detach()
        for ring in (self._inq, self._outq, self._dlq):
            ring.close()
        for view in self._words:
            view.release()
        for arr in self._allocs:
            arr.base.release()
        self._allocs.clear()
        self._queue = None
        self._event = None

    def _abandon(self) -> None:
        # Ask the kernel to stop now and never wait on its queue, so the process can still exit. Its
        # memory stays alive until its launch completes (a handler that never returns keeps it
        # forever): freeing SVM under a resident kernel would let it scribble on reused memory.
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
        event = getattr(self, "_event", None)
        if getattr(self, "_allocs", None):
            if event is not None:
                self._ctl["terminate"] = TERMINATE_STOP_NOW
                _ORPHANS.append((self._allocs, getattr(self, "_queue", None), event))
            else:
                _ABANDONED.append((self._allocs, getattr(self, "_queue", None), None))
            self._allocs = []
        self._queue = None
