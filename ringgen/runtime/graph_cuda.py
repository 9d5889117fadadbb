"""The CUDA half of a fused graph (``graph_device.py``): a ``CudaKernelHandle`` whose source and
``abi.cuda`` are the fused graph's, handed over by ``ringgen.jit`` (which emits them) rather than
read from the package's ``<name>.cu`` and ``manifest.json`` (the package holds the stages' codecs).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Mapping, Optional

import numpy as np

from .cuda import CudaKernelHandle
from .cuda import device as cuda_device

__all__ = ["FusedCudaKernel", "TRACE_DEFINE", "TRACE_WORDS", "open_fused"]

log = logging.getLogger(__name__)

#: The define that builds the atomic_queue grid with its hop trace (``rg_aq_trace``,
#: templates/graph/atomic_queue.cu.j2), and the trace's words: 64 stages of 8.
TRACE_DEFINE = "RG_AQ_TRACE"
TRACE_WORDS = 64 * 8


class FusedCudaKernel(CudaKernelHandle):
    """A graph fused into one resident CUDA grid (the ``shared_memory`` strategy).

    ``open_fused`` makes a subclass per launch whose ``fused_source`` (the ``.cu`` text) and
    ``fused_abi`` (its ``abi.cuda``, from ``ringgen.codegen.graph_kernel``) are set; the launch
    options are ``CudaKernelHandle``'s.

    ``graph_counts()`` reads the graph's counters (``ringgen.graph_fusion.GraphCounters``: the module's
    ``__device__`` array ``rg_graph_counts``, ``fused_counters`` words) while the grid runs.
    ``hop_trace()`` reads the atomic_queue grid's hop trace when it was built with
    ``defines=["RG_AQ_TRACE"]`` (a diagnostic: bench/graph.py's ``trace`` variant).
    """

    fused_source: ClassVar[str] = ""
    fused_abi: ClassVar[Mapping[str, Any]] = {}
    fused_counters: ClassVar[int] = 0
    # the hop trace's device array and last words (set by a launch with TRACE_DEFINE)
    _trace_dev: Any = None
    _trace_last: Optional[np.ndarray] = None

    def _launch_on_device(self, drv: Any) -> None:
        # Pinned before the launch (pinning while a grid is resident can hang the driver).
        self._counts_host = drv.pagelocked_zeros(max(1, self.fused_counters), np.uint64)
        self._counts_last = np.zeros(self.fused_counters, np.uint64)
        self._counts_dev = None
        tracing = TRACE_DEFINE in self._defines
        self._trace_host = drv.pagelocked_zeros(TRACE_WORDS, np.uint64) if tracing else None
        self._trace_dev = None
        self._trace_last = None
        super()._launch_on_device(drv)
        self._pinned.append(self._counts_host)
        self._counts_dev, _ = self._module.get_global("rg_graph_counts")
        # A module is loaded once per process, so its array still holds an earlier launch's counts:
        # those are the base. Read now, while no message can have arrived (open() has not returned).
        self._counts_base = self._copy_counts().copy()
        if self._trace_host is not None:
            self._pinned.append(self._trace_host)
            try:
                self._trace_dev, size = self._module.get_global("rg_aq_trace")
            except Exception as exc:  # a source without the trace (the shared_memory strategy)
                if not cuda_device.is_driver_error(exc):
                    raise
                log.warning(
                    "kernel %s: %s given, but its source has no hop trace", self.name, TRACE_DEFINE
                )
                return
            if size != self._trace_host.nbytes:  # a diagnostic: never worth failing a launch
                log.warning(
                    "kernel %s: its rg_aq_trace holds %d bytes, not %d: no hop trace",
                    self.name,
                    size,
                    self._trace_host.nbytes,
                )
                self._trace_dev = None
                return
            self._trace_base = self._copy_trace().copy()

    def _copy_counts(self) -> np.ndarray:
        drv = cuda_device._drv()
        cuda_device.context(self.device)
        drv.memcpy_dtoh_async(self._counts_host, self._counts_dev, stream=self._copy_stream)
        self._copy_stream.synchronize()
        return self._counts_host[: self.fused_counters]

    def graph_counts(self) -> np.ndarray:
        """The graph's counters now (a copy); the last ones read once the grid is gone or its
        context lost."""
        if self._counts_dev is None or self._module is None or self._context_lost():
            return self._counts_last.copy()
        try:
            self._counts_last = self._copy_counts() - self._counts_base
        except Exception as exc:
            self._driver_failed(exc, "reading its graph counters")
        return self._counts_last.copy()

    def _copy_trace(self) -> np.ndarray:
        drv = cuda_device._drv()
        cuda_device.context(self.device)
        drv.memcpy_dtoh_async(self._trace_host, self._trace_dev, stream=self._copy_stream)
        self._copy_stream.synchronize()
        return self._trace_host

    def hop_trace(self) -> Optional[np.ndarray]:
        """The hop trace's ``TRACE_WORDS`` words since this launch (a copy; the last ones read once
        the grid is gone), or None when the grid was built without ``RG_AQ_TRACE``."""
        if self._trace_dev is None:
            return None
        if self._module is not None and not self._context_lost():
            try:
                self._trace_last = self._copy_trace() - self._trace_base
            except Exception as exc:
                self._driver_failed(exc, "reading its hop trace")
        return None if self._trace_last is None else self._trace_last.copy()

    def _free(self) -> None:
        self.graph_counts()  # the final counts, before the memory goes
        if self._trace_dev is not None:
            self.hop_trace()
        super()._free()

    def _read_source(self) -> tuple[str, str]:
        return self.fused_source, f"<fused graph {self.name}>"

    def _abi(self) -> dict:
        return dict(self.fused_abi)


def open_fused(
    spec: Any,
    package_dir: Optional[str],
    *,
    source: str,
    abi: Mapping[str, Any],
    counters: int,
    **options: Any,
) -> CudaKernelHandle:
    """Launch the fused kernel ``spec`` (``ringgen.graph_fusion.fused_spec``) from ``source`` and ``abi``
    with the CUDA launch options (``CudaKernelHandle``), and wait until it is ACTIVE; its source
    counts in ``counters`` words (``ringgen.graph_fusion.GraphCounters.total``)."""
    cls = type(
        "FusedCudaKernel",
        (FusedCudaKernel,),
        {
            "fused_source": source,
            "fused_abi": dict(abi),
            "fused_counters": counters,
            "__module__": __name__,
        },
    )
    return cls.open(spec, package_dir, **options)
