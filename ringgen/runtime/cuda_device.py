"""The CUDA device side of the loader: context, mapped pinned buffers, occupancy.

Kept apart from the handle (``ringgen.runtime.cuda``) so that the handle holds queue logic only. Every
call here needs PyCUDA; it is imported when a CUDA kernel is first launched.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError

__all__ = ["DeviceInfo", "blocks_per_sm", "context", "device_info", "mapped_empty"]

log = logging.getLogger("ringgen")

_lock = threading.Lock()
_contexts: dict[int, Any] = {}
_local = threading.local()


def _drv():
    import pycuda.driver as drv  # noqa: PLC0415 - PyCUDA only when the cuda backend is used

    return drv


class DeviceInfo:
    """What the loader needs to know about one GPU."""

    def __init__(self, ordinal: int) -> None:
        drv = _drv()
        dev = drv.Device(ordinal)
        attr = drv.device_attribute
        self.ordinal = ordinal
        self.name = dev.name()
        major, minor = dev.compute_capability()
        self.arch = f"sm_{major}{minor}"
        self.sm_count = dev.get_attribute(attr.MULTIPROCESSOR_COUNT)
        self.max_threads_per_sm = dev.get_attribute(attr.MAX_THREADS_PER_MULTIPROCESSOR)
        self.max_blocks_per_sm = dev.get_attribute(attr.MAX_BLOCKS_PER_MULTIPROCESSOR)
        self.regs_per_sm = dev.get_attribute(attr.MAX_REGISTERS_PER_MULTIPROCESSOR)
        self.smem_per_sm = dev.get_attribute(attr.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR)
        self.can_map = bool(dev.get_attribute(attr.CAN_MAP_HOST_MEMORY))

    def __repr__(self) -> str:
        return f"<cuda device {self.ordinal}: {self.name}, {self.arch}, {self.sm_count} SMs>"


_infos: dict[int, DeviceInfo] = {}


def context(ordinal: int = 0) -> None:
    """Make device ``ordinal``'s primary context current in this thread (retained once per process).

    Raises:
        BackendUnavailableError: the driver or the device is missing.
    """
    current = getattr(_local, "ordinal", None)
    if current == ordinal:
        return
    drv = _drv()
    with _lock:
        ctx = _contexts.get(ordinal)
        if ctx is None:
            try:
                drv.init()
                if ordinal >= drv.Device.count():
                    raise BackendUnavailableError(
                        f"backend cuda: no device {ordinal} ({drv.Device.count()} present)"
                    )
                ctx = drv.Device(ordinal).retain_primary_context()
            except drv.Error as exc:
                raise BackendUnavailableError(
                    f"backend cuda: cannot open device {ordinal}: {exc}"
                ) from None
            _contexts[ordinal] = ctx
            atexit.register(_pop_all)
    if current is not None:
        drv.Context.pop()
    ctx.push()
    _local.ordinal = ordinal


def _pop_all() -> None:
    if getattr(_local, "ordinal", None) is not None:
        try:
            _drv().Context.pop()
        except Exception:  # interpreter shutdown: nothing left to clean up
            pass
        _local.ordinal = None


def device_info(ordinal: int = 0) -> DeviceInfo:
    """The (cached) ``DeviceInfo`` of device ``ordinal``; makes its context current."""
    context(ordinal)
    info = _infos.get(ordinal)
    if info is None:
        info = _infos[ordinal] = DeviceInfo(ordinal)
    return info


def mapped_empty(nbytes: int) -> tuple[np.ndarray, int]:
    """Page-locked host memory mapped into the device: (a uint8 array of ``nbytes``, device address).

    Zeroed. Must be called before any kernel is resident (pinning memory while one spins can
    deadlock the driver, DESIGN.md §5).
    """
    drv = _drv()
    arr = drv.pagelocked_zeros(
        max(int(nbytes), 1), np.uint8, mem_flags=drv.host_alloc_flags.DEVICEMAP
    )
    return arr, int(arr.base.get_device_pointer())


def blocks_per_sm(func: Any, block: int, info: DeviceInfo) -> int:
    """How many blocks of ``block`` threads of ``func`` fit on one SM (threads, registers, shared
    memory and the block limit; registers are allocated per warp in units of 256)."""
    drv = _drv()
    fa = drv.function_attribute
    regs = func.get_attribute(fa.NUM_REGS)
    smem = func.get_attribute(fa.SHARED_SIZE_BYTES)
    warps = (block + 31) // 32
    regs_per_warp = ((max(regs, 1) * 32 + 255) // 256) * 256
    limits = [
        info.max_threads_per_sm // block,
        info.max_blocks_per_sm,
        info.regs_per_sm // (regs_per_warp * warps),
    ]
    if smem:
        limits.append(info.smem_per_sm // (smem + 1024))  # 1 KB per block is reserved by the system
    return max(0, min(limits))
