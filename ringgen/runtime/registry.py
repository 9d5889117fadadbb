"""The kernels this process is running: what ``rg.serve_metrics`` and ``ringgen top`` report.

``KernelHandle.open`` registers every handle it launches; the registry holds them weakly, so it
never keeps a handle (or its device memory) alive, and ``live_kernels`` leaves out a handle that has
been terminated (released) or collected. Each handle gets an instance id, unique in the process, so
two launches of one kernel are told apart in metric labels.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any

__all__ = ["instance_id", "live_kernels", "register"]

_lock = threading.Lock()
_ids: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()
_next_id = itertools.count(1)


def register(handle: Any) -> int:
    """Add a launched ``KernelHandle``; returns its instance id (the same id if already added)."""
    with _lock:
        known = _ids.get(handle)
        if known is None:
            known = _ids[handle] = next(_next_id)
        return known


def instance_id(handle: Any) -> int:
    """The instance id ``register`` gave ``handle``.

    Raises:
        KeyError: ``handle`` was never registered.
    """
    with _lock:
        return _ids[handle]


def live_kernels() -> list[Any]:
    """The registered handles not yet terminated, in launch order."""
    with _lock:
        pairs = list(_ids.items())
    return [h for h, _ in sorted(pairs, key=lambda p: p[1]) if not h._released]
