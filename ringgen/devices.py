"""Which backends and devices this machine has, and what each supports.

``probe()`` has one report per launchable backend of ``ringgen.targets``, in ``auto`` order, each
made by that backend's one probe (``ringgen.runtime.probes.describe``), the same probe ``auto``
uses. For OpenCL a device's mode says whether it offers fine-grained SVM buffers with atomics, which
ringgen's persistent mode needs (docs/design.md §5); without them a kernel runs in relaunch mode.
Nothing here prints; ``ringgen devices`` renders the result.
"""

from __future__ import annotations

from . import targets as registry
from .runtime.probes import BackendReport, DeviceInfo, describe

__all__ = ["BackendReport", "DeviceInfo", "probe"]


def probe() -> list[BackendReport]:
    """Every backend that can launch kernels, in ``auto`` order, with its devices or why it has
    none."""
    return [describe(t) for t in registry.auto_order() if t.loader is not None]
