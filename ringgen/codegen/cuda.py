"""The CUDA emitter: ``<name>.cu``, every ring kernel of a build as CUDA C++ for nvcc (sm_90).

The source is, in order: the ``<name>_types.h`` header included textually, the CUDA prelude
(``dialect_cuda``), the shared queue protocol (``templates/common/ring.h.j2``), the device codec of
bridged messages (``bridged_c``: validate, decode, encode), the CUDA scheduler structs, each kernel's
outbox, the handler bodies (``ringgen.codegen.body``, identical for every target), then per kernel one
resident skeleton around the same handler (``templates/cuda/kernel.cu.j2``). The loader
(``ringgen.runtime.cuda``) compiles it with nvcc, caches the cubin and launches ``rg_<kernel>_ring``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .. import __version__, protocol
from ..errors import BuildError
from ..kernel import KernelSpec
from ..layout import layout_of
from ..protocol import OUTBOX_LIMIT
from .dialect_cuda import CUDA_DIALECT, CudaDialect
from .env import render
from .kernel_context import kernel_context as shared_kernel_context
from .protocol_c import render_ring_h

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = [
    "BLOCK",
    "ITEMS",
    "OUTBOX_LIMIT",
    "SCHED_BYTES",
    "SIDE_BYTES",
    "emit",
    "entry_point",
    "kernel_context",
    "render_source",
    "slot_stride",
    "source_name",
]

#: Threads per block and messages per thread per wave; a worker claims BLOCK * ITEMS sequence numbers.
BLOCK = 256
ITEMS = 4
#: Replies an Outbox handler may emit per message (the same bound as the OpenCL target).
#: sizeof(rg_sched) and sizeof(rg_cuda_side) in the template; static assertions keep them honest.
SCHED_BYTES = 6 * protocol.CACHE_LINE
SIDE_BYTES = protocol.CACHE_LINE


def source_name(unit: "BuildUnit") -> str:
    """The emitted file's name: ``<name>.cu``."""
    return f"{unit.name}.cu"


def entry_point(kernel: str) -> str:
    """The ``extern "C"`` name of a ring kernel's resident grid."""
    return f"rg_{kernel}_ring"


def slot_stride(slot_size: int) -> int:
    """Bytes between two slots of a bridged ring: the slot size rounded up to 16, so that every slot
    starts 16-byte aligned and the kernel moves it with whole 16-byte loads and stores (a slot is
    ``256 + max_payload`` bytes, usually odd; PCIe writes of partial words cost several times full
    ones)."""
    return (slot_size + 15) // 16 * 16


def kernel_context(spec: KernelSpec) -> dict:
    """What the skeleton template needs to know about one ring kernel.

    A bridged queue's ring is bytes: slot ``i`` starts at ``i * stride`` (``slot_stride``) and holds
    the 256-byte header and the payload (``layout_of(cls).slot_size`` bytes at most); the kernel
    decodes it into the view struct before the handler runs and encodes a bridged reply from it.
    """
    ctx = shared_kernel_context(spec)
    lin = layout_of(spec.input)
    ctx["in_stride"] = slot_stride(lin.slot_size) if lin.is_bridged else lin.size
    ctx["out_stride"] = slot_stride(ctx["out_slot_size"]) if ctx["out_bridged"] else 0
    return ctx


def render_source(
    unit: "BuildUnit",
    *,
    header: str,
    body: str,
    codec: str = "",
    dialect: Optional[CudaDialect] = None,
) -> str:
    """The ``.cu`` text for ``unit`` around a given header and handler body (pure; no disk access).

    Args:
        unit: the build (its name, module, fingerprint and kernels are read).
        header: the text of ``<name>_types.h``.
        body: the handler text from ``ringgen.codegen.body.emit_body(unit)``.
        codec: the device codec of the build's bridged messages
            (``ringgen.codegen.bridged_c.emit_device_codec``), "" when it has none.
        dialect: the CUDA dialect (default: sm_90).
    """
    dialect = dialect or CUDA_DIALECT
    return render(
        "cuda/kernel.cu.j2",
        unit_name=unit.name,
        module=unit.module,
        version=__version__,
        fingerprint=unit.fingerprint,
        prelude=dialect.prelude(),
        header=header,
        ring_h=render_ring_h(),
        codec=codec,
        body=body,
        block=BLOCK,
        items=ITEMS,
        sched_bytes=SCHED_BYTES,
        side_bytes=SIDE_BYTES,
        kernels=[kernel_context(k) for k in unit.kernels],
    )


def emit(unit: "BuildUnit") -> dict[str, str]:
    """The CUDA target: ``{"<name>.cu": text}``.

    Raises:
        BuildError: the handler body emitter is missing (a broken installation).
    """
    try:
        from .body import emit_body
    except ImportError as exc:  # pragma: no cover - only in a partial checkout
        raise BuildError(f"the CUDA target needs ringgen.codegen.body: {exc}") from exc
    from .bridged_c import emit_device_codec
    from .header import render_header

    text = render_source(
        unit, header=render_header(unit), body=emit_body(unit), codec=emit_device_codec(unit)
    )
    return {source_name(unit): text}
