"""IR constants of Python and numpy scalars (shared by expression and call lowering)."""

from __future__ import annotations

import numpy as np

from ..types import SCALARS
from . import ir
from .typesys import BOOL, WEAK_FLOAT, WEAK_INT, Scalar


def const_of(value) -> ir.Const:
    """The IR constant for a Python or numpy scalar."""
    if isinstance(value, (bool, np.bool_)):
        return ir.Const(bool(value), BOOL)
    if isinstance(value, int):
        return ir.Const(value, WEAK_INT)
    if isinstance(value, float):
        return ir.Const(value, WEAK_FLOAT)
    for t in SCALARS.values():
        if type(value) is t.np_type:
            return ir.Const(value.item(), Scalar(t))
    raise TypeError(value)
