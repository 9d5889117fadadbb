"""Backend ``"cpu"``: the reference. A resident worker thread runs the user's handler in Python.

The kernel is the handler itself, run by ``ringgen.reference.interpreter`` on numpy-typed messages (so integer
arithmetic wraps and floats round as on a device, and ``rg.atomic_*`` act on the state object). It is
slow on purpose and exact on purpose: every device backend is tested against it.

What it shares with the device backends: bounded SPSC queues with the device protocol
(``HostQueue``), a control block with ``ringgen.protocol.CONTROL_DTYPE`` written only by the worker
(except the host's terminate word), the lifecycle, back-pressure (a full output queue makes the worker
wait and count an output stall; nothing is dropped), faults counted by reason, and the termination
handshake.

Raw slots (``send_raw``) travel as ``RawSlot`` items and are decoded by the worker when it takes
them, with the host's wire decoder (``ringgen.wire``: the same checks, in the same order, and the same
``Reason`` as the device codec); a message that fails is counted under its Reason and, with
``dead_letters``, returned marked through a bounded ``HostQueue`` of slot rows (full: counted, never
waited for).

Scheduling: the worker is one thread and handles one message at a time in arrival order. That is a
valid schedule of a parallel kernel (any interleaving is allowed, this one included) and exactly the
semantics of an ``ordered=True`` kernel. A handler fault (``HandlerFault``: index out of range,
division by zero, outbox overflow, range error) rejects that message and is counted; any other
exception from the handler is a bug the compiler would have rejected, so it stops the kernel
(lifecycle FAULTED) and the host's next call raises ``KernelFaultError`` with the exception.
"""

from __future__ import annotations

import ctypes
import threading
import time
import traceback
import weakref
from typing import Any, Callable, Optional, Union

import numpy as np

from ..barriers import break_barriers
from ..reference.records import HandlerFault, Record
from ..reference.interpreter import new_state, reference_handler
from ..errors import KernelTimeoutError, WireFormatError
from ..kernel import KernelSpec
from ..protocol import CONTROL_DTYPE, Lifecycle, Reason
from .logs import kernel_logger
from .base import KernelHandle
from .batches import ObjectBatches, RawSlot
from .dead_letters import mark_dead_letters
from .host_queue import HostQueue
from .options import check_telemetry
from .stats import LatencyRecorder
from .telemetry import Telemetry, TelemetryRecorder, rejected_by_reason
from .waiting import Backoff

__all__ = ["CpuKernelHandle", "HANDLE_CLASS", "RecordBatches"]

log = kernel_logger(__name__)

#: Terminate request words (``ControlBlock.terminate``): drain then stop, or stop now (abandon).
_DRAIN = 1
_STOP_NOW = 2

#: Messages the worker takes from the input queue per pass (its counters are published per pass).
_CHUNK = 256

#: How long an abandoning host waits for the worker before interrupting it, and again after.
_ABANDON_GRACE = 0.02

#: Longest idle sleep of the worker; a send or a terminate request wakes it sooner.
_IDLE_SLEEP = 0.05

#: Reference handlers already compiled, by id of their spec (kept alive alongside).
_HANDLERS: dict[int, tuple[KernelSpec, Any]] = {}


def _reference_step(spec: KernelSpec) -> tuple[Callable[[Any, Any], list], Callable[[], Any]]:
    """The handler as ``step(message, state) -> [output Records]`` plus a factory of its state.

    ``step`` takes a message object or a ``Record`` and raises ``HandlerFault`` (with ``.reason``,
    a ``Reason``) for a fault of one message.
    """
    hit = _HANDLERS.get(id(spec))
    if hit is not None and hit[0] is spec:
        handler = hit[1]
    else:  # compile once per kernel and process: relaunching costs no compilation
        handler = reference_handler(spec, raw=True)
        _HANDLERS[id(spec)] = (spec, handler)
    make_state = (lambda: new_state(spec.state)) if spec.state is not None else (lambda: None)
    return handler, make_state


