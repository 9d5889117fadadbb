"""Which field shapes have a columnar spelling, and the data bytes of a direct struct: shared by the
columnar encoder (``columnar.py``) and the native one (``native.py``), neither importing the other.
"""

from __future__ import annotations

import numpy as np

from ..layout import MessageLayout, layout_of
from ..types import ArrayType, ListType, MessageType, ScalarType, StrType


def _columnar_ok(t) -> bool:
    if isinstance(t, ScalarType):
        return True
    if isinstance(t, ArrayType):
        return isinstance(t.elem, ScalarType)
    if isinstance(t, MessageType):
        return not layout_of(t.cls).is_bridged
    if isinstance(t, StrType):
        return True
    if isinstance(t, ListType):
        e = t.elem
        return isinstance(e, ScalarType) or (
            isinstance(e, MessageType) and not layout_of(e.cls).is_bridged
        )
    return False


def _padding_mask(lay: MessageLayout) -> np.ndarray:
    """1 for every data byte of a direct struct, 0 for padding (MemoryPack writes padding as zeros)."""
    mask = np.zeros(lay.size, dtype=np.uint8)
    for f in lay.fields:
        if isinstance(f.type, MessageType):
            mask[f.offset : f.offset + f.size] = (
                _padding_mask(layout_of(f.type.cls))[: f.size]
                if not isinstance(f.type, ArrayType)
                else 1
            )
        else:
            mask[f.offset : f.offset + f.size] = 1
    return mask
