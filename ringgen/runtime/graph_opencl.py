"""The OpenCL half of a fused graph (``graph_device.py``): the persistent and relaunch transports
with the fused graph's source and ``abi.opencl``, handed over by ``ringgen.jit`` (which emits them)
rather than read from the package's ``.cl`` and ``manifest.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

from ..errors import BackendUnavailableError
from .opencl import OpenclPersistentKernel, OpenclRelaunchKernel
from .opencl.build import build_program, select_device

__all__ = ["FusedOpenclPersistent", "FusedOpenclRelaunch", "open_fused"]


class _FusedSource:
    """Replaces where an OpenCL transport reads its source and ABI (a mixin before the transport);
    ``open_fused`` sets ``fused_source`` and ``fused_abi`` on a subclass per launch."""

    fused_source: ClassVar[str] = ""
    fused_abi: ClassVar[Mapping[str, Any]] = {}

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
    """A graph fused into one persistent OpenCL kernel."""


class FusedOpenclRelaunch(_FusedSource, OpenclRelaunchKernel):
    """A graph fused into one OpenCL kernel, relaunched per batch."""


_FUSED = {"persistent": FusedOpenclPersistent, "relaunch": FusedOpenclRelaunch}


def open_fused(
    spec: Any, package_dir: Optional[str], *, source: str, abi: Mapping[str, Any], **options: Any
):
    """Launch the fused kernel ``spec`` from ``source`` and ``abi`` on OpenCL: ``mode`` and
    ``device`` as ``OpenclKernel.open`` takes them (persistent where the device supports it), the
    other options the transport's.

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
        {"fused_source": source, "fused_abi": dict(abi), "__module__": __name__},
    )
    return cls.open(spec, package_dir, device_info=info, **options)