class RecordBatches(ObjectBatches):
    """The cpu backend's batches: lists of messages as the reference handler takes them.

    Inputs become ``Record``s viewing one private copy of the batch as an array of the input's view
    dtype; objects get there through the input codec, so a message a device backend could not encode
    (a ``Str`` over its bound, say) is refused at ``send`` with the same ``EncodeError``. Replies are ``Record``s (each a one-row array of the output's view dtype); they are gathered into
    one array and decoded by the output codec, so the host gets the same plain objects (Python ints
    and floats) as from a device backend.
    """

    def from_objects(self, messages) -> list:
        return self._records(self.in_codec.to_array(list(messages)))

    def from_array(self, arr: np.ndarray) -> list:
        # A private copy: the caller may reuse its array as soon as send_batch returns.
        return self._records(np.array(arr, dtype=self.in_codec.dtype, copy=True))

    def _records(self, own: np.ndarray) -> list:
        cls = self.in_codec.cls
        return [Record(cls, own[i : i + 1]) for i in range(len(own))]

    def _gather(self, batch: list) -> np.ndarray:
        out = np.empty(len(batch), dtype=self.out_codec.dtype)
        for i, r in enumerate(batch):
            out[i] = r.array[0]
        return out

    def to_objects(self, batch: list) -> list:
        return list(self.out_codec.from_array(self._gather(batch)))

    def to_array(self, batch: list):
        if self.out_codec.bridged:
            return self.to_objects(batch)
        return self._gather(batch)


def _raw_decoder(codec: Any) -> Callable[[bytes], Record]:
    """``decode(slot bytes) -> Record`` for the input codec; raises ``WireFormatError`` (with its
    ``reason``) for a bridged slot that fails validation. A direct slot is its struct, as on a
    device: nothing to validate."""
    cls = codec.cls
    if codec.bridged:

        def decode(data: bytes) -> Record:
            return Record(cls, codec.to_array([codec.unpack(data)]))

    else:

        def decode(data: bytes) -> Record:
            return Record(cls, np.frombuffer(data, dtype=codec.dtype, count=1).copy())

    return decode


class _Abandoned(BaseException):
    """Raised inside the worker thread by a host that gave up on it (``_abandon``)."""


class _StoppedNow(BaseException):
    """Raised inside the worker thread by a host that asked it to stop now (``terminate(drain=False)``)
    while a handler was still running: the reference's equivalent of the device handlers' loop
    back-edges polling the stop request."""


class _Worker:
    """Everything the worker thread touches; it holds no reference to the handle, so a handle that
    is dropped without ``terminate`` can be collected (its finalizer then stops the worker)."""

    def __init__(
        self,
        name: str,
        step: Callable,
        state: Any,
        inq: HostQueue,
        outq: HostQueue,
        decode_raw: Callable[[bytes], Record],
        deadq: Optional[HostQueue],
        telemetry: Optional[TelemetryRecorder] = None,
    ) -> None:
        self.name = name
        self.step = step
        self.state = state
        self.inq = inq
        self.outq = outq
        self.decode_raw = decode_raw
        self.deadq = deadq  # dead letters (slot rows), or None without a dead-letter queue
        self.dead_dropped = 0  # dead letters the full queue could not take
        self.unpublished = 0  # replies a stop-now left unpublished (not counted as emitted)
        self.ctl = np.zeros((), dtype=CONTROL_DTYPE)
        self.state_lock = threading.Lock()
        self.latency = LatencyRecorder("enqueue to reply")
        self.telemetry = telemetry  # None: the launch option telemetry is off
        self.wake = threading.Event()  # set by the host after a push (or a request) while idle
        self.room = threading.Event()  # set by the host after a pop while the worker is stalled
        self.idle = False
        self.stalled = False
        self.error: Optional[str] = None

    def request(self, word: int) -> None:
        self.ctl["terminate"] = word
        self.wake.set()
        self.room.set()


