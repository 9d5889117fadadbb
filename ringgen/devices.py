"""Which backends and devices this machine has, and what each supports.

``probe()`` asks PyCUDA (when importable) and PyOpenCL (when importable) and always lists the CPU
reference backend. For OpenCL it reports whether the device offers fine-grained SVM buffers with
atomics, which ringgen's persistent mode needs (docs/design.md §5); without them a kernel runs in relaunch
mode. Nothing here prints; ``ringgen devices`` renders the result.
"""

from __future__ import annotations

import logging
from typing import Optional

import attrs

__all__ = ["BackendReport", "DeviceInfo", "probe", "probe_c", "probe_cuda", "probe_opencl"]

log = logging.getLogger("ringgen")


@attrs.frozen
class DeviceInfo:
    """One device a backend can run on.

    ``mode`` is ``persistent`` (a resident kernel polls its queues), ``relaunch`` (each launch drains
    what is queued) or ``reference`` (the Python CPU backend). ``atomics64`` is None when unknown.
    """

    backend: str
    platform: str
    name: str
    mode: str
    atomics64: Optional[bool]
    svm: str
    detail: str = ""


@attrs.frozen
class BackendReport:
    """A backend's availability: its devices, or the reason it has none."""

    backend: str
    available: bool
    reason: str
    devices: tuple[DeviceInfo, ...] = ()


def probe_cuda() -> BackendReport:
    """CUDA devices through PyCUDA (persistent mode; 64-bit atomics on every supported GPU)."""
    try:
        import pycuda.driver as drv
    except ImportError:
        return BackendReport("cuda", False, "pycuda is not installed (pip install 'ringgen[cuda]')")
    except Exception as exc:  # a broken driver installation raises at import
        return BackendReport("cuda", False, f"pycuda failed to load: {exc}")
    try:
        drv.init()
        devices = []
        for i in range(drv.Device.count()):
            d = drv.Device(i)
            major, minor = d.compute_capability()
            devices.append(
                DeviceInfo(
                    backend="cuda",
                    platform=(
                        f"CUDA {'.'.join(map(str, drv.get_driver_version_tuple()))}"
                        if hasattr(drv, "get_driver_version_tuple")
                        else "CUDA"
                    ),
                    name=f"{d.name()} (#{i})",
                    mode="persistent",
                    atomics64=True,
                    svm="mapped pinned memory",
                    detail=f"sm_{major}{minor}, {d.total_memory() // 2**20} MiB",
                )
            )
    except drv.Error as exc:
        return BackendReport("cuda", False, f"CUDA driver error: {exc}")
    if not devices:
        return BackendReport("cuda", False, "no CUDA device")
    return BackendReport("cuda", True, "", tuple(devices))


def _opencl_device(cl, platform, dev) -> DeviceInfo:
    from .runtime.opencl.build import svm_support

    svm_caps = svm_support(cl, dev)
    caps, fine, atomics = svm_caps.caps, svm_caps.fine_grain, svm_caps.atomics
    if fine and atomics:
        svm = "fine-grained buffers + atomics"
    elif fine:
        svm = "fine-grained buffers, no atomics"
    elif caps:
        svm = "coarse-grained only"
    else:
        svm = "none"
    ext = set(dev.extensions.split())
    atomics64 = {"cl_khr_int64_base_atomics", "cl_khr_int64_extended_atomics"} <= ext
    return DeviceInfo(
        backend="opencl",
        platform=platform.name.strip(),
        name=dev.name.strip(),
        mode="persistent" if fine and atomics else "relaunch",
        atomics64=atomics64,
        svm=svm,
        detail=f"{dev.version.split(' HSTR')[0].strip()}, {dev.max_compute_units} compute units",
    )


def probe_opencl() -> BackendReport:
    """OpenCL platforms and devices through PyOpenCL, with the mode each supports."""
    try:
        import pyopencl as cl
    except ImportError:
        return BackendReport(
            "opencl", False, "pyopencl is not installed (pip install 'ringgen[opencl]')"
        )
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:
        return BackendReport("opencl", False, f"no OpenCL platform ({exc})")
    devices = []
    for platform in platforms:
        try:
            devs = platform.get_devices()
        except cl.Error as exc:
            log.debug("OpenCL platform %s has no usable devices: %s", platform.name, exc)
            continue
        devices += [_opencl_device(cl, platform, d) for d in devs]
    if not devices:
        return BackendReport("opencl", False, "no OpenCL device (apt-get install pocl-opencl-icd)")
    return BackendReport("opencl", True, "", tuple(devices))


def probe_c() -> BackendReport:
    """The native C backend: present when a C compiler is (``ringgen.runtime.c_native``)."""
    import platform

    from .runtime.c_native import find_compiler

    cc = find_compiler()
    if cc is None:
        return BackendReport("c", False, "no C compiler ($CC, cc, gcc or clang)")
    dev = DeviceInfo(
        "c",
        f"native ({cc})",
        f"host CPU ({platform.machine()})",
        "persistent",
        True,
        "host memory",
        "generated C handlers, one native worker thread",
    )
    return BackendReport("c", True, "", (dev,))


def probe() -> list[BackendReport]:
    """Every backend, in ``auto`` order (cuda, opencl, c, cpu), with its devices or why it has none."""
    cpu = DeviceInfo(
        "cpu",
        "Python",
        "reference backend",
        "reference",
        True,
        "-",
        "runs the handlers in Python; always present",
    )
    return [probe_cuda(), probe_opencl(), probe_c(), BackendReport("cpu", True, "", (cpu,))]
