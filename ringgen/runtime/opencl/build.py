"""OpenCL devices and program builds for the OpenCL backend: discovery, capabilities, a binary cache.

Kept apart from the handle (``ringgen.runtime.opencl``): this module knows how to find devices, what
each one can do (fine-grained SVM with atomics means persistent mode), and how to turn ``<name>.cl`` into
a built ``cl.Program`` without rebuilding on a warm start. Built binaries are cached on disk under the
ringgen cache directory (``<cache>/opencl``), keyed by a hash of the source, the build options and the
device's identity (platform, device, driver versions). Each binary is a ``ringgen.cachestore`` entry:
published whole, so two processes can share the cache, and checked (owner, mode, SHA-256) before its
bytes reach ``clCreateProgramWithBinary``, so a truncated or swapped binary is rebuilt from source,
never loaded (a damaged binary can crash the driver, or run the wrong code without a word).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from pathlib import Path
from typing import Optional

import attrs

from ... import cachestore
from ..logs import kernel_logger
from ...errors import BackendUnavailableError, CacheError, ToolchainError

__all__ = [
    "DEVICE_ENV",
    "DeviceInfo",
    "SvmSupport",
    "build_program",
    "cache_dir",
    "context_for",
    "list_devices",
    "select_device",
    "svm_support",
]

log = kernel_logger(__name__)

#: Environment variable that restricts the OpenCL devices ringgen uses (substring of
#: "platform name / device name", case-insensitive, or "P:D" platform and device indices).
DEVICE_ENV = "RINGGEN_OPENCL_DEVICE"


def _cl():
    try:
        import pyopencl as cl
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the OpenCL backend needs PyOpenCL, which is not importable: {exc}",
            hint="pip install 'ringgen[opencl]' (and an OpenCL driver such as pocl-opencl-icd)",
        ) from None
    return cl


@attrs.frozen
class DeviceInfo:
    """One OpenCL device and what ringgen can do with it.

    ``persistent`` is True when the device offers fine-grained SVM buffers with atomics and OpenCL C
    3.0: the host and a running kernel can then share the queues (persistent mode). Otherwise the
    backend runs in relaunch mode.
    """

    index: str  # "P:D"
    platform: str
    name: str
    device: object = attrs.field(eq=False, repr=False)
    persistent: bool
    svm_fine_grain: bool
    svm_atomics: bool
    atomics_64: bool
    cl_c_30: bool
    compute_units: int
    identity: str = attrs.field(repr=False)  # what a built binary depends on

    @property
    def label(self) -> str:
        return f"{self.platform} / {self.name}"


def _version_at_least(text: str, major: int) -> bool:
    # "OpenCL 3.0 PoCL ..." -> 3
    try:
        return int(text.split()[1].split(".")[0]) >= major
    except (IndexError, ValueError):
        return False


@attrs.frozen
class SvmSupport:
    """What shared virtual memory an OpenCL device offers (``svm_support``)."""

    caps: int  # the raw CL_DEVICE_SVM_CAPABILITIES bits; 0 without SVM (OpenCL 1.x)
    fine_grain: bool  # fine-grained buffers: host and a running kernel see each other's stores
    atomics: bool  # atomics on them work between host and device

    @property
    def persistent_capable(self) -> bool:
        """Both: what persistent mode's shared queues need (besides OpenCL C 3.0)."""
        return self.fine_grain and self.atomics


def svm_support(cl, device) -> SvmSupport:
    """The SVM capabilities of ``device`` (a ``cl.Device``; ``cl`` is the pyopencl module): the one
    place ringgen decides whether a device has fine-grained SVM with atomics."""
    try:
        caps = int(device.svm_capabilities)
    except (cl.Error, AttributeError):  # OpenCL 1.x devices have no SVM query
        caps = 0
    return SvmSupport(
        caps=caps,
        fine_grain=bool(caps & cl.device_svm_capabilities.FINE_GRAIN_BUFFER),
        atomics=bool(caps & cl.device_svm_capabilities.ATOMICS),
    )


def _describe(cl, pi: int, di: int, platform, device) -> DeviceInfo:
    svm = svm_support(cl, device)
    cl_c_30 = _version_at_least(device.version, 3)  # an OpenCL 3.0 driver accepts -cl-std=CL3.0
    ext = device.extensions
    atom64 = "cl_khr_int64_base_atomics" in ext or _version_at_least(device.version, 2)
    identity = "|".join(
        [platform.name, platform.version, device.name, device.version, device.driver_version]
    )
    return DeviceInfo(
        index=f"{pi}:{di}",
        platform=platform.name,
        name=device.name.strip(),
        device=device,
        persistent=svm.persistent_capable and cl_c_30,
        svm_fine_grain=svm.fine_grain,
        svm_atomics=svm.atomics,
        atomics_64=atom64,
        cl_c_30=cl_c_30,
        compute_units=int(device.max_compute_units),
        identity=identity,
    )


@functools.lru_cache(maxsize=1)
def _all_devices() -> tuple[DeviceInfo, ...]:
    cl = _cl()
    try:
        platforms = cl.get_platforms()
    except cl.Error:  # no ICD loader or no platform: "none present", not an error
        return ()
    out = []
    for pi, p in enumerate(platforms):
        try:
            devices = p.get_devices()
        except cl.Error:
            continue
        for di, d in enumerate(devices):
            out.append(_describe(cl, pi, di, p, d))
    return tuple(out)


