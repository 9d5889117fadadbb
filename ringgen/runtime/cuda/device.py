"""The CUDA device side of the loader: context, mapped pinned buffers, occupancy, lost contexts.

Kept apart from the handle (``ringgen.runtime.cuda``) so that the handle holds queue logic only. Every
call here needs PyCUDA; it is imported when a CUDA kernel is first launched.

A kernel that faults on the device (an illegal or misaligned address, a trap) loses the whole CUDA
context: the error is *sticky*, every later call in it fails with the same code, and whatever was
allocated in it can no longer be freed. This module names such errors in words (``describe_error``),
remembers which device's context was lost (``mark_lost``, ``lost``) and replaces the lost primary
context with a fresh one when the driver allows it (``retire_context``): the next launch in the
same process then works.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import threading
from typing import Any, Optional

import numpy as np

from ..logs import kernel_logger
from ...errors import BackendUnavailableError

__all__ = [
    "DeviceInfo",
    "blocks_per_sm",
    "check_context",
    "context",
    "describe_error",
    "device_info",
    "generation",
    "is_driver_error",
    "forget_modules",
    "is_sticky",
    "load_module",
    "lost",
    "mapped_empty",
    "mark_lost",
    "retire_context",
]

log = kernel_logger(__name__)

_lock = threading.RLock()
_contexts: dict[int, Any] = {}
_local = threading.local()
#: Per device: the error that lost its context (until ``retire_context`` replaces it).
_lost: dict[int, str] = {}
#: Per device: what the driver still reported after ``retire_context`` tried to replace the context.
_refused: dict[int, str] = {}
#: Per device: how many times its context was replaced (thread-local currency and module caches
#: are keyed by it, so nothing of a retired context is used again).
_generations: dict[int, int] = {}

#: CUresult names by the text ``cuGetErrorString`` gives for them: PyCUDA's exceptions carry only
#: the text ("cuStreamQuery failed: misaligned address"). The errors a kernel raises on the device,
#: after which its context is lost ("sticky": every later call fails), are all in this table.
_STICKY_ERRORS = {
    "an illegal memory access was encountered": "CUDA_ERROR_ILLEGAL_ADDRESS",
    "misaligned address": "CUDA_ERROR_MISALIGNED_ADDRESS",
    "unspecified launch failure": "CUDA_ERROR_LAUNCH_FAILED",
    "an illegal instruction was encountered": "CUDA_ERROR_ILLEGAL_INSTRUCTION",
    "device-side assert triggered": "CUDA_ERROR_ASSERT",
    "hardware stack error": "CUDA_ERROR_HARDWARE_STACK_ERROR",
    "invalid program counter": "CUDA_ERROR_INVALID_PC",
    "operation not supported on global/shared address space": "CUDA_ERROR_INVALID_ADDRESS_SPACE",
    "the launch timed out and was terminated": "CUDA_ERROR_LAUNCH_TIMEOUT",
    "uncorrectable ECC error encountered": "CUDA_ERROR_ECC_UNCORRECTABLE",
    "context is destroyed": "CUDA_ERROR_CONTEXT_IS_DESTROYED",
}


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
    """Make device ``ordinal``'s primary context current in this thread (retained once per process,
    and again after ``retire_context``).

    Raises:
        BackendUnavailableError: the driver or the device is missing.
    """
    key = (ordinal, _generations.get(ordinal, 0))
    current = getattr(_local, "current", None)
    if current == key:
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
        try:
            drv.Context.pop()
        except drv.Error:  # a retired context: nothing of it is used again
            pass
    ctx.push()
    _local.current = key
    if threading.current_thread() is not threading.main_thread() and not hasattr(_local, "exit"):
        # PyCUDA aborts the process when a thread ends with a context on its stack ("context stack
        # was not empty"): a thread that ever made one current (a terminate() from a timer, an
        # executor) pops it as it ends, when its thread-local values are released.
        _local.exit = _PopOnThreadExit()


class _PopOnThreadExit:
    """Held in a thread's ``_local``: released (in that thread) as the thread ends, it pops the
    context ``context`` pushed there."""

    def __del__(self) -> None:
        try:
            _drv().Context.pop()
        except Exception:  # a retired or lost context: nothing of it is used again
            pass


def _pop_all() -> None:
    if getattr(_local, "current", None) is not None:
        try:
            _drv().Context.pop()
        except Exception:  # interpreter shutdown: nothing left to clean up
            pass
        _local.current = None


def generation(ordinal: int) -> int:
    """How many times device ``ordinal``'s context was replaced by ``retire_context`` (0 at first)."""
    return _generations.get(ordinal, 0)


def is_driver_error(exc: BaseException) -> bool:
    """True when ``exc`` is an error PyCUDA raised for a CUDA driver call."""
    return isinstance(exc, _drv().Error)


def describe_error(exc: BaseException) -> str:
    """A driver error in words, with its CUresult name where known:
    ``"CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered"``."""
    message = str(exc).strip()
    _routine, sep, text = message.partition(" failed: ")
    text = (text if sep else message).split(" - ")[0].strip()
    name = _STICKY_ERRORS.get(text)
    return f"{name}: {text}" if name else text


def is_sticky(exc: BaseException) -> bool:
    """True when ``exc`` is a driver error after which the context is lost (``_STICKY_ERRORS``)."""
    return describe_error(exc).split(":")[0] in _STICKY_ERRORS.values()


