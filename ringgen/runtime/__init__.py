"""Running ring kernels: ``launch`` and the ``KernelHandle`` every backend returns.

``ringgen.jit.launch(kernel)`` (``rg.launch``) builds the kernel's module into the content-hashed cache
and opens it here, on a backend from the registry (``backends.py``: cpu, opencl, cuda, or auto); the
runtime itself only reads generated packages and never imports the generator. The handle's API,
policies and stats are described in docs/runtime.md.
"""

from __future__ import annotations

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
    "load_backend",
    "open_kernel",
    "resolve_backend",
]
