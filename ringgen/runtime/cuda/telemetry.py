"""The telemetry buffer of a CUDA ring kernel (docs/observability.md, "Telemetry").

The buffer (``ringgen.runtime.telemetry.TELEMETRY_DTYPE``) lives in device memory: the kernel counts
the handler time of 1 message in ``sample_every`` into it with device atomics (``%globaltimer``
around the handler, ``templates/common/telemetry.c.j2``). The host finds it through the module's
``__device__`` pointer named by the manifest (``abi.cuda.telemetry.symbol``), which it sets before
every launch (0 when telemetry is off: the kernel then reads the pointer and nothing else), and
copies the buffer out on the kernel's copy stream, a non-blocking stream, so the resident grid
never stops for it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from ...errors import BuildError
from ..telemetry import (
    BUCKETS,
    MAX_MSB,
    SUB_BITS,
    TELEMETRY_DTYPE,
    Telemetry,
    new_buffer,
    read_telemetry,
    rejected_by_reason,
)

__all__ = ["DeviceTelemetry"]

#: The u64 word where the handler histogram starts in ``TELEMETRY_DTYPE``.
_HANDLER_WORD = TELEMETRY_DTYPE.fields["handler"][1] // 8

#: What ``Telemetry.queue_what`` says on CUDA.
QUEUE_WHAT = "not measured on cuda: the host and the device share no clock"


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
        ours = {
            "sub_bits": SUB_BITS,
            "max_msb": MAX_MSB,
            "buckets": BUCKETS,
            "handler_word": _HANDLER_WORD,
        }
        theirs = {k: abi.get(k) for k in ours}
        if theirs != ours:
            raise BuildError(
                f"kernel {self.kernel}: the package's device telemetry {theirs} is not this "
                f"ringgen's layout {ours}",
                hint="rebuild the package with this version of ringgen",
            )

    def attach(
        self,
        module: Any,
        drv: Any,
        device_zeros: Callable[[int], Any],
        pinned: list,
    ) -> None:
        """Before the launch (allocating while a grid is resident can hang the driver): allocate the
        buffer when telemetry is on, and point the module's symbol at it, or at nothing."""
        if self.abi is None:
            return  # an older package: no symbol, nothing timed
        pointer = 0
        if self.enabled:
            host = drv.pagelocked_zeros(1, TELEMETRY_DTYPE)
            pinned.append(host)
            host[0] = new_buffer(int(self.abi["sample_every"]))
            self.device_buffer = device_zeros(TELEMETRY_DTYPE.itemsize)
            drv.memcpy_htod(self.device_buffer, host)
            self.host_buffer = host
            pointer = int(self.device_buffer)
        symbol, _size = module.get_global(self.abi["symbol"])
        drv.memcpy_htod(symbol, np.array([pointer], dtype=np.uint64))

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
            queue_what=QUEUE_WHAT,
        )
