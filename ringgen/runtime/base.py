"""``KernelHandle``: the host API of a launched ring kernel, the same on every backend.

A backend implements only the *transport* — the abstract hooks at the bottom of ``KernelHandle``
(allocate and launch, push a batch without blocking, pop a batch without blocking, read the control
block, request termination, synchronize, free). Everything a user calls — blocking and timeouts,
back-pressure, conversion of objects and arrays through the codecs, stats, the termination
handshake, asyncio, the context manager — is written once, so every backend behaves alike: here
(opening, sending, receiving, the transport hooks) and in the mixins ``KernelHandle`` is made of,
one job each: ``observing`` (lifecycle, stats, state, faults), ``async_api`` (asyncio),
``termination`` (``terminate``, ``with``), ``dead_letters`` (raw slots, dead letters); launch
options are checked by ``options``.

Policies (docs/runtime.md is the user-facing version):

- **Threads.** One producer and one consumer per queue (the protocol is single-producer,
  single-consumer); the handle serializes its own senders and its own receivers with two locks, so a
  handle may be shared between threads. Every read of the transport happens under one of the send,
  receive or dead-letter locks (observers — ``stats``, ``lifecycle``, ``state`` — use the receive
  lock), and ``terminate`` frees the transport holding all three, always taken in the order send ->
  receive -> dead-letter (nothing takes an earlier one while holding a later one), after setting
  ``_released``; so another thread sees either the live transport or the final snapshot, never
  freed memory.
- **Back-pressure.** Nothing is dropped or overwritten. ``send`` on a full input queue waits for room
  (``block=True``, the default) or raises ``QueueFullError`` (``block=False``, or when ``timeout``
  expires). The kernel waits the same way when its output queue is full, counting an output stall.
- **Spill.** While a send waits for room, the host moves every reply that is ready out of the output
  queue into a host-side buffer (``SpillBuffer``; ``stats().spilled``), which ``receive`` reads
  first. So a kernel blocked on its full output queue always gets going again, and "send everything,
  then receive" finishes for any batch size. The buffer holds only replies to messages the caller
  sent and has not received: at most ``limit`` per sent message (1, or ``OUTBOX_LIMIT`` for an
  Outbox kernel).
- **Waiting** is polling with backoff (``Backoff``): a few free polls, then sleeps that double from
  20 µs to 1 ms; the asyncio variants await ``asyncio.sleep`` instead, so they never block the loop.
- **Termination** is a handshake: the host sets the request word, the kernel drains its input queue
  and acknowledges (lifecycle TERMINATED), the host synchronizes and frees. While it waits for the
  acknowledgement the host keeps pulling replies out of the output queue into the spill, so a kernel
  whose output queue is full can always finish draining; those replies stay readable with
  ``receive``/``receive_batch`` after termination. The default waits as long as the kernel makes
  progress (heartbeat, processed or emitted count moving, or replies coming out) and gives up only
  after ``stall_timeout`` seconds without any; ``drain=False`` asks the kernel to stop now (every wait
  of the resident loop and every loop back-edge of a handler polls that request) and counts what it
  left in ``stats().unprocessed``. Giving up stops the kernel the same way before the handle is
  released, so its compute unit and memory come back; only a kernel that ignores even that is
  abandoned (its memory deliberately leaked).
- **Raw slots and dead letters.** ``send_raw``/``send_raw_batch`` queue already-encoded slots with no
  host-side check beyond their size; the kernel validates them. With ``dead_letters=True`` a bridged
  input that fails validation comes back through a bounded queue of its own (``receive_dead_letters``);
  when that queue is full the kernel never waits: the dead letter is only counted
  (``stats().dead_letters_dropped``). Nothing else is ever dropped.
"""

from __future__ import annotations

import abc
import threading
from typing import Any, ClassVar, Iterable, Mapping, Optional, Union

import numpy as np

