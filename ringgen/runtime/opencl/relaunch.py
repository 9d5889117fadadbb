"""Relaunch mode of the OpenCL backend: for devices without fine-grained SVM (NVIDIA's OpenCL).

The host keeps both queues; each launch of ``rg_<k>_relaunch`` drains what is queued from a device
buffer. The control block and the kernel state stay in device buffers between launches.

A kernel that waits on a barrier runs in steps instead (docs/barriers.md, "OpenCL relaunch: a launch
per phase"): exactly ``parties`` messages at a time, launched once per phase of the split handler, in
order, on the one in-order command queue, so every message finishes phase j before any starts j + 1.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Optional

import numpy as np

from ...layout import layout_of
from ...protocol import CONTROL_DTYPE, TERMINATE_STOP_NOW, Lifecycle
from ..batches import SpillBuffer
from ..dead_letters import mark_dead_letters
from ..telemetry import Telemetry
from .common import OpenclKernel, _concat
from .build import context_for

__all__ = ["OpenclRelaunchKernel"]

#: Byte offset of the terminate word in the control block (where ``_request_stop_now`` writes).
_TERMINATE_OFFSET = CONTROL_DTYPE.fields["terminate"][1]


class _Launch:
    """One relaunch-mode launch in flight: the kernel's event, the batch it took and, for a step of
    a waiting kernel, the phase the event runs.

    Nothing else is enqueued behind the kernel while it runs: on PoCL an enqueue onto a queue
    whose kernel is still running blocks inside the OpenCL call (holding the GIL), so a handler that
    loops forever would hang ``send`` itself. The read-backs, and a step's next phase, are enqueued
    once the kernel is done.
    """

    __slots__ = ("event", "n", "keep", "phase")

    def __init__(self, event, n, keep) -> None:
        self.event, self.n, self.keep, self.phase = event, n, keep, 0


class OpenclRelaunchKernel(OpenclKernel):
    """Relaunch mode: the host keeps both queues; each launch drains what is queued.

    The input queue is a host list of batches (at most ``capacity`` messages waiting); a launch copies
    up to ``capacity`` of them to a device buffer, runs ``rg_<k>_relaunch`` over them and reads the
    outputs, their per-message counts and the control block back, all on one in-order command queue
    without blocking. Replies wait host-side (at most ``capacity`` plus one launch's worth); while they
    are full no launch starts, which is the same back-pressure a resident kernel applies when its
    output queue is full. Kernel state and the control block stay in device buffers.

    Barriers: a kernel that waits on one runs a step of exactly ``parties`` messages (the manifest's
    ``abi.opencl.steps``) per launch sequence: phase 0, then each next phase once the previous
    launch completed, then the read-backs. Fewer than ``parties`` queued are held until their step
    is whole; after a terminate request they run as a short step, broken from the start (each of
    them that reaches a wait leaves it with ``BARRIER_BROKEN``), so the kernel terminates.

    Dead letters: each launch also reads back the Reason each message failed validation for (0 when
    it passed); with a dead-letter queue the host marks those slots of the batch it kept, exactly as
    ``rg_wire_mark_dead_letter`` would, into a bounded host-side queue (full: counted, not kept).
    """

    persistent: ClassVar[bool] = False

    def _launch(self) -> None:
        import pyopencl as cl

        # Both sides of the host-kept queues (the sender's _push, the receiver's _pop) start and reap
        # launches, so unlike the persistent transport they share state: one lock guards it.
        self._lock = threading.RLock()

        self._steps = self._relaunch_steps()
        self._ctx = context_for(self.device_info)
        prg = self._build()
        self._kernel = self._entry_point(prg, "relaunch")
        self._queue = cl.CommandQueue(self._ctx, self.device_info.device)
        # A second queue only for the stop-now request: it is not ordered behind a running launch,
        # so a handler's loop (which polls the control block's terminate word) sees it mid-launch
        # where the device lets a write land during a kernel (PoCL does; measured in
        # bench/terminate.py). Elsewhere the request lands after the launch, which then ends.
        self._stop_queue = cl.CommandQueue(self._ctx, self.device_info.device)
        mf = cl.mem_flags
        cap = self.capacity
        self._ctl_host = np.zeros(1, dtype=CONTROL_DTYPE)
        self._ctl_host["state"] = int(Lifecycle.ACTIVE)
        self._ctl_buf = cl.Buffer(
            self._ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=self._ctl_host
        )
        try:
            self._in_buf = cl.Buffer(self._ctx, mf.READ_ONLY, cap * self.in_slot.itemsize)
            self._out_buf = cl.Buffer(
                self._ctx, mf.WRITE_ONLY, cap * self.limit * self.out_slot.itemsize
            )
            self._counts_buf = cl.Buffer(self._ctx, mf.WRITE_ONLY, cap * 4)
            self._dead_buf = cl.Buffer(self._ctx, mf.WRITE_ONLY, cap * 4)
        except cl.Error as exc:  # e.g. INVALID_BUFFER_SIZE past the device's largest allocation
            raise MemoryError(f"clCreateBuffer failed ({exc})") from None
        if self._steps is not None:
            self._steps_buf = cl.Buffer(self._ctx, mf.READ_WRITE, self._steps["scratch_bytes"])
            # the header's `broken` word before phase 0: a whole step, a short one
            self._step_headers = (np.zeros(2, np.uint32), np.array([1, 0], np.uint32))
        self._dead_letters = SpillBuffer()  # marked slot rows, at most dead_letter_capacity
        self._dl_dropped = 0
        if self.spec.state is not None:
            self._state_buf = cl.Buffer(
                self._ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=self._initial_state()
            )
        else:
            self._state_buf = cl.Buffer(self._ctx, mf.READ_WRITE, 16)
        self._pending: list[np.ndarray] = []  # input batches not launched yet
        self._pending_n = 0
        self._inflight: list[_Launch] = []
        self._ready: list[np.ndarray] = []  # output batches ready for the host
        self._ready_n = 0
        self._emitted = 0
        self._terminating = False
        self._completed = 0  # messages of reaped launches, in input order (telemetry)

    # ---- launching

    def _room_for_replies(self) -> int:
        waiting = self._ready_n + sum(ln.n * self.limit for ln in self._inflight)
        return max(0, self.capacity - waiting)

    def _pump(self) -> None:
        """Start launches for queued input while replies have room (never blocks)."""
        import pyopencl as cl

        while self._pending_n and not self._inflight:
            n = min(self._pending_n, self.capacity, self._room_for_replies() // self.limit)
            short = False
            if self._steps is not None:
                n, short = self._step_size(n)
            if n <= 0:
                return
            batch = self._take_pending(n)
            cl.enqueue_copy(self._queue, self._in_buf, batch, is_blocking=False)
            if self._steps is not None:
                header = self._step_headers[short]
                cl.enqueue_copy(self._queue, self._steps_buf, header, is_blocking=False)
            self._inflight.append(_Launch(self._enqueue(n, 0), n, batch))

    def _step_size(self, fit: int) -> tuple[int, bool]:
        """(messages of the next step, whether it is short) for a kernel that waits on a barrier,
        given that ``fit`` messages could be launched now; (0, False) to hold what is queued."""
        parties = self._steps["parties"]
        if self._pending_n >= parties:
            return (parties if fit >= parties else 0), False
        if self._terminating and fit == self._pending_n:
            # nothing more can arrive: a step that can never be whole runs broken, never hangs
            return fit, True
        return 0, False

    def _enqueue(self, n: int, phase: int):
        """Launch the entry point over the ``n`` messages on the device (phase ``phase`` of a step
        for a waiting kernel); returns its event."""
        import pyopencl as cl

        args = [
            self._ctl_buf,
            self._in_buf,
            np.uint64(n),
            self._out_buf,
            self._counts_buf,
            self._dead_buf,
            self._state_buf,
        ]
        if self._steps is not None:
            args += [self._steps_buf, np.uint32(phase)]
        self._kernel.set_args(*args)
        if self.spec.ordered:
            gsize, lsize = (1,), (1,)
        else:
            lsize = None
            gsize = (n,)
        event = cl.enqueue_nd_range_kernel(self._queue, self._kernel, gsize, lsize)
        self._queue.flush()
        return event

    def _take_pending(self, n: int) -> np.ndarray:
        if len(self._pending[0]) == n:
            self._pending_n -= n
            return self._pending.pop(0)
        parts, got = [], 0
        while got < n:
            b = self._pending[0]
            k = min(len(b), n - got)
            parts.append(b[:k])
            if k == len(b):
                self._pending.pop(0)
            else:
                self._pending[0] = b[k:]
            got += k
        self._pending_n -= n
        return _concat(parts, self.in_slot)

    def _reap(self, wait: bool = False) -> None:
        """Collect finished launches, in order, into the reply list."""
        import pyopencl as cl

        done = cl.command_execution_status.COMPLETE
        while self._inflight:
            ln = self._inflight[0]
            if wait:
                ln.event.wait()
            elif ln.event.command_execution_status != done:
                return
            if self._steps is not None and ln.phase + 1 < self._steps["phases"]:
                # the queue is idle: the step's next phase sees every write of this one
                ln.phase += 1
                ln.event = self._enqueue(ln.n, ln.phase)
                continue
            self._inflight.pop(0)
            n = ln.n
            out = np.empty(n * self.limit, dtype=self.out_slot)
            counts = np.empty(n, dtype=np.uint32)
            dead = np.empty(n, dtype=np.uint32)
            ctl = np.empty(1, dtype=CONTROL_DTYPE)
            # The kernel is done: these copies run at once (the last one waits for all four).
            cl.enqueue_copy(self._queue, out, self._out_buf, is_blocking=False)
            cl.enqueue_copy(self._queue, counts, self._counts_buf, is_blocking=False)
            if self.dead_letter_capacity:
                cl.enqueue_copy(self._queue, dead, self._dead_buf, is_blocking=False)
            cl.enqueue_copy(self._queue, ctl, self._ctl_buf, is_blocking=True)
            if self.limit == 1:
                if not counts.all():
                    out = out[counts.astype(bool)]
            else:
                mask = np.arange(self.limit)[None, :] < counts[:, None]
                out = out.reshape(n, self.limit)[mask]
            self._ctl_host[0] = ctl[0]
            if self.dead_letter_capacity:
                self._keep_dead_letters(ln, dead)
            self._emitted += len(out)
            if len(out):
                self._ready.append(out)
                self._ready_n += len(out)
            self._completed += n
            if self._timer is not None:
                self._timer.completed(self._completed)  # the replies are the host's from now
                if self._timer.due():
                    self._timer.sample_depths(*self._queue_depths())
        self._pump()

    def _keep_dead_letters(self, ln: _Launch, dead: np.ndarray) -> None:
        """Queue the launch's rejected slots as marked dead letters (those that fit; count the rest)."""
        idx = np.flatnonzero(dead)
        if not len(idx):
            return
        room = self.dead_letter_capacity - self._dead_letters.count
        if len(idx) > room:
            self._dl_dropped += len(idx) - max(room, 0)
            idx = idx[: max(room, 0)]
        if len(idx):
            rows = np.ascontiguousarray(ln.keep[idx]).view(np.uint8).reshape(len(idx), -1)
            self._dead_letters.put(mark_dead_letters(rows, dead[idx]))

    # ---- transport

    def _push(self, batch: np.ndarray) -> int:
        with self._lock:
            return self._push_locked(batch)

    def _push_locked(self, batch: np.ndarray) -> int:
        self._reap()
        n = min(len(batch), self.capacity - self._pending_n)
        if n <= 0:
            return 0
        if self._timer is not None:
            self._timer.sent(n, self._timer.stamp())  # queued from now (nothing launches it yet)
        self._pending.append(np.array(batch[:n], copy=True))  # the caller may reuse its array
        self._pending_n += n
        self._pump()
        return n

    def _pop(self, max_n: int) -> np.ndarray:
        with self._lock:
            return self._pop_locked(max_n)

    def _pop_locked(self, max_n: int) -> np.ndarray:
        self._reap()
        parts, got = [], 0
        while self._ready and got < max_n:
            first = self._ready[0]
            if len(first) <= max_n - got:
                self._ready.pop(0)
                part = first
            else:
                part, self._ready[0] = first[: max_n - got], first[max_n - got :]
            parts.append(part)
            got += len(part)
        self._ready_n -= got
        self._pump()
        if not parts:
            return np.zeros(0, self.out_slot)
        return parts[0] if len(parts) == 1 else _concat(parts, self.out_slot)

    def _pop_dead_letters(self, max_n: int) -> np.ndarray:
        with self._lock:
            self._reap()
            part = self._dead_letters.take(max_n)
        if part is None:
            return np.zeros((0, self.in_slot.itemsize), dtype=np.uint8)
        return part

    def _dead_letters_dropped(self) -> int:
        return self._dl_dropped

    def _control(self) -> np.ndarray:
        with self._lock:
            # Observing the kernel moves it on: a host that only polls stats() (waiting for
            # `processed` to reach a count) must see the queued input launched and reaped.
            self._reap()
            rec = self._ctl_host.copy()
            rec["emitted"] = self._emitted
            if self._terminating:
                idle = not self._pending_n and not self._inflight
                rec["state"] = int(Lifecycle.TERMINATED if idle else Lifecycle.TERMINATING)
            return rec[0]

    def _telemetry(self, ctl: np.ndarray) -> Optional[Telemetry]:
        with self._lock:
            return self._timer_read(ctl, self._completed)

    def _queue_depths(self) -> tuple[int, int]:
        with self._lock:
            inflight = sum(ln.n for ln in self._inflight)
            return self._pending_n + inflight, self._ready_n

    def _read_state(self) -> Any:
        import pyopencl as cl

        with self._lock:
            self._reap(wait=True)
            raw = np.empty(layout_of(self.spec.state).size, dtype=np.uint8)
            cl.enqueue_copy(self._queue, raw, self._state_buf, is_blocking=True)
        return self._state_from_bytes(raw)

    def _request_terminate(self) -> None:
        with self._lock:
            self._terminating = True
            self._pump()

    def _request_stop_now(self) -> None:
        import pyopencl as cl

        # Nothing more is launched: what is still queued host-side stays unprocessed; the launch in
        # flight (at most one) finishes and is reaped as usual. A step in flight runs its later
        # phases, where its messages still at a wait leave with FAULT_STOPPED once they see the word.
        with self._lock:
            self._terminating = True
            self._pending = []
            self._pending_n = 0
            if self._inflight and getattr(self, "_stop_queue", None) is not None:
                word = np.array([TERMINATE_STOP_NOW], dtype=np.uint32)
                cl.enqueue_copy(
                    self._stop_queue,
                    self._ctl_buf,
                    word,
                    dst_offset=_TERMINATE_OFFSET,
                    is_blocking=False,
                )
                self._stop_queue.flush()

    def _synchronize(self, timeout: float) -> None:
        self._queue.finish()

    def _release(self) -> None:
        for name in (
            "_ctl_buf",
            "_in_buf",
            "_out_buf",
            "_counts_buf",
            "_dead_buf",
            "_state_buf",
            "_steps_buf",
        ):
            buf = getattr(self, name, None)
            if buf is not None:
                buf.release()
                setattr(self, name, None)
        self._queue = None
        self._stop_queue = None

    def _abandon(self) -> None:
        # A relaunch kernel always finishes; nothing resident to leave behind. Drop the queue
        # without waiting on it.
        self._inflight = []
        self._queue = None
        self._stop_queue = None
