"""The backend registry: one table from name to module, resolved lazily, and the ``auto`` choice.

A backend module (``ringgen.runtime.<name>``) exposes ``HANDLE_CLASS``, its ``KernelHandle``
subclass, and may expose ``probe()``, which raises ``BackendUnavailableError`` when its driver or
device is missing. Importing this module imports no driver: PyCUDA and PyOpenCL are only touched when a
backend is asked for, so ``import ringgen`` stays cheap and works on a machine with neither.

``auto`` picks the first available of cuda, opencl, c (a C compiler is present), cpu; the ``RINGGEN_BACKEND`` environment variable,
when set, replaces ``auto`` (an explicit ``backend=`` argument still wins over it). When the chosen
backend is present but cannot run this kernel (``BackendUnavailableError`` from its launch, e.g. an
OpenCL kernel that calls ``rg.now()``), ``auto`` logs why and launches on the next available one; a
backend the user named (argument or environment variable) is never replaced.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any, Callable, Mapping, Optional, Tuple

from ..errors import BackendUnavailableError, BuildError
from ..kernel import KernelSpec
from .base import KernelHandle

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "available_backends",
    "load_backend",
    "open_kernel",
    "resolve_backend",
]

log = logging.getLogger("ringgen")

#: Backend name -> the module that implements it.
BACKENDS: dict[str, str] = {
    "cpu": "ringgen.runtime.cpu",
    "opencl": "ringgen.runtime.opencl",
    "cuda": "ringgen.runtime.cuda",
    "c": "ringgen.runtime.c_native",
}

#: The order ``auto`` tries them in.
AUTO_ORDER = ("cuda", "opencl", "c", "cpu")

#: What to install when a backend's driver is missing.
_INSTALL_HINTS = {
    "cuda": "install PyCUDA (pip install 'ringgen[cuda]') on a machine with an NVIDIA GPU and driver",
    "opencl": "install PyOpenCL and an OpenCL platform (pip install 'ringgen[opencl]' pocl-binary-distribution, "
    "or your vendor's ICD)",
    "c": "install a C compiler (gcc, clang) or set CC",
    "cpu": "the cpu backend needs nothing beyond ringgen itself; reinstall ringgen",
}

ENV_VAR = "RINGGEN_BACKEND"


def _probe_cuda() -> None:
    try:
        import pycuda.driver as drv  # noqa: PLC0415 - only when cuda is asked for
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend cuda: PyCUDA is not installed ({exc})", hint=_INSTALL_HINTS["cuda"]
        ) from None
    try:
        drv.init()
        count = drv.Device.count()
    except Exception as exc:  # pycuda raises its own driver errors (no driver, no device)
        raise BackendUnavailableError(
            f"backend cuda: the CUDA driver is not usable ({exc})", hint=_INSTALL_HINTS["cuda"]
        ) from None
    if count < 1:
        raise BackendUnavailableError(
            "backend cuda: no CUDA device found", hint=_INSTALL_HINTS["cuda"]
        )


def _probe_opencl() -> None:
    try:
        import pyopencl as cl  # noqa: PLC0415 - only when opencl is asked for
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend opencl: PyOpenCL is not installed ({exc})", hint=_INSTALL_HINTS["opencl"]
        ) from None
    try:
        platforms = cl.get_platforms()
    except Exception as exc:  # pyopencl raises LogicError when no ICD is installed
        raise BackendUnavailableError(
            f"backend opencl: no OpenCL platform ({exc})", hint=_INSTALL_HINTS["opencl"]
        ) from None
    if not any(p.get_devices() for p in platforms):
        raise BackendUnavailableError(
            "backend opencl: no OpenCL device found", hint=_INSTALL_HINTS["opencl"]
        )


def _probe_cpu() -> None:
    return None


_DRIVER_PROBES: dict[str, Callable[[], None]] = {
    "cpu": _probe_cpu,
    "opencl": _probe_opencl,
    "cuda": _probe_cuda,
    "c": _probe_cpu,  # ringgen.runtime.c_native.probe checks for a compiler
}


def _check_name(name: str, source: str) -> None:
    if name not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {name!r}{source}",
            hint=f"choose one of: auto, {', '.join(BACKENDS)}",
        )


#: Backends already loaded (drivers do not come and go within a process; probing costs milliseconds).
_LOADED: dict[str, type[KernelHandle]] = {}


def load_backend(name: str) -> type[KernelHandle]:
    """The handle class of backend ``name``, after checking its driver and device are present.

    Raises:
        BackendUnavailableError: the name is unknown, the backend module is not installed, or its
            driver or device is missing (the message says what to install).
    """
    _check_name(name, "")
    if name in _LOADED:
        return _LOADED[name]
    _DRIVER_PROBES[name]()
    module_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise BackendUnavailableError(
                f"backend {name}: module {module_name} is not part of this ringgen installation",
                hint="upgrade ringgen, or choose another backend (ringgen devices lists them)",
            ) from None
        raise BackendUnavailableError(f"backend {name}: {exc}", hint=_INSTALL_HINTS[name]) from None
    probe = getattr(module, "probe", None)
    if probe is not None:
        probe()
    cls = getattr(module, "HANDLE_CLASS", None)
    if not (isinstance(cls, type) and issubclass(cls, KernelHandle)):
        raise BackendUnavailableError(
            f"backend {name}: {module_name} does not define HANDLE_CLASS (a KernelHandle subclass)",
            hint="this is a bug in that backend module",
        )
    _LOADED[name] = cls
    return cls


def resolve_backend(backend: str = "auto") -> str:
    """The concrete backend ``backend`` stands for: itself, or for ``auto`` the first available of
    cuda, opencl, cpu (``RINGGEN_BACKEND`` replaces ``auto`` when set).

    Raises:
        BackendUnavailableError: the name (or the environment variable's value) is unknown, or an
            explicitly named backend is unavailable.
    """
    if backend == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env and env != "auto":
            _check_name(env, f" (from the environment variable {ENV_VAR})")
            load_backend(env)
            return env
        reasons = []
        for name in AUTO_ORDER:
            try:
                load_backend(name)
            except BackendUnavailableError as exc:
                reasons.append(exc.message)
                continue
            log.debug("backend auto -> %s (skipped: %s)", name, "; ".join(reasons) or "none")
            return name
        raise BackendUnavailableError("no backend is available: " + "; ".join(reasons))
    load_backend(backend)
    return backend


def available_backends() -> list[str]:
    """The backends usable on this machine, in ``auto`` order (``cpu`` always among them)."""
    out = []
    for name in AUTO_ORDER:
        try:
            load_backend(name)
        except BackendUnavailableError:
            continue
        out.append(name)
    return out


def _candidates(backend: str) -> list[str]:
    """The backends to try for ``backend``, in order: every available one for a plain ``auto``,
    else just the one it names."""
    if backend == "auto" and os.environ.get(ENV_VAR, "").strip().lower() in ("", "auto"):
        first = resolve_backend("auto")  # raises, listing why, when none is available
        later = AUTO_ORDER[AUTO_ORDER.index(first) + 1 :]
        return [first] + [n for n in available_backends() if n in later]
    return [resolve_backend(backend)]


def open_kernel(
    spec: KernelSpec,
    package_dir: Optional[str],
    backend: str = "auto",
    *,
    codecs: Optional[Mapping[str, Any]] = None,
    package_for: Optional[Callable[[str], Tuple[str, Mapping[str, Any]]]] = None,
    **options: Any,
) -> KernelHandle:
    """Launch ``spec`` on ``backend`` and return its running ``KernelHandle``.

    With ``auto`` (and no ``RINGGEN_BACKEND``), a backend that raises ``BackendUnavailableError``
    for this kernel is skipped (logged at info on the "ringgen" logger) for the next available one.

    Args:
        spec: the kernel to launch.
        package_dir: its generated package directory (codecs and sources are read from there).
        backend: "auto", "cpu", "opencl" or "cuda".
        codecs: the package's ``serializers.CODECS``, when the caller has imported it already.
        package_for: instead of ``package_dir`` and ``codecs``: ``name -> (package_dir, codecs)``
            for the backend about to be tried (``rg.launch`` builds each backend's sources this way).
        options: backend options (``capacity``, and those a device backend documents).

    Raises:
        BackendUnavailableError: as ``resolve_backend``, or no candidate backend can run the kernel
            (the last one's error).
        BuildError: no package was given, or it has no codec for one of the kernel's messages.
        KernelTimeoutError, KernelFaultError: the kernel did not start.
    """
    names = _candidates(backend)
    for name, fallback in zip(names, names[1:]):
        if package_for is not None:
            package_dir, codecs = package_for(name)
        try:
            return _open_on(name, spec, package_dir, codecs, options)
        except BackendUnavailableError as exc:
            log.info(
                "backend auto: %s cannot run kernel %s (%s); trying %s",
                name,
                spec.name,
                exc.message,
                fallback,
            )
    if package_for is not None:
        package_dir, codecs = package_for(names[-1])
    return _open_on(names[-1], spec, package_dir, codecs, options)


def _open_on(
    name: str,
    spec: KernelSpec,
    package_dir: Optional[str],
    codecs: Optional[Mapping[str, Any]],
    options: Mapping[str, Any],
) -> KernelHandle:
    cls = load_backend(name)
    if codecs is None:
        if package_dir is None:
            raise BuildError(
                f"kernel {spec.name}: launching needs its generated package (package_dir or codecs)",
                hint="use rg.launch(kernel), which builds the package into the cache",
            )
        from .cache import load_codecs

        codecs = load_codecs(package_dir)
    return cls.open(spec, package_dir, codecs=codecs, **options)
