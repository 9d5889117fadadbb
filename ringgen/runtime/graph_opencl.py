"""The OpenCL half of a fused graph (``graph_device.py``): the persistent and relaunch transports
with the fused graph's source and ``abi.opencl``, handed over by ``ringgen.jit`` (which emits them)
rather than read from the package's ``.cl`` and ``manifest.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

import numpy as np

from ..errors import BackendUnavailableError
from ..protocol import CONTROL_SIZE
from .opencl import OpenclPersistentKernel, OpenclRelaunchKernel
from .opencl.build import build_program, select_device

__all__ = ["FusedOpenclPersistent", "FusedOpenclRelaunch", "open_fused"]


class _FusedSource:
    """Replaces where an OpenCL transport reads its source and ABI (a mixin before the transport);
    ``open_fused`` sets ``fused_source``, ``fused_abi`` and ``fused_counters`` on a subclass per
    launch. The graph's counters (``ringgen.graph_fusion.GraphCounters``, ``fused_counters`` words) follow
    the control block in its allocation, where the handler finds them from its ``rg_stop``;
    ``graph_counts()`` reads them."""

    fused_source: ClassVar[str] = ""
    fused_abi: ClassVar[Mapping[str, Any]] = {}
    fused_counters: ClassVar[int] = 0
    _counts_last: Optional[np.ndarray] = None

    def _counts_bytes(self) -> int:
        return CONTROL_SIZE + 8 * self.fused_counters

    def _abi(self) -> dict:
        return dict(self.fused_abi)

    def _source_path(self) -> Path:
        # Named in messages only: the text is in memory.
        return Path(self.package_dir) / "graphs" / f"{self.name}.cl"

    def _build(self):
        if self._abi()["uses_now"]:
            raise BackendUnavailableError(
                f"kernel {self.name}: a stage calls rg.now(), which OpenCL C cannot provide",
                hint="run this graph with backend='cuda', or drop rg.now()",
            )
        options = (f"-cl-std={self.cl_std}", f"-DRG_GROUP_SIZE={self.group_size}")
        return build_program(
            self.fused_source, options, self.device_info, what=f"<fused graph {self.name}>"
        )


class FusedOpenclPersistent(_FusedSource, OpenclPersistentKernel):
    """A graph fused into one persistent OpenCL kernel; its counters are in the control block's SVM
    allocation, which the host reads as it reads the control block."""

    _counts: Optional[np.ndarray] = None

    def _svm(self, nbytes: int) -> np.ndarray:
        # The first allocation of a launch is the control block: grown by the counters.
        if self._counts is not None or nbytes != CONTROL_SIZE:
            return super()._svm(nbytes)
        whole = super()._svm(self._counts_bytes())
        self._counts = whole[CONTROL_SIZE:].view(np.uint64)
        return whole[:CONTROL_SIZE]

    def graph_counts(self) -> np.ndarray:
        """The graph's counters now (a copy); the last ones once the kernel's memory is freed."""
        if self._counts is None:
            return np.zeros(self.fused_counters, np.uint64)
        return self._counts.copy()

    def _release(self) -> None:
        counts = self.graph_counts()
        self._counts = None
        super()._release()
        self._counts = counts  # a plain array now: the SVM is gone


class FusedOpenclRelaunch(_FusedSource, OpenclRelaunchKernel):
    """A graph fused into one OpenCL kernel, relaunched per batch; its counters stay in the control
    block's device buffer between launches and are copied out when read."""

    def _launch(self) -> None:
        import pyopencl as cl

        super()._launch()
        whole = np.zeros(self._counts_bytes(), np.uint8)
        whole[:CONTROL_SIZE] = self._ctl_host.view(np.uint8)
        grown = cl.Buffer(
            self._ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=whole
        )
        self._ctl_buf.release()
        self._ctl_buf = grown
        self._counts_last = np.zeros(self.fused_counters, np.uint64)

    def graph_counts(self) -> np.ndarray:
        """The graph's counters after the launches finished so far (a copy)."""
        import pyopencl as cl

        with self._lock:
            if getattr(self, "_ctl_buf", None) is not None and self.fused_counters:
                self._reap()
                counts = np.empty(self.fused_counters, np.uint64)
                cl.enqueue_copy(
                    self._queue, counts, self._ctl_buf, src_offset=CONTROL_SIZE, is_blocking=True
                )
                self._counts_last = counts
            return self._counts_last.copy()

    def _release(self) -> None:
        if getattr(self, "_ctl_buf", None) is not None:
            self.graph_counts()
        super()._release()


_FUSED = {"persistent": FusedOpenclPersistent, "relaunch": FusedOpenclRelaunch}


def open_fused(
    spec: Any,
    package_dir: Optional[str],
    *,
    source: str,
    abi: Mapping[str, Any],
    counters: int,
    **options: Any,
):
    """Launch the fused kernel ``spec`` from ``source`` and ``abi`` on OpenCL: ``mode`` and
    ``device`` as ``OpenclKernel.open`` takes them (persistent where the device supports it), the
    other options the transport's; its source counts in ``counters`` words
    (``ringgen.graph_fusion.GraphCounters.total``).

    Raises:
        ValueError: an unknown ``mode``.
        BackendUnavailableError: ``mode="persistent"`` on a device that cannot run it.
    """
    mode = options.pop("mode", None)
    info = select_device(options.pop("device", None))
    if mode is None:
        mode = "persistent" if info.persistent else "relaunch"
    if mode not in _FUSED:
        raise ValueError(
            f"kernel {spec.name}: mode must be one of {', '.join(_FUSED)} or None, got {mode!r}"
        )
    if mode == "persistent" and not info.persistent:
        raise BackendUnavailableError(
            f"kernel {spec.name}: OpenCL device {info.label} cannot run persistent kernels",
            hint="launch with mode='relaunch' (or mode=None to choose automatically)",
        )
    cls = type(
        _FUSED[mode].__name__,
        (_FUSED[mode],),
        {
            "fused_source": source,
            "fused_abi": dict(abi),
            "fused_counters": counters,
            "__module__": __name__,
        },
    )
    return cls.open(spec, package_dir, device_info=info, **options)