def mark_lost(ordinal: int, why: str) -> None:
    """Remember that device ``ordinal``'s context was lost, and why (the first report wins)."""
    with _lock:
        if ordinal not in _lost:
            _lost[ordinal] = why
            log.error(
                "cuda device %d: the context was lost (%s); every kernel in it has stopped, and "
                "the next launch replaces the context",
                ordinal,
                why,
            )


def lost(ordinal: int) -> Optional[str]:
    """Why device ``ordinal``'s current context was lost, or None while it is usable."""
    return _lost.get(ordinal)


def check_context(ordinal: int) -> Optional[str]:
    """Ask the driver whether device ``ordinal``'s context still works (``cuMemGetInfo``, which
    returns a sticky error and does not wait for resident kernels); marks it lost when not.
    Returns ``lost(ordinal)``."""
    if ordinal in _lost:
        return _lost[ordinal]
    drv = _drv()
    context(ordinal)
    try:
        drv.mem_get_info()
    except drv.Error as exc:
        if is_sticky(exc):
            mark_lost(ordinal, describe_error(exc))
    return _lost.get(ordinal)


def retire_context(ordinal: int) -> str:
    """Replace device ``ordinal``'s lost primary context with a fresh one, current in this thread.

    Two attempts, each checked by a driver call in the fresh context: release the process's one
    retain of the lost context (the last release destroys a primary context and everything
    allocated in it) and retain a fresh one; then, where the driver still reports the error, reset
    the primary context (``cuDevicePrimaryCtxReset``, which PyCUDA does not wrap, called in the
    driver library) and retain it again. Whatever was allocated in the old context is gone: no
    handle may still use its memory. NVIDIA documents the errors a faulting kernel raises as
    needing a new process ("To continue using CUDA, the process must be terminated and
    relaunched"); on the H200 with driver 580 both attempts failed (docs/cuda.md), and a refusal is
    remembered so that later launches say so at once. Returns how it was done, for the log.

    Raises:
        BackendUnavailableError: the driver kept reporting the error (the process must restart to
            use this GPU again).
    """
    with _lock:
        why = _lost.get(ordinal, "lost")
        refused = _refused.get(ordinal)
        if refused is None:
            attempts = (
                ("released the lost primary context and retained a fresh one", None),
                (
                    "reset the primary context (cuDevicePrimaryCtxReset) and retained it again",
                    _reset_primary_context,
                ),
            )
            for how, before in attempts:
                _drop_context(ordinal)
                code = before(ordinal) if before is not None else 0
                _generations[ordinal] = _generations.get(ordinal, 0) + 1
                refused = _probe(ordinal) if code == 0 else f"CUresult {code}"
                if refused is None:
                    _lost.pop(ordinal, None)
                    log.warning("cuda device %d: the context was lost (%s); %s", ordinal, why, how)
                    return how
            _refused[ordinal] = refused
        raise BackendUnavailableError(
            f"backend cuda: the CUDA context of device {ordinal} was lost earlier in this process "
            f"({why}) and the driver did not let ringgen replace it (a fresh context still "
            f"reports: {refused})",
            hint="start a new process to use this GPU again",
        )


def _drop_context(ordinal: int) -> None:
    """Pop device ``ordinal``'s context from this thread and release the process's retain of it."""
    drv = _drv()
    old = _contexts.pop(ordinal, None)
    current = getattr(_local, "current", None)
    if current is not None and current[0] == ordinal:
        try:
            drv.Context.pop()
        except drv.Error:
            pass
        _local.current = None
    if old is not None:
        try:
            old.detach()  # cuDevicePrimaryCtxRelease
        except drv.Error as exc:
            log.warning("cuda device %d: releasing the lost context: %s", ordinal, exc)


def _probe(ordinal: int) -> Optional[str]:
    """None when device ``ordinal``'s (fresh) context answers a call, else the error in words."""
    drv = _drv()
    try:
        context(ordinal)
        drv.mem_get_info()
        return None
    except (drv.Error, BackendUnavailableError) as exc:
        return describe_error(exc)


def _reset_primary_context(ordinal: int) -> int:
    """``cuDevicePrimaryCtxReset`` on device ``ordinal`` through the driver library; its CUresult
    (-1 when the library cannot be loaded)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return -1
    dev = ctypes.c_int(0)
    code = lib.cuDeviceGet(ctypes.byref(dev), ctypes.c_int(ordinal))
    if code != 0:
        return int(code)
    reset = getattr(lib, "cuDevicePrimaryCtxReset_v2", None) or lib.cuDevicePrimaryCtxReset
    return int(reset(dev))


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
    deadlock the driver, docs/design.md §5).
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


_modules: dict[tuple[int, int, str], Any] = {}
_modules_lock = threading.Lock()


def load_module(device: int, cubin: bytes) -> Any:
    """The loaded module of ``cubin`` on ``device``, loaded once per process (and context): a module
    per launch would cost a load each time, and unloading one whose Function objects are still
    referenced is deferred by PyCUDA, so launch/terminate cycles would slowly eat device memory
    (seen: 14 MiB over 1,000 cycles)."""
    key = (device, generation(device), hashlib.sha256(cubin).hexdigest())
    with _modules_lock:
        module = _modules.get(key)
        if module is None:
            module = _modules[key] = _drv().module_from_buffer(cubin)
        return module


def forget_modules(ordinal: int) -> None:
    """Drop the modules loaded on device ``ordinal`` (its context was replaced: they belong to the
    retired one)."""
    with _modules_lock:
        for key in [k for k in _modules if k[0] == ordinal]:
            del _modules[key]
