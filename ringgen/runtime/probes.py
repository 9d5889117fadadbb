"""One probe per backend: can it run here, and on which devices.

A probe (named by its backend's row of ``ringgen.targets``) raises ``BackendUnavailableError``,
naming what is missing with the row's install hint, when the backend cannot run on this machine,
and otherwise returns the devices it found. ``auto`` and ``rg.launch`` call it before they open a
backend (``ringgen.runtime.backends``) and ``ringgen devices`` calls it through ``describe``, so the
two never disagree. Where a loader module checks more than a driver (the CUDA device must map host
memory, ``$RINGGEN_OPENCL_DEVICE`` must match an OpenCL device, the C backend needs a little-endian
host), its ``probe()`` is the last step of the backend's probe here.

Nothing here imports a driver until a probe runs; nothing here prints.
"""

from __future__ import annotations

import importlib
import platform
from typing import Optional

import attrs

from .. import targets as registry
from ..errors import BackendUnavailableError
from ..targets import Target
from .logs import kernel_logger

__all__ = [
    "BackendReport",
    "DeviceInfo",
    "describe",
    "probe_cpu",
    "probe_cuda",
    "probe_opencl",
]

log = kernel_logger(__name__)


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


def _unavailable(name: str, what: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"backend {name}: {what}", hint=registry.by_name(name).install_hint
    )


def _loader_probe(name: str):
    """Run the ``probe()`` of backend ``name``'s loader module, when it defines one; return the
    module."""
    module = importlib.import_module(registry.by_name(name).loader)
    check = getattr(module, "probe", None)
    if check is not None:
        check()
    return module


def probe_cuda() -> tuple[DeviceInfo, ...]:
    """CUDA devices through PyCUDA (persistent mode; 64-bit atomics on every supported GPU).

    Raises:
        BackendUnavailableError: PyCUDA is missing or does not load, the driver is unusable, there
            is no device, or the device ringgen would use cannot map host memory.
    """
    try:
        import pycuda.driver as drv  # noqa: PLC0415 - only when cuda is asked for
    except ImportError as exc:
        raise _unavailable("cuda", f"PyCUDA is not installed ({exc})") from None
    except Exception as exc:  # a broken driver installation raises at import
        raise _unavailable("cuda", f"PyCUDA failed to load ({exc})") from None
    try:
        drv.init()
        version = (
            f"CUDA {'.'.join(map(str, drv.get_driver_version_tuple()))}"
            if hasattr(drv, "get_driver_version_tuple")
            else "CUDA"
        )
        devices = []
        for i in range(drv.Device.count()):
            d = drv.Device(i)
            major, minor = d.compute_capability()
            devices.append(
                DeviceInfo(
                    backend="cuda",
                    platform=version,
                    name=f"{d.name()} (#{i})",
                    mode="persistent",
                    atomics64=True,
                    svm="mapped pinned memory",
                    detail=f"sm_{major}{minor}, {d.total_memory() // 2**20} MiB",
                )
            )
    except Exception as exc:  # pycuda raises its own driver errors (no driver, no device)
        raise _unavailable("cuda", f"the CUDA driver is not usable ({exc})") from None
    if not devices:
        raise _unavailable("cuda", "no CUDA device found")
    _loader_probe("cuda")
    return tuple(devices)


def _opencl_device(cl, platform_, dev) -> DeviceInfo:
    from .opencl.build import svm_support  # the loader's package, imported once opencl is probed

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
        platform=platform_.name.strip(),
        name=dev.name.strip(),
        mode="persistent" if fine and atomics else "relaunch",
        atomics64=atomics64,
        svm=svm,
        detail=f"{dev.version.split(' HSTR')[0].strip()}, {dev.max_compute_units} compute units",
    )


def probe_opencl() -> tuple[DeviceInfo, ...]:
    """OpenCL platforms and devices through PyOpenCL, with the mode each supports (persistent where
    the device offers fine-grained SVM with atomics, relaunch elsewhere).

    Raises:
        BackendUnavailableError: PyOpenCL is missing, there is no platform or no device, or none
            matches ``$RINGGEN_OPENCL_DEVICE``.
    """
    try:
        import pyopencl as cl  # noqa: PLC0415 - only when opencl is asked for
    except ImportError as exc:
        raise _unavailable("opencl", f"PyOpenCL is not installed ({exc})") from None
    try:
        platforms = cl.get_platforms()
    except Exception as exc:  # pyopencl raises LogicError when no ICD is installed
        raise _unavailable("opencl", f"no OpenCL platform ({exc})") from None
    devices = []
    for plat in platforms:
        try:
            devs = plat.get_devices()
        except cl.Error as exc:
            log.debug("OpenCL platform %s has no usable devices: %s", plat.name, exc)
            continue
        devices += [_opencl_device(cl, plat, d) for d in devs]
    if not devices:
        raise _unavailable("opencl", "no OpenCL device found")
    _loader_probe("opencl")
    return tuple(devices)


def probe_cpu() -> tuple[DeviceInfo, ...]:
    """The Python reference backend: always present."""
    return (
        DeviceInfo(
            "cpu",
            "Python",
            "reference backend",
            "reference",
            True,
            "-",
            "runs the handlers in Python; always present",
        ),
    )


def describe(target: Target) -> BackendReport:
    """Backend ``target``'s availability with its devices, through its one probe."""
    if target.probe is None:
        return BackendReport(target.name, True, "")
    try:
        devices = registry.resolve(target.probe)()
    except BackendUnavailableError as exc:
        reason = exc.message.removeprefix(f"backend {target.name}: ")
        return BackendReport(target.name, False, reason + (f"; {exc.hint}" if exc.hint else ""))
    except (ImportError, AttributeError) as exc:
        return BackendReport(
            target.name, False, f"its probe {target.probe} cannot be loaded: {exc}"
        )
    return BackendReport(target.name, True, "", tuple(devices or ()))
