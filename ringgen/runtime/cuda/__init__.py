"""The CUDA backend: a resident ring kernel on an NVIDIA GPU, through PyCUDA (docs/design.md §5).

``CudaKernelHandle.open(spec, package_dir, codecs=...)`` compiles the package's ``<name>.cu`` (nvcc,
cubin cached by ``cuda.build``), allocates everything before launch — the control block, both queue
counters and both rings in mapped pinned memory, the scheduler words and state in device memory —
launches ``rg_<kernel>_ring`` once on a non-blocking stream, and then moves messages by plain loads and
stores to pinned memory: no CUDA call on the message path.

Queues (one producer and one consumer each, ``ringgen.protocol``):
- input: the host writes slots, then the tail; the kernel's publisher writes the head.
- output of a kernel that returns one message: reply i sits in slot i (its request's sequence number),
  so replies keep request order; a request without a reply (filtered or faulted) leaves a hole that the
  kernel marks and counts and the host skips. The kernel publishes the tail.
- output of an Outbox kernel: slots are reserved by warps in any order and carry sequence stamps; the
  host takes the prefix whose stamps are in place and publishes its head for the kernel.

A bridged message (Str/List fields) travels as its 256-byte header + payload (``SlotBatches``: the
generated codecs encode and decode on the host); its ring slots are ``slot_size`` bytes at a stride
rounded up to 16 (``abi.cuda.in_stride``/``out_stride`` in the package's ``manifest.json``); the kernel validates and decodes each one, counting
a malformed message in ``stats().rejected`` by reason, and encodes bridged replies.

Options of ``launch(backend="cuda", ...)``: ``capacity`` (slots per queue), ``device`` (ordinal),
``workers`` (worker blocks; default below), ``source`` (CUDA text instead of the package's file, for
tests), ``defines`` (extra ``-D`` macros), ``dead_letters`` (a bridged input's dead-letter queue:
True for ``capacity`` slots, or a power of two). The test-only ``debug_fault`` option of
``rg.launch`` is handled above the runtime (``ringgen.jit``: it emits the source with the fault hook
and passes it as ``source``).

What the emitter and this loader must agree on (entry point, block size, items per thread, the
scheduler's bytes, ring strides) is read from the kernel's ``abi.cuda`` in ``manifest.json``
(docs/architecture.md, "The manifest contract"); this module never imports the emitter.

A kernel that dies on the device (a fault loses the whole context) is seen through the driver,
and the next launch deals with the lost context: ``cuda.faults`` (docs/cuda.md).

The package: ``abi`` (what the manifest tells the loader), ``build`` (nvcc and the cubin cache),
``device`` (contexts, mapped memory, occupancy, loaded modules), ``faults`` (a kernel that died),
``queues`` (the host ends of the mapped rings), ``bridged_fast`` (their latency closures for bridged
messages), ``lane`` (the latency lane), ``zero_copy`` (views of the rings); this module holds the
handle.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from ..logs import kernel_logger
from ...errors import BackendUnavailableError, BuildError, KernelTimeoutError, WireFormatError
from ...kernel import KernelSpec
from ...protocol import CACHE_LINE, CONTROL_DTYPE, CONTROL_SIZE, Lifecycle
from ..base import KernelHandle
from ..batches import SlotBatches
from ..options import check_telemetry
from ..waiting import check_timeout
from . import build as cuda_build
from . import device as cuda_device
from .abi import outbox_slot, positional_class, read_abi, ring_stride
from .faults import DeviceFaults, replace_lost_context, resident, track, untrack
from .lane import LatencyLane, idle_check
from .telemetry import DeviceTelemetry
from .zero_copy import ZeroCopy
from .queues import (
    CudaBatches,
    DeadMarks,
    InputRing,
    OutboxOutput,
    PositionalOutput,
    encode_rows,
)

__all__ = ["CudaKernelHandle", "HANDLE_CLASS", "DEFAULT_WORKERS", "probe"]

log = kernel_logger(__name__)

#: Worker blocks when ``workers`` is not given: 16 moved a 1M batch fastest on the H100 (2.24 G msg/s
#: against 2.10 with 32 and 1.86 with 131; bench/NOTES-cuda.md).
DEFAULT_WORKERS = 16

#: Slots of a large ``send_batch`` copied into the mapped ring before the tail is published (and
#: the next piece copied while the kernel starts on that one).
PUBLISH_CHUNK = 16384

# Offsets of the host-shared words in the one mapped "control page".
_CTL_OFF = 0
_INQ_OFF = 4 * CACHE_LINE
_OUTQ_OFF = 6 * CACHE_LINE
_SIDE_OFF = 8 * CACHE_LINE
_PAGE = 16 * CACHE_LINE
_INF = float("inf")
# Words of rg_cuda_side (at _SIDE_OFF) after the hole count: the lane's messages and replies.
_SIDE_LANE_DONE = 1
_SIDE_LANE_EMITTED = 2


def probe() -> None:
    """Raise BackendUnavailableError unless a CUDA device that can map host memory is present."""
    info = cuda_device.device_info(int(os.environ.get("RINGGEN_CUDA_DEVICE", "0")))
    if not info.can_map:
        raise BackendUnavailableError(f"backend cuda: {info.name} cannot map host memory")


def _stamped_put(
    put: Callable[[Any], Any], inq: Any, tele: DeviceTelemetry
) -> Callable[[Any], Any]:
    """The one-message fast path with telemetry on: the timed messages (1 in ``sample_every`` by
    sequence number) are stamped before ``put`` publishes them (a stamp for a message the ring then
    refuses is overwritten when it is sent)."""
    mask = tele.sample_every - 1
    stamp = tele.stamp

    def stamped(message: Any) -> Any:
        tail = inq.tail
        if tail & mask == 0:
            stamp(tail, 1)
        return put(message)

    return stamped


class CudaKernelHandle(ZeroCopy, DeviceFaults, KernelHandle):
    """A ring kernel resident on an NVIDIA GPU (see the module docstring)."""

    backend = "cuda"
    persistent = True
    measures_latency = False
    launch_timeout = 30.0

    def __init__(
        self,
        spec: KernelSpec,
        package_dir: Optional[str],
        *,
        codecs: Mapping[str, Any],
        capacity: Optional[int] = None,
        device: int = 0,
        workers: Optional[int] = None,
        source: Optional[str] = None,
        defines: Sequence[str] = (),
        dead_letters: Union[bool, int] = False,
        telemetry: bool = True,
    ) -> None:
        self.telemetry_on = check_telemetry(spec.name, telemetry)
        # Nothing attached until the launch (no buffer, no stamps): the host paths stamp nothing.
        self._tele = DeviceTelemetry(spec.name, None, False)
        super().__init__(
            spec, package_dir, codecs=codecs, capacity=capacity, dead_letters=dead_letters
        )
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"kernel {spec.name}: workers must be a positive int, got {workers!r}")
        self.device = device
        self.workers = workers
        self._source = source
        self._defines = tuple(defines)
        self._alloc: list[Any] = []
        # The latency path (set after launch): the class send() packs directly and the closures that
        # do it (queues: fast_put_one, fast_take_one); None where the generic path is taken.
        self._fast_cls: Optional[type] = None
        self._fast_put = None
        self._fast_take = None
        self._pinned: list[np.ndarray] = []
        self._dead: Optional[DeadMarks] = None  # the dead-letter marks, with dead_letters
        self._lane: Optional[LatencyLane] = None  # the latency lane, where the kernel has one
        self._lane_waiting = None  # a closure: True while the lane's message is unanswered
        self._stream = None  # the kernel's stream, once launched (None again after release)
        self.compiled = False  # True when this launch ran nvcc (a cold cache)

    # ------------------------------------------------------------------ launching

    def _batch_format(self) -> SlotBatches:
        return CudaBatches(self.name, self.in_codec, self.out_codec)

    def _read_source(self) -> tuple[str, str]:
        if self._source is not None:
            return self._source, f"<source of {self.name}>"
        if self.package_dir is None:
            raise BuildError(f"kernel {self.name}: the cuda backend needs its generated package")
        pkg = Path(self.package_dir)
        path = pkg / f"{pkg.name}.cu"
        if path.is_file():
            return path.read_text(), str(path)
        raise BuildError(
            f"kernel {self.name}: {path} is missing",
            hint="rebuild the package with the cuda target (`ringgen build`, or "
            "rg.launch(kernel, backend='cuda'), which builds it)",
        )

    def _abi(self) -> dict:
        """This kernel's ``abi.cuda`` from the package's ``manifest.json`` (``abi.read_abi``)."""
        return read_abi(self.package_dir, self.name)

    def _launch(self) -> None:
        drv = cuda_device._drv()
        if replace_lost_context(self.device):
            cuda_device.forget_modules(self.device)  # loaded into the retired context
        others = resident(self.device)
        if others:
            # Measured on the H200 (driver 580): a second launch while a ring kernel is resident
            # hangs in its module load (cuModuleLoadData waits for the running grid, with lazy
            # and with eager loading), so it is refused instead of hanging (docs/cuda.md, "Limits").
            raise BackendUnavailableError(
                f"kernel {self.name} (cuda): kernel(s) {', '.join(others)} already resident on "
                f"CUDA device {self.device} in this process; one resident CUDA kernel per device "
                "and process for now (allocating while a kernel is resident hangs in the driver)",
                hint="terminate the other kernel first, or run it in another process; graphs of "
                "kernels on CUDA need the device-resident strategies (docs/graphs.md)",
            )
        try:
            self._launch_on_device(drv)
        except Exception as exc:
            if not cuda_device.is_driver_error(exc) or not cuda_device.is_sticky(exc):
                raise
            why = cuda_device.describe_error(exc)
            cuda_device.mark_lost(self.device, why)
            raise BackendUnavailableError(
                f"backend cuda: kernel {self.name} cannot launch: the CUDA context of device "
                f"{self.device} is lost ({why})",
                hint="a kernel faulted in this process; terminate every kernel of this device, "
                "then launch again (the context is replaced then)",
            ) from None

    def _launch_on_device(self, drv: Any) -> None:
        """Compile, allocate and launch (``_launch`` without its handling of a lost context)."""
        info = cuda_device.device_info(self.device)
        self.info = info
        abi = self._abi()
        self._vector_bytes = abi["vector_bytes"]
        source, what = self._read_source()
        options = cuda_build.DEFAULT_OPTIONS + tuple(f"-D{d}" for d in self._defines)
        cubin, self.compiled = cuda_build.compile_cubin(
            source, info.arch, options=options, what=what
        )
        self._module = cuda_device.load_module(self.device, cubin)
        func = self._module.get_function(abi["entry_point"])
        self._tele = DeviceTelemetry(self.name, abi.get("telemetry"), self.telemetry_on)
        block = abi["block"]
        workers = (
            1 if self.spec.ordered else (self.workers or min(DEFAULT_WORKERS, info.sm_count - 1))
        )
        grid = workers + 1
        fit = cuda_device.blocks_per_sm(func, block, info) * info.sm_count
        if grid > fit:
            raise BackendUnavailableError(
                f"kernel {self.name}: {grid} blocks of {block} threads cannot all be resident on "
                f"{info.name} (at most {fit}); a resident kernel whose blocks wait for each other "
                "would hang",
                hint=f"launch with workers <= {fit - 1}",
            )
        self.grid = grid

        # Everything is allocated before the launch: pinning memory or touching the legacy default
        # stream while the kernel is resident can deadlock (docs/design.md §5).
        page, page_dev = self._mapped(_PAGE)
        self._page = page
        self._ctl = page[_CTL_OFF : _CTL_OFF + CONTROL_SIZE].view(CONTROL_DTYPE)
        self._words = memoryview(page).cast("Q")  # 8-byte words of the page, for the hot path
        self._words32 = memoryview(page).cast("I")
        cap = self.capacity
        in_dtype = self.format.in_slot
        in_stride = ring_stride(abi["in_stride"], in_dtype, self.name)
        in_arr, in_dev = self._mapped(cap * in_stride)
        self.inq = InputRing(
            in_arr, in_dtype, cap, self._words, _INQ_OFF // 8, self.in_codec, stride=in_stride
        )
        # A large batch is published in pieces: the kernel starts on the first while the host copies on.
        self.inq.publish_chunk = PUBLISH_CHUNK
        marks, marks_dev = self._mapped(cap * 4)
        dead_dev = 0
        if self.dead_letter_capacity:
            dead, dead_dev = self._mapped(cap * 8)  # zeroed: 0 is never a mark
            self._dead = DeadMarks(dead.view(np.uint64), self.inq.rows, self.dead_letter_capacity)
        out_dev = 0
        if self.spec.uses_outbox:
            out_dtype = outbox_slot(self.format.out_slot, **abi["out_slot"])
            out_arr, out_dev = self._mapped(cap * out_dtype.itemsize)
            self.outq = OutboxOutput(out_arr.view(out_dtype), self._words, _OUTQ_OFF // 8)
        elif self.out_codec is not None:
            out_stride = ring_stride(abi["out_stride"], self.format.out_slot, self.name)
            out_arr, out_dev = self._mapped(cap * out_stride)
            self.outq = PositionalOutput(
                out_arr,
                self.format.out_slot,
                cap,
                self._words,
                _OUTQ_OFF // 8,
                _SIDE_OFF // 8,
                marks.view(np.uint32),
                self.out_codec,
                stride=out_stride,
            )
        else:
            self.outq = None
        lane_dev = 0
        # A lane needs each message either flat (one struct) or bridged (encoded slots).
        codecs_fit = all(
            hasattr(c, "packer") or getattr(c, "bridged", False)
            for c in (self.in_codec, self.out_codec)
        )
        if abi.get("lane") and codecs_fit:
            lane_arr, lane_dev = self._mapped(abi["lane"]["out_at"] + abi["lane"]["out_bytes"])
            lane_arr[:] = 0  # no stamp yet: the lane warp waits for stamp 1
            self._lane = LatencyLane(
                lane_arr,
                abi["lane"],
                self.in_codec,
                self.out_codec,
                self.format.out_slot,
                overtake=not self.spec.ordered,  # an ordered kernel's messages wait for the lane's
            )
        chunks = max(64, 1 << (2 * cap // abi["block"] // abi["items"]).bit_length())
        sched = self._device_zeros(abi["sched_bytes"])
        done = self._device_zeros(8 * chunks)
        state_dev = 0
        self._state_dev = None
        if self.spec.state is not None:
            state_codec = self.codecs[self.spec.state.__name__]
            self._state_dtype = state_codec.dtype
            self._state_dev = self._device_zeros(state_codec.dtype.itemsize)
            state_dev = int(self._state_dev)
            self._state_host = drv.pagelocked_zeros(1, state_codec.dtype)
            self._pinned.append(self._state_host)
            # The defaults of @rg.state, not zeros: copied in before the kernel starts (the copy
            # is synchronous, so the launch below cannot overtake it).
            self._state_host[:] = self._initial_state().view(state_codec.dtype)
            drv.memcpy_htod(self._state_dev, self._state_host)
        self._tele.attach(self._module, drv, self._device_zeros, self._pinned, self._mapped, cap)
        self._ctl["state"] = int(Lifecycle.LAUNCHED)
        # Non-blocking streams: the kernel never waits for, or blocks, the legacy default stream.
        self._stream = drv.Stream(flags=1)
        self._copy_stream = drv.Stream(flags=1)
        self._finished = drv.Event()
        u64 = np.uint64
        # A bridged kernel takes the dead-letter marks last (0: launched without dead_letters); a
        # direct one has no such parameter.
        extra = (u64(dead_dev),) if self.in_codec.bridged else ()
        self._tele.launching()
        func(
            u64(page_dev + _CTL_OFF),
            u64(page_dev + _INQ_OFF),
            u64(in_dev),
            u64(cap - 1),
            u64(page_dev + _OUTQ_OFF),
            u64(out_dev),
            u64(cap - 1),
            u64(marks_dev),
            u64(page_dev + _SIDE_OFF),
            sched,
            done,
            u64(chunks - 1),
            u64(lane_dev),
            u64(state_dev),
            *extra,
            block=(block, 1, 1),
            grid=(grid, 1),
            stream=self._stream,
        )
        self._finished.record(self._stream)
        try:
            self._tele.launched(self._starting, drv, self._copy_stream)
        except Exception as exc:
            if not cuda_device.is_driver_error(exc):
                raise
            # The grid died at its start: no clock offset (nothing is stamped); the fault itself
            # is found and reported by the usual paths (DeviceFaults), as without telemetry.
            log.debug("cuda kernel %s: no telemetry clock offset (%s)", self.name, exc)
        track(self)
        self._setup_fast_paths()
        log.debug("cuda kernel %s: grid %d x %d on %s", self.name, grid, block, info.name)

    def _starting(self) -> bool:
        """The control block still reads LAUNCHED and the grid has not ended (for a grid that died,
        ``query`` raises the driver's error, which ``_launch`` handles)."""
        return int(self._ctl[0]["state"]) == int(Lifecycle.LAUNCHED) and not self._finished.query()

    def _setup_fast_paths(self) -> None:
        """Bind the latency path's closures to the queues and the lane (after they exist)."""
        positional = self.outq if isinstance(self.outq, PositionalOutput) else None
        if self.in_codec.bridged or hasattr(self.in_codec, "packer"):
            # A bridged message is encoded straight into its slot (bridged_fast.bridged_put),
            # within the dead-letter marks' harvested head where it has them.
            self._fast_cls = self.in_codec.cls
            self._fast_put = self.inq.fast_put_one(positional, self._dead)
            if self._tele.stamps is not None:
                self._fast_put = _stamped_put(self._fast_put, self.inq, self._tele)
        if positional is not None:
            self._fast_take = positional.fast_take_one(positional_class(self.out_codec))
        elif isinstance(self.outq, OutboxOutput):
            self._fast_take = self.outq.fast_take_one(
                self.out_codec, positional_class(self.out_codec)
            )
        lane = self._lane
        self._lane_waiting = None
        if lane is not None:
            self._idle = idle_check(self.inq, self.outq)
        if lane is not None and self._fast_put is not None and self._fast_take is not None:
            self._fast_put = lane.fast_put_one(self._idle, self._fast_put, self._recv_lock)
            self._fast_take = lane.fast_take_one(self._fast_take, positional_class(self.out_codec))
            self._lane_waiting = lane.waiting()
        self._send_acquire, self._send_release = self._send_lock.acquire, self._send_lock.release
        self._recv_acquire, self._recv_release = self._recv_lock.acquire, self._recv_lock.release

    def _mapped(self, nbytes: int) -> tuple[np.ndarray, int]:
        arr, dev = cuda_device.mapped_empty(nbytes)
        self._pinned.append(arr)
        # The rings' 16-byte loads and stores are aligned only if each ring starts aligned
        # (codegen.cuda.check_slot_geometry proves the strides); cuMemHostAlloc gives pages.
        assert dev % self._vector_bytes == 0, f"mapped buffer at {dev:#x}"
        return arr, dev

    def _device_zeros(self, nbytes: int):
        drv = cuda_device._drv()
        mem = drv.mem_alloc(nbytes)
        drv.memset_d8(mem, 0, nbytes)
        self._alloc.append(mem)
        return mem

    # ------------------------------------------------------------------ hot paths

    def send(self, message: Any, *, block: bool = True, timeout: Optional[float] = None) -> None:
        """Publish one message (see ``KernelHandle.send``).

        The latency path: a direct message is packed straight into its mapped slot with one
        ``struct.pack_into`` (a bridged one encoded into it by the codec's native ``pack_into``)
        and published with one 8-byte store, under the send lock taken with
        ``acquire``/``release`` (half the cost of ``with``). A full queue, a closed handle, a value
        that does not fit its field or another class take the generic path, which waits, raises or
        converts exactly as on every backend."""
        if timeout is not None:
            timeout = check_timeout(timeout, f"kernel {self.name}.send")
        if type(message) is self._fast_cls:
            self._send_acquire()
            try:
                if self._accepting and self._fast_put(message) is True:
                    self._sent += 1
                    # the watchdog times a stall from the first send after idle, looked at or not
                    self._watchdog.note_send(1)
                    return
            finally:
                self._send_release()
        super().send(message, block=block, timeout=timeout)

    def receive(self, timeout: Optional[float] = None) -> Any:
        """Take the next reply (see ``KernelHandle.receive``).

        A reply already there costs one read of the tail word, one ``unpack_from`` (a bridged reply:
        one decode of its slot) and one store of the head; otherwise the mapped output tail is
        polled for up to a millisecond before the base class's backoff (whose shortest sleep, 20 us,
        is longer than a round trip) takes over. A bridged reply that does not decode is taken and
        counted, and its ``WireFormatError`` raised, as on the generic path."""
        if timeout is not None and not (type(timeout) is float and 0.0 <= timeout < _INF):
            timeout = check_timeout(timeout, f"kernel {self.name}.receive")  # else it is one
        take = self._fast_take
        if take is not None:
            self._recv_acquire()
            try:
                # Re-read under the lock: terminate() clears it before it drains into the spill.
                # Replies in the spill (a waiting send moved them there) are older: they go first.
                try:
                    reply = (
                        take() if self._fast_take is not None and not self._spill.count else None
                    )
                except WireFormatError:
                    self._received += 1  # a corrupt bridged reply was taken (the generic count)
                    raise
                if reply is not None:
                    self._received += 1
                    return reply
            finally:
                self._recv_release()
            budget = 1e-3 if timeout is None else min(timeout, 1e-3)
            deadline_ns = time.perf_counter_ns() + int(budget * 1e9)
            polls = 0
            waiting = self._lane_waiting
            while self._fast_take is not None and not self._spill.count:
                if waiting is not None:
                    # The lane's message is unanswered: spin on its reply word alone (one read,
                    # no lock) until it changes, so the answer is seen within ~0.1 us.
                    while waiting():
                        polls += 1
                        if polls & 63 == 0 and time.perf_counter_ns() > deadline_ns:
                            break
                    if polls & 63 == 0 and time.perf_counter_ns() > deadline_ns:
                        break
                self._recv_acquire()
                try:
                    try:
                        reply = (
                            take()
                            if self._fast_take is not None and not self._spill.count
                            else None
                        )
                    except WireFormatError:
                        self._received += 1
                        raise
                    if reply is not None:
                        self._received += 1
                        return reply
                finally:
                    self._recv_release()
                polls += 1
                if polls & 63 == 0 and time.perf_counter_ns() > deadline_ns:
                    break
        return super().receive(timeout)

    def _pop_wait(self, max_n: int, timeout: Optional[float], into: Optional[np.ndarray] = None):
        """``KernelHandle._pop_wait`` (what ``receive`` and ``receive_batch`` wait in), polling the
        mapped output queue for up to a millisecond first: the base class's backoff waits longer
        than a batch's round trip."""
        self._require_output()
        batch = self._try_pop(max_n, into)
        if batch is not None or timeout == 0:
            return batch
        budget = 1e-3 if timeout is None else min(timeout, 1e-3)
        deadline_ns = time.perf_counter_ns() + int(budget * 1e9)
        while time.perf_counter_ns() < deadline_ns:
            batch = self._try_pop(max_n, into)
            if batch is not None:
                return batch
        left = None if timeout is None else timeout - budget
        if left is not None and left <= 0:
            return None
        return super()._pop_wait(max_n, left, into)

    def _admit_head(self) -> int:
        """The lowest sequence number whose slots may still be in use: the host's output head for a
        positional output (reply i reuses slot i), else the kernel's input head."""
        if isinstance(self.outq, PositionalOutput):
            return self.outq.head
        return self.inq.device_head()

    # ------------------------------------------------------------------ transport hooks

    def _push(self, batch: np.ndarray) -> int:
        lane = self._lane
        if lane is not None and lane.busy():
            if not lane.passable():
                return 0  # an ordered kernel's next message waits for the lane's answer
        elif (
            lane is not None
            and len(batch) == 1
            and batch.dtype == self.format.in_slot
            and self._dead is None  # a raw slot the kernel rejects must come back as a dead letter
        ):
            # The receive lock, without waiting: see LatencyLane.fast_put_one's gate.
            if self._recv_lock.acquire(False):
                try:
                    if self._idle():
                        lane.put_slot(batch[0])
                        return 1
                finally:
                    self._recv_lock.release()
        admit = self._admit_head()
        if self._dead is not None:
            # Dead letters are copied out of the input ring: harvest the marks below the kernel's
            # head before any slot is reused, and reuse none beyond what was harvested.
            admit = min(admit, self._dead.harvest(self.inq.device_head()))
        if self._tele.stamps is not None:  # telemetry: stamp the timed messages this put publishes
            tail = self.inq.tail
            self._tele.stamp(tail, min(len(batch), self.capacity - (tail - admit)))
        if batch.dtype != self.format.in_slot:  # bridged view rows: encoded into the ring itself
            return self.inq.put_rows(batch, admit, self._encode_rows)
        return self.inq.put(batch, admit)

    def _encode_rows(self, rows: np.ndarray, out: np.ndarray, sequence: int) -> None:
        encode_rows(self.in_codec, rows, out, sequence)

    def _pop_dead_letters(self, max_n: int) -> np.ndarray:
        if self._dead is None:
            return super()._pop_dead_letters(max_n)
        self._dead.harvest(self.inq.device_head())
        return self._dead.take(max_n)

    def _dead_letters_dropped(self) -> int:
        if self._dead is None:
            return 0
        # The kernel only marks; a dead letter is dropped (or not) when the host harvests it, so
        # harvest first: a stats() after the messages were processed counts all of them.
        self._dead.harvest(self.inq.device_head())  # (DeadMarks has its own lock)
        return self._dead.dropped

    def _pop(self, max_n: int) -> np.ndarray:
        if self.outq is None:
            return self.format.empty()
        lane = self._lane
        if lane is not None and lane.busy():
            replies = lane.take(max_n)  # the lane's answer is older than anything in the ring
            if replies is None:
                return self.format.empty()
            if len(replies):
                return replies
        return self.outq.take(max_n)

    def _pop_into(self, dst: np.ndarray) -> Optional[int]:
        if not isinstance(self.outq, PositionalOutput):
            return None  # an Outbox's stamped slots are copied out by take
        if self._lane is not None and self._lane.busy():
            return None  # the lane's answer is older than the ring's replies: _pop takes it first
        return self.outq.take_into(dst)

    def _control(self) -> np.ndarray:
        # `processed` first, then the rest: the kernel stores the counts by reason before it
        # (fenced), so the snapshot never shows a handled message missing from `rejected`.
        processed = self._ctl["processed"][0]
        rec = self._ctl.copy()[0]
        rec["processed"] = processed
        if self._lane is not None:
            # The lane warp counts its own messages, stored before each reply (kernel.cu.j2).
            rec["processed"] += self._words[_SIDE_OFF // 8 + _SIDE_LANE_DONE]
            rec["emitted"] += self._words[_SIDE_OFF // 8 + _SIDE_LANE_EMITTED]
        return rec

    def _queue_depths(self) -> tuple[int, int]:
        in_depth = self.inq.tail - self.inq.device_head()
        out_depth = self.outq.depth() if self.outq is not None else 0
        lane = self._lane
        if lane is not None and lane.busy():
            if lane.answered():
                out_depth += (lane.words[lane.word_at] & 0xFF) - lane.item
            else:
                in_depth += 1
        return in_depth, out_depth

    def _latency(self):
        return None

    def _telemetry(self, ctl: np.ndarray):
        tele = getattr(self, "_tele", None)
        if tele is None or not tele.enabled or self._context_lost():
            return None
        try:
            cuda_device.context(self.device)
            return tele.read(ctl, cuda_device._drv(), self._copy_stream)
        except Exception as exc:
            self._driver_failed(exc, "reading its telemetry")
            return None

    def _read_state(self) -> Any:
        """The state copied out of device memory; None once the context is lost (it cannot be read,
        and the error is in ``stats().fault``)."""
        if self._context_lost():
            log.warning(
                "kernel %s (cuda): its state cannot be read: %s", self.name, self._lost_why()
            )
            return None
        drv = cuda_device._drv()
        try:
            cuda_device.context(self.device)
            drv.memcpy_dtoh_async(self._state_host, self._state_dev, stream=self._copy_stream)
            self._copy_stream.synchronize()
        except Exception as exc:
            self._driver_failed(exc, "reading its state")
            return None
        return self.codecs[self.spec.state.__name__].from_array(self._state_host.copy())[0]

    def _request_terminate(self) -> None:
        # Called under the send lock, before the base class drains replies into its spill under the
        # receive lock: from here on receive() takes the generic path, which reads the spill first.
        self._fast_take = None
        self._words32[(_CTL_OFF + CONTROL_DTYPE.fields["terminate"][1]) // 4] = 1

    def _synchronize(self, timeout: float) -> None:
        """Wait for the grid to exit; returns at once when the context is lost (the grid is gone)."""
        if self._context_lost():
            return
        deadline = time.monotonic() + timeout
        try:
            cuda_device.context(self.device)
            while not self._finished.query():
                if time.monotonic() > deadline:
                    raise KernelTimeoutError(
                        f"kernel {self.name} (cuda) acknowledged termination but its grid did not "
                        f"exit within {timeout:g} s"
                    )
                time.sleep(20e-6)
        except KernelTimeoutError:
            raise
        except Exception as exc:
            self._driver_failed(exc, "waiting for its grid to exit")

    def _release(self) -> None:
        """Free everything the launch allocated; in a lost context, leave it to the driver."""
        untrack(self)
        if self._context_lost():
            self._leak()
            return
        try:
            self._free()
        except Exception as exc:
            self._driver_failed(exc, "freeing its memory")
            self._leak()

    def _keep_last_dead_letters(self) -> None:
        """The last marks (terminate drained them already; abort() did not): into the handle's
        dead-letter spill, which stays readable, before the ring and marks are freed."""
        if self._dead is not None:
            with self._dl_lock:
                self._dead.harvest(self.inq.device_head())
                self._dl_spill.put(self._dead.take(self.dead_letter_capacity))
                self._dead.detach()

    def _free(self) -> None:
        cuda_device.context(self.device)
        self._keep_last_dead_letters()
        for mem in self._alloc:
            mem.free()
        self._alloc.clear()
        for arr in self._pinned:
            arr.base.free()
        self._pinned.clear()
        # Streams and the event hold driver resources: give them back now, not whenever the
        # handle happens to be collected.
        self._stream = self._copy_stream = self._finished = None
        self._module = None

    def _abandon(self) -> None:
        self._fast_take = None
        # Ask for an abort (workers leave without draining) and leak the memory on purpose: freeing
        # pinned memory under a resident grid can deadlock the driver.
        if getattr(self, "_page", None) is not None:
            self._words32[(_CTL_OFF + CONTROL_DTYPE.fields["terminate"][1]) // 4] = 2

    def abort(self, timeout: float = 1.0) -> bool:
        """After a ``KernelTimeoutError`` from ``terminate``: wait up to ``timeout`` for the grid to
        exit (the abort request was sent by then) and free its memory. Returns True when it did."""
        timeout = check_timeout(timeout, f"kernel {self.name}.abort")
        timeout = 1e9 if timeout is None else timeout
        if not self._released or not self._alloc:
            return True
        try:
            self._synchronize(timeout)
        except KernelTimeoutError:
            return False
        self._release()
        return True


HANDLE_CLASS = CudaKernelHandle