def _run(w: _Worker) -> None:
    """The resident loop: take a chunk, run the handler on each message, publish, repeat."""
    ctl, inq = w.ctl, w.inq
    processed = emitted = stalls = idle_spins = heartbeat = 0
    rejected = np.zeros(ctl["rejected"].shape, dtype=np.uint64)
    in_handler = False  # a stop-now interrupt inside the handler counts that message as STOPPED
    ctl["launches"] = 1
    ctl["state"] = Lifecycle.ACTIVE
    final = Lifecycle.TERMINATED
    tele = w.telemetry
    clock = time.perf_counter_ns  # the clock of the queue's stamps (CLOCK_MONOTONIC on Linux)
    try:
        while True:
            heartbeat += 1
            ctl["heartbeat"] = heartbeat
            request = int(ctl["terminate"])
            if request >= _STOP_NOW:
                return
            items, stamps = inq.pop_stamped(_CHUNK)
            if not len(items):
                if request:
                    break  # drained: acknowledge below
                idle_spins += 1
                ctl["idle_spins"] = idle_spins
                _sleep_idle(w)
                continue
            if request:
                ctl["state"] = Lifecycle.TERMINATING
            outputs: list = []
            # Telemetry: each message's handler start minus its publication stamp, and its time in
            # the handler (faulted runs included), recorded once per chunk.
            sent_at = stamps.tolist() if tele is not None and stamps is not None else None
            queued: list = []
            handled: list = []
            for pos, msg in enumerate(items):
                if type(msg) is RawSlot:
                    try:
                        msg = w.decode_raw(msg.data)
                    except WireFormatError as exc:
                        rejected[int(exc.reason)] += 1
                        processed += 1
                        if w.deadq is not None:
                            _dead_letter(w, msg.data, int(exc.reason))
                        continue
                start = clock() if tele is not None else 0
                try:
                    with w.state_lock:
                        in_handler = True
                        outputs.extend(w.step(msg, w.state))
                        in_handler = False
                except HandlerFault as exc:
                    in_handler = False
                    rejected[int(exc.reason)] += 1
                    if exc.reason == Reason.BARRIER_BROKEN:
                        log.warning("kernel %s (cpu): %s", w.name, exc, extra={"kernel": w.name})
                if tele is not None:
                    handled.append(clock() - start)
                    if sent_at is not None:
                        queued.append(start - sent_at[pos])
                processed += 1
            # Counters (and telemetry) first, then the replies: a host that has a reply sees it counted.
            if tele is not None:
                tele.record(np.array(queued, dtype=np.int64), np.array(handled, dtype=np.int64))
                tele.sample_depths(len(inq), len(w.outq))
            emitted += len(outputs)
            ctl["processed"] = processed
            ctl["rejected"] = rejected
            ctl["emitted"] = emitted
            if outputs:
                stalled = _publish(w, outputs)
                if stalled is None:  # stopped while waiting for room: the rest is not published
                    ctl["emitted"] = emitted - w.unpublished
                    return
                if stalled:
                    stalls += stalled
                    ctl["output_stalls"] = stalls
            if stamps is not None:
                w.latency.record(time.perf_counter_ns() - stamps)
    except _StoppedNow:
        # Stopped between two statements of a handler, as a device handler's loop stops at its
        # stop poll: that message is rejected as STOPPED, the rest stay unprocessed, and the replies
        # of this chunk are not published.
        if in_handler:
            rejected[int(Reason.STOPPED)] += 1
            processed += 1
        ctl["processed"] = processed
        ctl["rejected"] = rejected
    except _Abandoned:
        w.error = "abandoned by the host while handling a message"
        final = Lifecycle.FAULTED
    except BaseException as exc:  # a handler bug: stop, keep the evidence for the host
        w.error = _describe(exc)
        log.error("kernel %s (cpu) faulted: %s", w.name, w.error, extra={"kernel": w.name})
        final = Lifecycle.FAULTED
    finally:
        # This party will never arrive again: the barriers it waits on can never complete.
        barriers = getattr(w.step, "barriers", ())
        if barriers:
            break_barriers(barriers, f"kernel {w.name} left its loop ({final.name})")
        ctl["state"] = final


def _dead_letter(w: _Worker, data: bytes, reason: int) -> None:
    """Return a rejected slot marked with its reason, or count it when the queue is full."""
    if not w.deadq.free:
        w.dead_dropped += 1
        return
    row = np.frombuffer(data, dtype=np.uint8).copy()[None]
    w.deadq.push(mark_dead_letters(row, np.array([reason])))


def _sleep_idle(w: _Worker) -> None:
    # Raise the flag, look once more, then sleep: a push after the look sees the flag and wakes us.
    w.wake.clear()
    w.idle = True
    if not len(w.inq) and not int(w.ctl["terminate"]):
        w.wake.wait(_IDLE_SLEEP)
    w.idle = False