from ..errors import (
    BarrierBrokenError,
    BuildError,
    KernelFaultError,
    KernelStalledError,
    KernelTimeoutError,
    QueueClosedError,
    QueueFullError,
)
from ..reference.records import new_state, to_object
from ..kernel import KernelSpec
from ..protocol import Lifecycle
from .async_api import AsyncMessaging, InT, OutT
from .batches import Batch, BatchFormat, SpillBuffer, prefix
from .dead_letters import RawSlotsAndDeadLetters, dead_letter_capacity
from .logs import kernel_logger
from .observing import Observation
from .options import check_capacity, check_options, codec_for
from .receiving import Gathered, check_counts, check_out
from .registry import register
from .stats import KernelStats
from .termination import STALL_TIMEOUT_S, STOP_NOW_GRACE_S, Termination
from .trace import traced
from .waiting import Backoff, check_timeout, deadline_after, expired, time_left
from .watchdog import DEFAULT_STALL_TIMEOUT_S, Watchdog, take_stall_timeout

__all__ = ["Backoff", "KernelHandle", "STALL_TIMEOUT_S", "STOP_NOW_GRACE_S", "deadline_after"]

log = kernel_logger(__name__)


class KernelHandle(
    RawSlotsAndDeadLetters, Termination, Observation, AsyncMessaging[InT, OutT], abc.ABC
):
    """A launched ring kernel: send it messages, receive its replies, read its stats, terminate it.

    Get one from ``rg.launch(kernel)`` or ``generated.<pkg>.runtime.<kernel>.launch()``; use it as a
    context manager so the kernel is terminated on exit::

        with rg.launch(vector_add, backend="cpu") as k:
            k.send(AddRequest(id=1, a=1.0, b=2.0))
            print(k.receive(timeout=1.0))

    Backends subclass it, set the class attributes, implement every abstract hook, take their launch
    options as keyword-only parameters of ``__init__`` (``open`` rejects any other option by name),
    and are opened with ``Backend.open(spec, package_dir, codecs=..., **options)``.

    Class attributes (capabilities, read by ``ringgen devices`` and the tests):
        backend: the registry name ("cpu", "opencl", "cuda").
        persistent: True when the kernel stays resident (False: relaunch mode, one launch per drain).
        measures_latency: True when ``stats().latency`` is filled in.
        targets: the generated device sources it loads (``rg.launch`` builds those into the cache).
    """

    backend: ClassVar[str] = ""
    persistent: ClassVar[bool] = True
    measures_latency: ClassVar[bool] = False

    #: The device-source targets (``ringgen.codegen.targets``) this backend loads from the package,
    #: e.g. ``("opencl",)``; ``rg.launch`` builds the host package plus these into the cache.
    targets: ClassVar[tuple[str, ...]] = ()

    #: How long ``open`` waits for the kernel to report ACTIVE before raising KernelTimeoutError.
    launch_timeout: ClassVar[float] = 30.0

    free_poll_s: ClassVar[float] = 200e-6  #: how long a waiting receive polls before it sleeps
    #: Whether those polls yield the CPU (``Backoff``'s ``yields``).
    free_poll_yields: ClassVar[bool] = True

    def __init__(
        self,
        spec: KernelSpec,
        package_dir: Optional[str],
        *,
        codecs: Mapping[str, Any],
        capacity: Optional[int] = None,
        dead_letters: Union[bool, int] = False,
    ) -> None:
        """Record what the kernel needs; subclasses allocate in ``_launch`` (called by ``open``).

        Args:
            spec: the kernel's ``KernelSpec``.
            package_dir: the generated package directory (sources, manifest), or None for a backend
                that needs no generated source (the cpu reference).
            codecs: the generated ``serializers.CODECS`` (message name -> codec).
            capacity: slots per queue, a power of two (default: the kernel's declared capacity).
            dead_letters: return bridged inputs that fail validation through a dead-letter queue
                (``receive_dead_letters``): True for one of ``capacity`` slots, an int for another
                power-of-two size, False for none. Backends that implement it take it as a launch
                option and pass it on; ``self.dead_letter_capacity`` is then nonzero.
        """
        cap = check_capacity(spec, capacity)
        self.spec = spec
        self.name = spec.name
        self.package_dir = package_dir
        self.capacity = cap
        self.codecs = codecs
        self.in_codec = codec_for(codecs, spec.input, spec.name)
        self.out_codec = codec_for(codecs, spec.output, spec.name) if spec.output else None
        self.format: BatchFormat = self._batch_format()
        #: Slots of the dead-letter queue; 0 when the kernel was launched without one.
        self.dead_letter_capacity = dead_letter_capacity(
            spec.name, bool(self.in_codec.bridged), dead_letters, cap
        )
        # Reentrant: terminate holds all three while a backend's _release may take one again.
        self._dl_lock = threading.RLock()
        self._dl_spill = SpillBuffer()
        self._send_lock = threading.RLock()
        self._recv_lock = threading.RLock()
        self._term_lock = threading.Lock()
        self._spill = SpillBuffer()
        self._spilled = 0  # replies moved into the spill so far (stats().spilled)
        self._sent = 0
        self._received = 0
        self._accepting = False  # sends allowed (launched and not terminating)
        self._released = False  # transport freed: only the spill and the final snapshot remain
        self._launched = False
        self._final_stats: Optional[KernelStats] = None
        self._final_state: Any = None
        #: The device's own words on why the kernel died (``_device_fault``), once seen; else None.
        self._device_error: Optional[str] = None
        self._device_checked_at = 0.0
        self._watchdog = Watchdog(spec.name, self.backend, DEFAULT_STALL_TIMEOUT_S)  # open sets it

    # ----------------------------------------------------------------------------------- opening

    @classmethod
    @traced("launch")
    def open(cls, spec: KernelSpec, package_dir: Optional[str], **options: Any) -> "KernelHandle":
        """Create the handle, launch the kernel and wait until it reports ACTIVE.

        Raises:
            KernelTimeoutError: the kernel did not become ACTIVE within ``launch_timeout``.
            KernelFaultError: it reported FAULTED while starting.
            ValueError: the launch option ``stall_timeout`` (every backend's) is not None or > 0.
        """
        check_options(cls, spec.name, options)
        stall = take_stall_timeout(spec.name, options)  # every backend's option, not its own
        handle = cls(spec, package_dir, **options)
        handle._watchdog.stall_timeout = stall
        try:
            try:
                handle._launch()
            except MemoryError as exc:
                raise handle._allocation_error(exc) from None
            handle._launched = True
            deadline = deadline_after(cls.launch_timeout)
            backoff = Backoff()
            while True:
                state = handle._lifecycle_now()
                if state is Lifecycle.ACTIVE:
                    break
                if state is Lifecycle.FAULTED:
                    raise handle._fault_error("faulted while starting")
                if expired(deadline):
                    raise KernelTimeoutError(
                        f"kernel {spec.name} ({cls.backend}) did not start within "
                        f"{cls.launch_timeout:g} s (lifecycle {state.name})"
                    )
                backoff.wait(deadline)
        except BaseException:
            handle._abandon()
            handle._released = True
            raise
        handle._accepting = True
        register(handle)  # rg.serve_metrics reports it until it is terminated
        log.debug(
            "launched kernel %s on %s (capacity %d)",
            *(spec.name, cls.backend, handle.capacity),
            extra={"kernel": spec.name},
        )
        return handle

    # -------------------------------------------------------------------------------- sending

    def send(self, message: InT, *, block: bool = True, timeout: Optional[float] = None) -> None:
        """Publish one message to the kernel's input queue.

        Args:
            message: an instance of the kernel's input message class.
            block: wait for room when the queue is full (False: raise at once).
            timeout: with ``block``, the longest wait in seconds (None: no limit).

        Raises:
            QueueFullError: the queue stayed full (``block=False``, or ``timeout`` expired).
            QueueClosedError: the kernel is terminating or terminated.
            KernelFaultError: the kernel stopped on a fault.
            SchemaError: ``message`` is not the input message class.
        """
        timeout = check_timeout(timeout, f"kernel {self.name}.send")
        batch = self.format.input_batch((message,))
        accepted = self._push_all(batch, block=block, timeout=timeout)
        if accepted < 1:
            raise self._full_error(0, 1, timeout if block else None)

    @traced("send_batch")
    def send_batch(
        self,
        messages: Union[np.ndarray, Iterable[InT]],
        *,
        block: bool = True,
        timeout: Optional[float] = None,
    ) -> int:
        """Publish many messages; returns how many were accepted.

        Args:
            messages: a numpy structured array of the input view dtype (no per-object work for a
                direct message), or a sequence of input message objects.
            block: wait for room as needed until all are accepted (False: accept what fits now and
                return that count, possibly 0; only the first ``capacity`` messages are converted,
                and an iterator is advanced by at most that many).
            timeout: with ``block``, the longest total wait in seconds.

        Raises:
            QueueFullError: ``timeout`` expired first; its ``accepted`` attribute says how many
                messages (a prefix) were published, so the caller can resume with the rest.
            QueueClosedError, KernelFaultError, SchemaError: as ``send``.
        """
        timeout = check_timeout(timeout, f"kernel {self.name}.send_batch")
        if not block:
            # at most one queue's worth can be accepted now: convert no more than that
            messages = prefix(messages, self.capacity)
        batch = self.format.input_batch(messages)
        n = self._push_all(batch, block=block, timeout=timeout)
        if block and n < len(batch):
            raise self._full_error(n, len(batch), timeout)
        return n

    def _try_push(self, batch: Batch, *, observe: bool = False) -> int:
        with self._send_lock:
            # a faulted kernel never makes room, nor does a stalled one: fail instead of waiting
            if observe and not self._released and self._lifecycle_now() is Lifecycle.STALLED:
                raise self._stalled_error("send")
            self._check_sendable()
            n = self._push(batch)
            self._sent += n
            self._watchdog.note_send(n)
            return n

    def _push_all(self, batch: Batch, *, block: bool, timeout: Optional[float]) -> int:
        total = len(batch)
        done = self._try_push(batch)
        if done == total or not block:
            return done
        deadline = deadline_after(timeout)
        backoff = Backoff()
        while done < total:
            if expired(deadline):
                break
            # A kernel whose output queue is full takes no input: move its replies into the spill
            # (receive reads it first), or "send everything, then receive" would wait forever.
            if not self._drain_output():
                backoff.wait(deadline)
            n = self._try_push(batch[done:], observe=True)
            if n:
                done += n
                backoff.reset()
        return done

    def _check_sendable(self) -> None:
        if self._accepting:
            return
        if self._launched and not self._released and self._lifecycle_now() is Lifecycle.FAULTED:
            raise self._fault_error("cannot accept messages")
        raise QueueClosedError(
            f"kernel {self.name} ({self.backend}) is {self.lifecycle.name.lower()}; "
            "it accepts no more messages",
            hint="launch the kernel again to send more",
        )

    def _full_error(self, accepted: int, total: int, timeout: Optional[float]) -> QueueFullError:
        waited = f"within {timeout:g} s" if timeout else "without waiting"
        err = QueueFullError(
            f"kernel {self.name} ({self.backend}): input queue full (capacity {self.capacity}); "
            f"{accepted} of {total} message(s) accepted {waited}",
            hint=(
                "the kernel takes messages only as fast as it handles them: give it a longer "
                "timeout (None waits as long as it takes), send smaller batches, or launch with a "
                "larger capacity"
                if timeout
                else "send with block=True (the default) to wait for room, or launch with a larger "
                "capacity"
            ),
        )
        err.accepted = accepted  # type: ignore[attr-defined]
        return err

    # ------------------------------------------------------------------------------ receiving

    def receive(self, timeout: Optional[float] = None) -> OutT:
        """Take the next reply, waiting up to ``timeout`` seconds (None: no limit).

        Raises:
            KernelTimeoutError: no reply within ``timeout``.
            KernelStalledError: while waiting, the kernel was found STALLED (the watchdog).
            QueueClosedError: the kernel is terminated and every reply has been taken.
            KernelFaultError: the kernel stopped on a fault and no reply is left.
            BarrierBrokenError: no reply within ``timeout``, and messages have faulted on a broken
                barrier since the last such report (docs/barriers.md).
        """
        timeout = check_timeout(timeout, f"kernel {self.name}.receive")
        batch = self._pop_wait(1, timeout)
        if batch is None:
            self._raise_barrier_broken()
            raise KernelTimeoutError(
                f"kernel {self.name} ({self.backend}): no reply within {timeout:g} s "
                f"(input queue depth {self._input_depth_safe()})",
                hint="check stats().rejected: a faulted or filtered message produces no reply",
            )
        return self.format.to_objects(batch)[0]

    def _raise_barrier_broken(self) -> None:
        """Raise ``BarrierBrokenError`` when more messages faulted on a broken barrier than were
        reported before (each fault is reported once)."""
        n = self.stats().rejected.get("BARRIER_BROKEN", 0)
        seen = getattr(self, "_barrier_breaks_reported", 0)
        if n > seen:
            self._barrier_breaks_reported = n
            raise BarrierBrokenError(
                f"kernel {self.name} ({self.backend}): {n - seen} message(s) faulted on a broken "
                "barrier (BARRIER_BROKEN): a party terminated or faulted, so their step can never "
                "complete",
                hint="stats().rejected counts every reason; reset the barrier (step.reset()) once "
                "every party has terminated",
            )

    @traced("receive_batch")
    def receive_batch(
        self,
        max_n: Optional[int] = None,
        timeout: Optional[float] = 0.0,
        *,
        min_n: Optional[int] = None,
        out: Optional[np.ndarray] = None,
    ):
        """Take up to ``max_n`` replies, waiting until ``min_n`` of them are in.

        Returns once it holds ``min_n`` replies (default 1: whatever is ready first) or ``timeout``
        seconds (None: no limit) have passed, whichever comes first, taking replies from the spill
        and the output queue as they become ready, never more than ``max_n``. So
        ``receive_batch(n, timeout, min_n=n)`` is a whole batch in one call.

        Timing out with fewer than ``min_n`` is not an error: it returns the replies that came
        (check ``len``); a reply it has taken is never dropped. The same holds when the kernel stops
        on a fault or is terminated meanwhile: the replies taken are returned, and the next call
        raises.

        Args:
            max_n: the most replies to take (default: ``len(out)`` with ``out``, else ``capacity``).
            timeout: the longest wait in seconds (0, the default: only what is ready now).
            min_n: return once this many are in (1 <= min_n <= max_n; default 1).
            out: a writable 1-d numpy array of the output message's dtype
                (``rg.dtype_of(Reply)``), at least ``max_n`` long, to fill in place instead of
                allocating; for a bridged message its view rows, decoded columnar (no objects).

        Returns:
            ``out[:n]`` (a view of ``out``) when given; else a numpy structured array of the
            output dtype for a direct message, or a list of objects for a bridged one; empty when
            nothing arrived in time.

        Raises:
            QueueClosedError: the kernel is terminated and every reply has been taken.
            KernelFaultError: the kernel stopped on a fault and no reply is left.
            ValueError: ``max_n``/``min_n`` are not ints >= 1 with min_n <= max_n, or ``out`` is
                too short, not 1-d or read-only (naming the argument).
            TypeError: ``out`` is not an array of the output (view) dtype.
        """
        timeout = check_timeout(timeout, f"kernel {self.name}.receive_batch")
        self._require_output()
        if out is not None:
            check_out(self.name, self.out_codec, out)
        n, want = check_counts(self.name, self.capacity, max_n, min_n, out)
        got = Gathered(self.format, out, n, want)
        deadline = deadline_after(timeout)
        while got.count < want:
            try:
                batch = self._pop_wait(n - got.count, time_left(deadline), into=got.room())
            except (QueueClosedError, KernelFaultError, KernelStalledError):
                if got.count:
                    break  # the caller gets what was taken; the next call raises
                raise
            if batch is None:
                break
            got.add(batch)
        return got.result()

    def _require_output(self) -> None:
        if self.out_codec is None:
            raise QueueClosedError(
                f"kernel {self.name} has no output queue (its handler returns None and takes no "
                "Outbox); there is nothing to receive",
                hint="read its effect with state() or stats()",
            )

    def _try_pop(self, max_n: int, into: Optional[np.ndarray] = None) -> Optional[Batch]:
        """Up to ``max_n`` replies now, or None; raises when none can ever come. ``into``: where
        ``_pop_into`` may copy them (``_pop_some``)."""
        with self._recv_lock:
            part = self._spill.take(max_n)
            if part is not None:
                self._received += len(part)
                return part
            if self._released:
                if self._final_stats is not None and self._final_stats.fault:
                    raise self._fault_error("stopped", final=True)
                raise QueueClosedError(
                    f"kernel {self.name} ({self.backend}) is terminated and every reply has been taken"
                )
            batch = self._pop_some(max_n, into)
            if len(batch):
                self._received += len(batch)
                return batch
        # Nothing queued: a stopped kernel will publish nothing more. Checked under the lock, since
        # terminate may have freed the transport since (the next poll then reads the spill).
        with self._recv_lock:
            if not self._launched or self._released:
                return None
            if self._lifecycle_now() is not Lifecycle.FAULTED:
                return None
            batch = self._pop_some(max_n, into)
            if len(batch):
                self._received += len(batch)
                return batch
            raise self._fault_error("stopped")

    def _pop_some(self, max_n: int, into: Optional[np.ndarray]) -> Batch:
        """``_pop``, or ``_pop_into`` straight into ``into`` (rows of the output slot dtype) where
        the backend has that path: then the batch is the view of ``into`` it wrote."""
        if into is not None:
            k = self._pop_into(into[:max_n])
            if k is not None:
                return into[:k]
        return self._pop(max_n)

    def _pop_wait(
        self, max_n: int, timeout: Optional[float], into: Optional[np.ndarray] = None
    ) -> Optional[Batch]:
        self._require_output()
        batch = self._try_pop(max_n, into)
        if batch is not None or timeout == 0:
            return batch
        deadline = deadline_after(timeout)
        backoff = Backoff(spin_time=self.free_poll_s, yields=self.free_poll_yields)
        while not expired(deadline):
            backoff.wait(deadline)
            batch = self._try_pop(max_n, into)
            if batch is not None:
                return batch
            if self._watchdog.stalled and not self._released:  # as _try_pop's look just found
                raise self._stalled_error("receive")
        return None

    # ------------------------------------------------------------------------ describing

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.backend}: {self.lifecycle.name}>"

    # ------------------------------------------------------------------- transport (hooks)

    @abc.abstractmethod
    def _batch_format(self) -> BatchFormat:
        """The batch format of this backend's queues (``ObjectBatches`` or ``SlotBatches``),
        built from ``self.name``, ``self.in_codec`` and ``self.out_codec``."""

    @abc.abstractmethod
    def _launch(self) -> None:
        """Allocate queues, control block and state, and launch the kernel.

        Called once by ``open``. Every allocation that must not happen while the kernel is resident
        (pinned memory on CUDA) happens here. On return the kernel may still be starting: ``open``
        waits for the control block to report ACTIVE.
        """

    @abc.abstractmethod
    def _push(self, batch: Batch) -> int:
        """Publish a prefix of ``batch`` to the input queue without blocking; return its length.

        Writes as many leading items as there are free slots (0 when full), then publishes them with
        one release store of the tail. Called under the send lock.
        """

    @abc.abstractmethod
    def _pop(self, max_n: int) -> Batch:
        """Take up to ``max_n`` replies from the output queue without blocking (an empty batch when
        none). Copies them out, then releases the slots with one store of the head. Called under the
        receive lock."""

    def _pop_into(self, dst: np.ndarray) -> Optional[int]:
        """Take up to ``len(dst)`` replies from the output queue without blocking, copying them
        straight into ``dst`` (a 1-d array of the output slot dtype); return how many, or None where
        this backend has no such path (then ``_pop`` is called). Called under the receive lock."""
        return None

    @abc.abstractmethod
    def _control(self) -> np.ndarray:
        """The control block now: a record of ``ringgen.protocol.CONTROL_DTYPE`` (a copy or a view;
        the base reads each field once)."""

    @abc.abstractmethod
    def _queue_depths(self) -> tuple[int, int]:
        """(messages waiting in the input queue, replies waiting in the output queue)."""

    @abc.abstractmethod
    def _latency(self):
        """A ``LatencySummary`` of recent messages, or None when the backend does not measure one."""

    @abc.abstractmethod
    def _read_state(self) -> Any:
        """A copy of the kernel's ``@rg.state`` object (only called when the kernel has state).

        Device backends copy the state struct out and decode it with its codec:
        ``self.codecs[self.spec.state.__name__].from_array(arr)[0]``.
        """

    @abc.abstractmethod
    def _request_terminate(self) -> None:
        """Write the terminate request word of the control block (the host's only write to it)."""

    def _request_stop_now(self) -> None:
        """Ask the kernel to stop now, without handling what is queued (terminate word
        ``TERMINATE_STOP_NOW``): every wait of its loop and every loop back-edge of its handler polls
        it. Must not block for long. The kernel then reports TERMINATED (or FAULTED) as for a drain,
        and ``_synchronize``/``_release`` follow as usual.

        The default calls ``_abandon``, which is right for a backend whose ``_abandon`` only writes
        that request and frees nothing (CUDA); a backend whose ``_abandon`` parks or leaks memory
        overrides this.
        """
        self._abandon()

    @abc.abstractmethod
    def _synchronize(self, timeout: float) -> None:
        """After the acknowledgement: wait until the kernel has really exited (join the stream or
        the worker) so that freeing its memory is safe."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Free every resource of the kernel; called once, after ``_synchronize``."""

    @abc.abstractmethod
    def _abandon(self) -> None:
        """Give up on a kernel that did not start or did not acknowledge termination.

        Must return promptly and leave nothing that keeps the process from exiting (a daemon thread
        told to stop, device memory deliberately leaked rather than freed under a resident kernel).
        Also called for a handle that was never launched.
        """

    def _allocation_error(self, exc: BaseException) -> BuildError:
        """What ``open`` raises when the queues of the requested capacity cannot be allocated."""
        slots = self.in_codec.slot_size + (self.out_codec.slot_size if self.out_codec else 0)
        return BuildError(
            f"kernel {self.name} ({self.backend}): cannot allocate queues of capacity="
            f"{self.capacity} ({self.capacity * slots:,} bytes of slots): {str(exc) or 'out of memory'}",
            hint="launch with a smaller capacity",
        )

    def _fault_detail(self) -> str:
        """A backend's words on the fault (the Python exception on the cpu backend), or ''."""
        return ""

    def _initial_state(self) -> np.ndarray:
        """The kernel state a launch starts from, as one packed record: every field from its
        default, a field without one zeroed, as the reference backend starts it. Every device
        backend copies this in before the first message (CUDA once started from zeros)."""
        codec = self.codecs[self.spec.state.__name__]
        return np.ascontiguousarray(codec.to_array([to_object(new_state(self.spec.state))]))

    def _device_fault(self) -> Optional[str]:
        """The error that killed the kernel on the device, in the device's words, or None while it runs.

        For backends whose kernel can die without writing FAULTED to its control block (a CUDA
        kernel that hits an illegal or misaligned address loses its context and never writes again).
        Must be cheap, must not block and must not raise; called at most every
        ``DEVICE_FAULT_POLL_S`` seconds by every observer of the lifecycle (blocked sends and
        receives, ``stats``, ``terminate``), so a dead kernel is reported FAULTED within that time of
        the next wait. The default (nothing can kill the kernel behind the control block's back)
        returns None.
        """
        return None
