"""Running ring kernels: ``launch`` and the ``KernelHandle`` every backend returns.

``launch(kernel)`` builds the kernel's module into the content-hashed cache (``cache.py``) and opens
it on a backend from the registry (``backends.py``: cpu, opencl, cuda, or auto). The handle's API,
policies and stats are described in docs/runtime.md.
"""

from __future__ import annotations

from typing import Any

from .backends import available_backends, load_backend, open_kernel, resolve_backend
from .base import KernelHandle
from .dead_letters import DeadLetter
from .stats import KernelStats, LatencySummary

__all__ = [
    "DeadLetter",
    "KernelHandle",
    "KernelStats",
    "LatencySummary",
    "available_backends",
    "launch",
    "load_backend",
    "open_kernel",
    "resolve_backend",
]


def launch(kernel: Any, backend: str = "auto", **options: Any) -> KernelHandle:
    """Build ``kernel``'s module into the cache (once per content) and launch it, in one call.

    Args:
        kernel: a ``@rg.ring_kernel``.
        backend: "auto" (cuda, then opencl, then c, then cpu; ``RINGGEN_BACKEND`` replaces auto),
            "cpu", "c", "opencl" or "cuda".
        options: launch options, e.g. ``capacity=4096`` (docs/runtime.md lists each backend's).

    Returns:
        The running ``KernelHandle``; use it as a context manager so the kernel is terminated.

    Raises:
        TypeError: ``kernel`` is not a ``@rg.ring_kernel``.
        BuildError, SchemaError, HandlerError: the kernel's module does not build.
        BackendUnavailableError: the backend is unknown or absent.
    """
    from ..kernel import kernel_spec_of
    from .cache import DEVICE_TARGETS, built_package

    spec = kernel_spec_of(kernel)

    def package_for(name: str) -> tuple:
        # A device backend loads the source its own target emits ("opencl" -> <name>.cl).
        targets = load_backend(name).targets or ((name,) if name in DEVICE_TARGETS else ())
        package_dir, codecs = built_package(spec, targets)
        return str(package_dir), codecs

    # open_kernel resolves "auto", and falls back past a backend that cannot run this kernel.
    return open_kernel(spec, None, backend, package_for=package_for, **options)