def _publish(w: _Worker, outputs: list) -> Optional[int]:
    """Push every output, waiting while the queue is full; returns the waits (None: told to stop)."""
    outq = w.outq
    done = outq.push(outputs)
    waits = 0
    backoff = Backoff(spin_time=0.0, min_sleep=50e-6, max_sleep=_IDLE_SLEEP)
    while done < len(outputs):
        waits += 1
        while True:
            if int(w.ctl["terminate"]) >= _STOP_NOW:
                w.unpublished = len(outputs) - done
                return None
            w.room.clear()
            w.stalled = True
            if outq.free:
                break
            w.room.wait(backoff.next_sleep())
        w.stalled = False
        done += outq.push(outputs[done:])
    return waits


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class CpuKernelHandle(KernelHandle):
    """The reference backend's handle: queues in host memory, the handler in a worker thread."""

    backend = "cpu"
    persistent = True
    measures_latency = True
    launch_timeout = 10.0

    def __init__(
        self,
        spec: KernelSpec,
        package_dir: Optional[str],
        *,
        codecs,
        capacity: Optional[int] = None,
        dead_letters: Union[bool, int] = False,
        telemetry: bool = True,
    ) -> None:
        """Options besides the base class's: ``telemetry`` (default True) records the latency
        histograms and queue-depth samples of ``stats().telemetry`` (``ringgen.runtime.telemetry``),
        measured in the worker thread around each handler call; False records nothing."""
        self.telemetry_on = check_telemetry(spec.name, telemetry)
        super().__init__(
            spec, package_dir, codecs=codecs, capacity=capacity, dead_letters=dead_letters
        )

    def _batch_format(self) -> RecordBatches:
        return RecordBatches(self.name, self.in_codec, self.out_codec)

    def _launch(self) -> None:
        step, make_state = _reference_step(self.spec)
        self._inq = HostQueue(self.capacity, stamps=True)
        self._outq = HostQueue(self.capacity)
        deadq = None
        if self.dead_letter_capacity:
            deadq = HostQueue(
                self.dead_letter_capacity, dtype=np.dtype((np.uint8, self.in_codec.slot_size))
            )
        self._worker = _Worker(
            self.name,
            step,
            make_state(),
            self._inq,
            self._outq,
            _raw_decoder(self.in_codec),
            deadq,
            TelemetryRecorder() if self.telemetry_on else None,
        )
        self._worker.ctl["state"] = Lifecycle.LAUNCHED
        self._thread = threading.Thread(
            target=_run, args=(self._worker,), name=f"ringgen-cpu-{self.name}", daemon=True
        )
        # A handle dropped without terminate() still stops its worker (and never blocks exit: daemon).
        self._finalizer = weakref.finalize(self, self._worker.request, _STOP_NOW)
        self._thread.start()

    def _push(self, batch: list) -> int:
        n = self._inq.push(batch, stamp=time.perf_counter_ns())
        if n and self._worker.idle:
            self._worker.wake.set()
        return n

    def _pop(self, max_n: int) -> list:
        items = self._outq.pop(max_n)
        if items and self._worker.stalled:
            self._worker.room.set()
        return items

    def _control(self) -> np.ndarray:
        return self._worker.ctl.copy()

    def _pop_dead_letters(self, max_n: int) -> np.ndarray:
        return self._worker.deadq.pop(max_n)

    def _dead_letters_dropped(self) -> int:
        return self._worker.dead_dropped

    def _queue_depths(self) -> tuple[int, int]:
        return len(self._inq), len(self._outq)

    def _latency(self):
        return self._worker.latency.summary()

    def _telemetry(self, ctl: np.ndarray) -> Optional[Telemetry]:
        recorder = self._worker.telemetry
        if recorder is None:
            return None
        return recorder.read(
            rejected=rejected_by_reason(ctl),
            queue_what="host send (publication stamp) to handler start, one host clock",
        )

    def _read_state(self) -> Any:
        with self._worker.state_lock:
            raw = self._worker.state.array.copy()
        # Decoded as a device backend decodes its state struct: a new object of the user's class.
        return self.codecs[self.spec.state.__name__].from_array(raw)[0]

    def _request_terminate(self) -> None:
        self._worker.request(_DRAIN)

    def _request_stop_now(self) -> None:
        self._worker.request(_STOP_NOW)
        # The worker stops between messages; a handler still running after a moment (a long or
        # endless loop) is interrupted between two of its statements with an asynchronous exception.
        self._thread.join(_ABANDON_GRACE)
        self._interrupt(_StoppedNow)

    def _interrupt(self, exc: type) -> None:
        """Raise ``exc`` in the worker thread if it is still running."""
        if self._thread.is_alive() and self._thread.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread.ident), ctypes.py_object(exc)
            )

    def _synchronize(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise KernelTimeoutError(
                f"kernel {self.name} (cpu) acknowledged termination but its worker thread did not "
                f"exit within {timeout:g} s"
            )

    def _release(self) -> None:
        self._finalizer.detach()
        # Nothing else to free: the queues go with the handle; the thread has exited.

    def _abandon(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is None:
            return
        self._finalizer.detach()
        worker.request(_STOP_NOW)
        # The worker stops between messages; a handler stuck in a long loop is interrupted with an
        # asynchronous exception (the reference's equivalent of killing a kernel), so an abandoned
        # kernel does not keep burning a core. The thread is a daemon either way: it never blocks exit.
        self._thread.join(_ABANDON_GRACE)
        if self._thread.is_alive():
            self._interrupt(_Abandoned)
            self._thread.join(_ABANDON_GRACE)

    def _fault_detail(self) -> str:
        worker = getattr(self, "_worker", None)
        return worker.error or "" if worker is not None else ""


HANDLE_CLASS = CpuKernelHandle
