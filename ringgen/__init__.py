"""ringgen: persistent GPU ring kernels from typed Python.

Declare messages with ``@rg.message``, handlers with ``@rg.ring_kernel``; ``ringgen build`` emits CUDA,
OpenCL and Metal source, C layouts, host serializers and runtime glue; ``rg.launch`` runs a kernel on
the best backend present. The public API is exactly the names in ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _hooks
from ._version import __version__

# Public names and the module each lives in; imported on first use so ``import ringgen`` stays cheap
# and does not pull in PyCUDA or PyOpenCL.
_EXPORTS: dict[str, str] = {
    "Array": "ringgen.types",
    "BackendUnavailableError": "ringgen.errors",
    "BarrierBrokenError": "ringgen.errors",
    "Block": "ringgen.topics",
    "BuildError": "ringgen.errors",
    "DeadLetter": "ringgen.runtime",
    "DropNewest": "ringgen.topics",
    "DropOldest": "ringgen.topics",
    "EncodeError": "ringgen.errors",
    "HLC": "ringgen.types",
    "HOST": "ringgen.topics",
    "HandlerError": "ringgen.errors",
    "KernelFaultError": "ringgen.errors",
    "KernelHandle": "ringgen.runtime",
    "KernelStalledError": "ringgen.errors",
    "KernelStats": "ringgen.runtime",
    "KernelTimeoutError": "ringgen.errors",
    "LayoutError": "ringgen.errors",
    "List": "ringgen.types",
    "Outbox": "ringgen.kernel",
    "QueueClosedError": "ringgen.errors",
    "QueueFullError": "ringgen.errors",
    "RinggenError": "ringgen.errors",
    "SchemaError": "ringgen.errors",
    "Str": "ringgen.types",
    "ToolchainError": "ringgen.errors",
    "WireFormatError": "ringgen.errors",
    "atomic_add": "ringgen.intrinsics",
    "atomic_cas": "ringgen.intrinsics",
    "atomic_max": "ringgen.intrinsics",
    "atomic_min": "ringgen.intrinsics",
    "barrier": "ringgen.barriers",
    "barrier_wait": "ringgen.intrinsics",
    "bool_": "ringgen.types",
    "decode": "ringgen.wire",
    "device": "ringgen.kernel",
    "dtype_of": "ringgen.layout",
    "encode": "ringgen.wire",
    "f32": "ringgen.types",
    "f64": "ringgen.types",
    "graph": "ringgen.graphs",
    "i16": "ringgen.types",
    "i32": "ringgen.types",
    "i64": "ringgen.types",
    "i8": "ringgen.types",
    "launch": "ringgen.jit",
    "layout_of": "ringgen.layout",
    "message": "ringgen.schema",
    "now": "ringgen.intrinsics",
    "pipeline": "ringgen.graphs",
    "ring_kernel": "ringgen.kernel",
    "serve_metrics": "ringgen.runtime.metrics",
    "spec_of": "ringgen.schema",
    "state": "ringgen.schema",
    "thread_id": "ringgen.intrinsics",
    "topic": "ringgen.topics",
    "u16": "ringgen.types",
    "u32": "ringgen.types",
    "u64": "ringgen.types",
    "u8": "ringgen.types",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ringgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def _launch(kernel: Any, **options: Any) -> Any:
    """``RingKernel.launch()``: ``rg.launch`` (ringgen.jit), imported on first use."""
    from .jit import launch

    return launch(kernel, **options)


_hooks.launch = _launch


def _then(left: Any, right: Any) -> Any:
    """``kernel >> other``: ``ringgen.graphs.then``, imported on first use."""
    from .graphs import then

    return then(left, right)


_hooks.then = _then


if TYPE_CHECKING:  # editors and type checkers see the real objects
    from .barriers import barrier
    from .errors import (
        BackendUnavailableError,
        BarrierBrokenError,
        BuildError,
        EncodeError,
        HandlerError,
        KernelFaultError,
        KernelStalledError,
        KernelTimeoutError,
        LayoutError,
        QueueClosedError,
        QueueFullError,
        RinggenError,
        SchemaError,
        ToolchainError,
        WireFormatError,
    )
    from .intrinsics import (
        atomic_add,
        atomic_cas,
        atomic_max,
        atomic_min,
        barrier_wait,
        now,
        thread_id,
    )
    from .graphs import graph, pipeline
    from .kernel import Outbox, device, ring_kernel
    from .layout import dtype_of, layout_of
    from .jit import launch
    from .runtime import DeadLetter, KernelHandle, KernelStats
    from .runtime.metrics import serve_metrics
    from .schema import message, spec_of, state
    from .topics import HOST, Block, DropNewest, DropOldest, topic
    from .types import (
        HLC,
        Array,
        List,
        Str,
        bool_,
        f32,
        f64,
        i8,
        i16,
        i32,
        i64,
        u8,
        u16,
        u32,
        u64,
    )
    from .wire import decode, encode
