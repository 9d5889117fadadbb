"""Barrier storage of OpenCL persistent kernels (docs/barriers.md).

OpenCL has no program-scope storage that every kernel of a process shares (PoCL none at all), so a
kernel that waits on barriers takes each one's words as an argument of its persistent entry point:
one fine-grained SVM allocation with atomics per barrier name and context, made on first use, kept
for the life of the process and passed to every kernel of the process that waits on that barrier.
The host sees the same words (``ringgen.barriers.BARRIER_DTYPE``), so ``Barrier.reset()`` and
``Barrier.broken`` reach them as they reach the ``c`` backend's shared words.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ...barriers import BARRIER_DTYPE, register_words
from ...protocol import CACHE_LINE

__all__ = ["barrier_words"]

#: (id of the context, barrier name) -> (the context, the SVM words): the context is held so that
#: its id is never reused while the words live.
_WORDS: dict[tuple[int, str], tuple[Any, np.ndarray]] = {}
_LOCK = threading.Lock()


def barrier_words(ctx: Any, name: str) -> np.ndarray:
    """The SVM words of barrier ``name`` in ``ctx`` as bytes (one ``BARRIER_DTYPE`` record, zeroed
    when made; pass it as ``cl.SVM``), shared by every persistent kernel of the process that waits
    on it.

    Raises:
        MemoryError: the SVM allocation failed.
    """
    import pyopencl as cl

    with _LOCK:
        entry = _WORDS.get((id(ctx), name))
        if entry is not None:
            return entry[1]
        flags = (
            cl.svm_mem_flags.READ_WRITE
            | cl.svm_mem_flags.SVM_FINE_GRAIN_BUFFER
            | cl.svm_mem_flags.SVM_ATOMICS
        )
        try:
            raw = cl.svm_empty(ctx, flags, BARRIER_DTYPE.itemsize, np.uint8, alignment=CACHE_LINE)
        except (RuntimeError, cl.Error) as exc:
            raise MemoryError(
                f"barrier {name!r}: clSVMAlloc of {BARRIER_DTYPE.itemsize} bytes failed ({exc})"
            ) from None
        raw[:] = 0
        _WORDS[(id(ctx), name)] = (ctx, raw)
        register_words(name, raw.view(BARRIER_DTYPE))
        return raw
