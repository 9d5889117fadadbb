"""The telemetry buffer of a CUDA ring kernel (docs/observability.md, "Telemetry").

The buffer (``ringgen.runtime.telemetry.TELEMETRY_DTYPE``) lives in device memory: the kernel counts
the handler time of 1 message in ``sample_every`` into it with device atomics (``%globaltimer``
around the handler, ``templates/common/telemetry.c.j2``), and the poller writes a queue-depth
sample every ``depth_every`` polls. The host finds it through the module's ``__device__`` pointer
named by the manifest (``abi.cuda.telemetry.symbol``), which it sets before every launch (0 when
telemetry is off: the kernel then reads the pointer and nothing else), and copies the buffer out on
the kernel's copy stream, a non-blocking stream, so the resident grid never stops for it.

Time in the queue: ``%globaltimer`` counts nanoseconds on a clock the driver keeps near the host's
wall clock, not on it. At the launch the poller writes its ``%globaltimer`` into the buffer
(``started``) before it reports ACTIVE; the host read ``time.time_ns()`` just before the launch and
again when it saw ACTIVE, so the device's start lies between the two: the offset (device minus
host) is taken at the midpoint, give or take half the bracket (``offset_uncertainty_ns``). The host
then stamps each timed message (``time.time_ns()`` + the offset) into a ring of stamps in mapped
host memory before it publishes it; the kernel subtracts the stamp from the handler's start.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import numpy as np

from ...errors import BuildError
from ..telemetry import (
    BUCKETS,
    DEPTH_SLOTS,
    MAX_MSB,
    SUB_BITS,
    TELEMETRY_DTYPE,
    Telemetry,
    new_buffer,
    read_telemetry,
    rejected_by_reason,
)

__all__ = ["DeviceTelemetry", "LAYOUT", "OFFSET_WAIT_S", "queue_what"]


def _word(field: str, size: int = 8) -> int:
    return TELEMETRY_DTYPE.fields[field][1] // size


#: Where ``TELEMETRY_DTYPE`` keeps what the kernel writes, as the manifest says it (in 64-bit words;
#: ``depth_in`` in 32-bit words): compared with ``abi.cuda.telemetry`` before any launch.
LAYOUT = {
    "sub_bits": SUB_BITS,
    "max_msb": MAX_MSB,
    "buckets": BUCKETS,
    "depth_slots": DEPTH_SLOTS,
    "depth_written_word": _word("depth_written"),
    "started_word": _word("started"),
    "queue_word": _word("queue"),
    "handler_word": _word("handler"),
    "depth_t_word": _word("depth_t"),
    "depth_in_word32": _word("depth_in", 4),
}

#: How long the launch waits for ACTIVE to close the clock-offset bracket (a kernel that takes
#: longer records no time in the queue; ``open`` still waits for it as usual).
OFFSET_WAIT_S = 5.0


def queue_what(uncertainty_ns: Optional[int]) -> str:
    """What ``Telemetry.queue_what`` says on CUDA, with the clock offset's uncertainty."""
    if uncertainty_ns is None:
        return (
            "not measured: the kernel did not report ACTIVE within the launch's clock-offset "
            "bracket, so host stamps cannot be put on %globaltimer"
        )
    return (
        "host send (time.time_ns() stamp before publication, moved onto %globaltimer by the offset "
        f"estimated at launch, +/- {uncertainty_ns / 1e3:.1f} us) to handler start on %globaltimer; "
        "messages sent through reserve/commit are not stamped"
    )


