"""What every kernel skeleton template reads about one ring kernel, computed once for all backends.

Backends add only what is theirs (CUDA: slot strides; the C driver: ``void`` for a missing output;
Metal: the per-message output bound, the queue capacity and mask). Every C-family skeleton, Metal's
included, reads these keys under these names, and ``templates/common/outbox.c.j2`` reads ``name`` and
``out_type`` for the Outbox they all share.
"""

from __future__ import annotations

from ..kernel import KernelSpec
from ..layout import layout_of

__all__ = ["kernel_context"]


def kernel_context(spec: KernelSpec) -> dict:
    """The queue-level facts of ``spec``: message types, slot types and sizes, state, output bound.

    A bridged queue's slots are bytes (header + payload: ``rg_u8``); a direct one's are the struct
    itself. A kernel without output uses ``rg_none`` as its output type.
    """
    out_cls = spec.outbox or spec.output
    lin = layout_of(spec.input)
    lout = layout_of(out_cls) if out_cls is not None else None
    out_bridged = lout is not None and lout.is_bridged
    return {
        "name": spec.name,
        "in_type": lin.name,
        "in_bridged": lin.is_bridged,
        "in_ring_type": "rg_u8" if lin.is_bridged else lin.name,
        "in_slot_size": lin.slot_size,
        "in_type_id": lin.type_id,
        "out_type": lout.name if lout is not None else "rg_none",
        "out_bridged": out_bridged,
        "out_ring_type": "rg_u8" if out_bridged else (lout.name if lout else "rg_none"),
        "out_slot_size": lout.slot_size if lout is not None else 1,
        "has_output": out_cls is not None,
        "state_type": layout_of(spec.state).name if spec.state is not None else "void",
        "uses_outbox": spec.uses_outbox,
        "limit": spec.outbox_limit,
        "ordered": spec.ordered,
    }
