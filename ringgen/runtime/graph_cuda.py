"""The CUDA half of a fused graph (``graph_device.py``): a ``CudaKernelHandle`` whose source and
``abi.cuda`` are the fused graph's, handed over by ``ringgen.jit`` (which emits them) rather than
read from the package's ``<name>.cu`` and ``manifest.json`` (the package holds the stages' codecs).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Optional

from .cuda import CudaKernelHandle

__all__ = ["FusedCudaKernel", "open_fused"]


class FusedCudaKernel(CudaKernelHandle):
    """A graph fused into one resident CUDA grid (the ``shared_memory`` strategy).

    ``open_fused`` makes a subclass per launch whose ``fused_source`` (the ``.cu`` text) and
    ``fused_abi`` (its ``abi.cuda``, from ``ringgen.codegen.graph_kernel``) are set; the launch
    options are ``CudaKernelHandle``'s.
    """

    fused_source: ClassVar[str] = ""
    fused_abi: ClassVar[Mapping[str, Any]] = {}

    def _read_source(self) -> tuple[str, str]:
        return self.fused_source, f"<fused graph {self.name}>"

    def _abi(self) -> dict:
        return dict(self.fused_abi)


def open_fused(
    spec: Any, package_dir: Optional[str], *, source: str, abi: Mapping[str, Any], **options: Any
) -> CudaKernelHandle:
    """Launch the fused kernel ``spec`` (``ringgen.graphs.fused_spec``) from ``source`` and ``abi``
    with the CUDA launch options (``CudaKernelHandle``), and wait until it is ACTIVE."""
    cls = type(
        "FusedCudaKernel",
        (FusedCudaKernel,),
        {"fused_source": source, "fused_abi": dict(abi), "__module__": __name__},
    )
    return cls.open(spec, package_dir, **options)