def _matches(info: DeviceInfo, pattern: str) -> bool:
    pattern = pattern.strip()
    return pattern == info.index or pattern.lower() in info.label.lower()


def list_devices(pattern: Optional[str] = None) -> list[DeviceInfo]:
    """Every OpenCL device present, filtered by ``pattern`` or else ``$RINGGEN_OPENCL_DEVICE``.

    Returns an empty list when PyOpenCL is importable but no platform or device is present.
    """
    pattern = pattern if pattern is not None else os.environ.get(DEVICE_ENV)
    devices = list(_all_devices())
    if pattern:
        devices = [d for d in devices if _matches(d, pattern)]
    return devices


def select_device(device: object = None) -> DeviceInfo:
    """The device a kernel runs on: ``device`` (a pattern, a ``DeviceInfo`` or a ``cl.Device``), or the
    first device present (after ``$RINGGEN_OPENCL_DEVICE``), persistent-capable devices first.

    Raises:
        BackendUnavailableError: no device matches.
    """
    if isinstance(device, DeviceInfo):
        return device
    if device is not None and not isinstance(device, str):
        for info in _all_devices():
            if info.device == device:
                return info
        raise BackendUnavailableError(
            f"OpenCL device {device!r} is not one of this machine's devices"
        )
    found = list_devices(device)
    if not found:
        want = device or os.environ.get(DEVICE_ENV)
        present = ", ".join(f"{d.index} {d.label}" for d in _all_devices()) or "none"
        raise BackendUnavailableError(
            "no OpenCL device"
            + (f" matches {want!r}" if want else " is present")
            + f" (devices present: {present})",
            hint=f"install an OpenCL driver (pocl-opencl-icd on a CPU) or change {DEVICE_ENV}",
        )
    return sorted(found, key=lambda d: not d.persistent)[0]


_contexts: dict[str, object] = {}
_programs: dict[tuple, object] = {}
_lock = threading.Lock()


def context_for(info: DeviceInfo):
    """One ``cl.Context`` per device for the whole process (contexts are costly to create and
    destroy; sharing one keeps launch/terminate cycles from growing process memory)."""
    cl = _cl()
    with _lock:
        ctx = _contexts.get(info.index)
        if ctx is None:
            ctx = cl.Context([info.device])
            _contexts[info.index] = ctx
        return ctx


def cache_dir() -> Path:
    """Where built binaries live: ``<ringgen cache>/opencl`` (``ringgen.cachestore.cache_root``)."""
    return cachestore.cache_root() / "opencl"


#: The file of an OpenCL binary cache entry.
BINARY = "program.bin"


def _cache_key(source: str, options: tuple[str, ...], info: DeviceInfo) -> str:
    h = hashlib.sha256()
    for part in (source, "\0".join(options), info.identity):
        h.update(part.encode())
        h.update(b"\0\0")
    return h.hexdigest()


def _compile(cl, ctx, source: str, options: tuple[str, ...], info: DeviceInfo, what: str):
    """``source`` built for ``info``'s device.

    Raises:
        ToolchainError: the OpenCL compiler rejected the source; the message carries its build log.
    """
    log.info("building %s for %s (%s)", what, info.label, " ".join(options))
    try:
        return cl.Program(ctx, source).build(options=list(options), devices=[info.device])
    except cl.Error as exc:
        raise ToolchainError(
            f"OpenCL compiler ({info.label}) rejected {what}:\n{exc}",
            hint="this is a ringgen bug if the source is generated; please report it with the log",
        ) from None


def build_program(source: str, options: tuple[str, ...], info: DeviceInfo, *, what: str):
    """A built ``cl.Program`` for ``source`` on ``info``'s device, from memory, the disk cache, or a
    fresh build (which is then cached).

    Args:
        what: names the source in errors (e.g. the ``.cl`` file's path).

    Raises:
        ToolchainError: the OpenCL compiler rejected the source; the message carries its build log.
        CacheError: the cache folder belongs to another user or others can write it.
    """
    cl = _cl()
    ctx = context_for(info)
    key = _cache_key(source, options, info)
    with _lock:
        prg = _programs.get((info.index, key))
    if prg is not None:
        return prg
    built = []

    def compile_into(folder: Path) -> None:
        built.append(_compile(cl, ctx, source, options, info, what))
        (folder / BINARY).write_bytes(bytes(built[0].binaries[0]))

    try:
        entry = cachestore.get_or_build(
            cachestore.cache_subdir("opencl"),
            key[:32],
            key,
            compile_into,
            what=f"the OpenCL binary of {what}",
        )
    except CacheError:
        raise
    except OSError as exc:  # a read-only cache only costs a rebuild next time
        log.warning("cannot write the OpenCL binary cache %s: %s", cache_dir(), exc)
        entry = None
    if built:
        prg = built[0]
    elif entry is None:
        prg = _compile(cl, ctx, source, options, info, what)
    else:
        try:  # these bytes were checked against the entry's SHA-256 when they were read
            prg = cl.Program(ctx, [info.device], [entry.files[BINARY]]).build(options=list(options))
            log.debug("OpenCL program %s loaded from the binary cache %s", what, entry.path)
        except cl.Error as exc:  # a binary this driver no longer takes: build from source
            log.debug("ignoring unusable cached binary %s: %s", entry.path, exc)
            prg = _compile(cl, ctx, source, options, info, what)
    with _lock:
        _programs[(info.index, key)] = prg
    return prg