class DeviceTelemetry:
    """One kernel's telemetry buffer in device memory, and the pointer the kernel reads it through.

    Args:
        kernel: the kernel's name (for errors).
        abi: the manifest's ``abi.cuda.telemetry``, or None (a package built before telemetry).
        enabled: the launch option ``telemetry``.
    """

    def __init__(self, kernel: str, abi: Optional[dict], enabled: bool) -> None:
        self.kernel = kernel
        self.abi = abi
        self.enabled = enabled
        self.device_buffer: Any = None
        self.host_buffer: Optional[np.ndarray] = None
        #: The host's publication stamps (``time.time_ns()`` + ``offset_ns``), in mapped host memory
        #: the kernel reads; entry ``(seq // sample_every) & stamp_mask`` for message ``seq``.
        self.stamps: Optional[np.ndarray] = None
        self.stamp_mask = 0
        self.sample_every = int(abi["sample_every"]) if abi else 0
        #: Device clock minus host clock (ns) and half the width of the bracket it was taken in;
        #: None until the launch's bracket closes (then no message is stamped).
        self.offset_ns: Optional[int] = None
        self.offset_uncertainty_ns: Optional[int] = None
        self._launched_at = 0
        if enabled:
            self._check_abi()

    def _check_abi(self) -> None:
        abi = self.abi
        if abi is None:
            raise BuildError(
                f"kernel {self.kernel}: its package has no device telemetry "
                "(manifest abi.cuda.telemetry)",
                hint="rebuild the package, or launch with telemetry=False",
            )
        theirs = {k: abi.get(k) for k in LAYOUT}
        if theirs != LAYOUT:
            raise BuildError(
                f"kernel {self.kernel}: the package's device telemetry {theirs} is not this "
                f"ringgen's layout {LAYOUT}",
                hint="rebuild the package with this version of ringgen",
            )
        every = abi.get("sample_every")
        if not isinstance(every, int) or every < 1 or every & (every - 1):
            raise BuildError(
                f"kernel {self.kernel}: the package's telemetry sample_every={every!r} is not a "
                "power of two",
                hint="rebuild the package with this version of ringgen",
            )

    def attach(
        self,
        module: Any,
        drv: Any,
        device_zeros: Callable[[int], Any],
        pinned: list,
        mapped: Callable[[int], tuple[np.ndarray, int]],
        capacity: int,
    ) -> None:
        """Before the launch (allocating while a grid is resident can hang the driver): allocate the
        buffer and the stamps (mapped host memory) when telemetry is on, and point the module's
        symbols at them, or at nothing."""
        if self.abi is None:
            return  # an older package: no symbol, nothing timed
        pointer = stamps_pointer = mask = 0
        if self.enabled:
            host = drv.pagelocked_zeros(1, TELEMETRY_DTYPE)
            pinned.append(host)
            host[0] = new_buffer(self.sample_every)
            self.device_buffer = device_zeros(TELEMETRY_DTYPE.itemsize)
            drv.memcpy_htod(self.device_buffer, host)
            self.host_buffer = host
            pointer = int(self.device_buffer)
            # At most capacity messages are in flight, so at most capacity // every + 1 timed ones:
            # a stamp is read (and cleared) by the kernel before the host can reuse its entry.
            n = 1 << (capacity // self.sample_every).bit_length()  # a power of two above that
            raw, stamps_pointer = mapped(8 * n)
            self.stamps = raw.view(np.uint64)
            self.stamp_mask = mask = n - 1
        for key, value in (
            ("symbol", pointer),
            ("stamps_symbol", stamps_pointer),
            ("stamp_mask_symbol", mask),
        ):
            name = self.abi.get(key)
            if name is None:  # telemetry off on a package of the first layout (no stamps)
                continue
            symbol, _size = module.get_global(name)
            drv.memcpy_htod(symbol, np.array([value], dtype=np.uint64))

    def launching(self) -> None:
        """Just before the launch: the bracket's first host reading."""
        self._launched_at = time.time_ns()

    def launched(self, starting: Callable[[], bool], drv: Any, stream: Any) -> None:
        """After the launch: wait (at most ``OFFSET_WAIT_S``) while ``starting()`` (the control
        block still reads LAUNCHED and the grid has not ended), close the bracket and read the
        device's start time; set ``offset_ns``. A kernel that never got going leaves it None."""
        if self.device_buffer is None or self.host_buffer is None:
            return
        deadline = time.monotonic() + OFFSET_WAIT_S
        while starting():
            if time.monotonic() >= deadline:
                return
        seen_at = time.time_ns()
        drv.memcpy_dtoh_async(self.host_buffer, self.device_buffer, stream=stream)
        stream.synchronize()
        started = int(self.host_buffer[0]["started"])
        if started == 0:
            return
        self.offset_ns = started - (self._launched_at + seen_at) // 2
        self.offset_uncertainty_ns = (seen_at - self._launched_at + 1) // 2

    def stamp(self, tail: int, n: int) -> None:
        """Before messages ``[tail, tail + n)`` are published: stamp the timed ones among them."""
        stamps = self.stamps
        offset = self.offset_ns
        if stamps is None or offset is None or n <= 0:
            return
        every = self.sample_every
        first = -(-tail // every)  # the first timed message's index among the timed ones
        last = (tail + n - 1) // every
        if first > last:
            return
        now = time.time_ns() + offset
        if first == last:
            stamps[first & self.stamp_mask] = now
        else:
            stamps[np.arange(first, last + 1) & self.stamp_mask] = now

    def read(self, ctl: np.ndarray, drv: Any, stream: Any) -> Optional[Telemetry]:
        """Copy the buffer out on ``stream`` (the kernel keeps running) and decode it; None when
        telemetry is off."""
        if self.device_buffer is None or self.host_buffer is None:
            return None
        drv.memcpy_dtoh_async(self.host_buffer, self.device_buffer, stream=stream)
        stream.synchronize()
        return read_telemetry(
            self.host_buffer[0],
            rejected=rejected_by_reason(ctl),
            clock="device %globaltimer",
            queue_what=queue_what(self.offset_uncertainty_ns),
        )
