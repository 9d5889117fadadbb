"""What generated ``serializers.py`` modules import: the codec base class and their helpers.

A generated ``serializers.py`` subclasses ``DirectCodec`` once per direct message, filling in the
message's dtype, its ``struct`` format and four small functions specialised to its fields (flatten to
and rebuild from a flat tuple, to and from a numpy row); ``flatten``, ``nest`` and ``map_nested`` are
the helpers those functions call. ``DirectCodec`` itself is ``ringgen.wire.direct_codec``'s (one
implementation for built packages and for ``rg.encode``/``rg.decode``), named here for the packages
that import it from this module. ``UnavailableCodec`` stands in for a bridged codec a package lacks;
``verify_layouts`` checks a package against the classes it was generated from.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .errors import BuildError, RinggenError
from .layout import layout_of
from .wire.direct_codec import DirectCodec

__all__ = [
    "DirectCodec",
    "UnavailableCodec",
    "flatten",
    "map_nested",
    "nest",
    "verify_layouts",
]


def flatten(value: Any, depth: int, leaf: Callable[[Any], Sequence] | None = None) -> list:
    """Flatten ``depth`` levels of nested sequences; ``leaf`` (if given) flattens each element.

    ``flatten([[1, 2], [3, 4]], 2) == [1, 2, 3, 4]``; with ``leaf`` each innermost element is
    replaced by the items of ``leaf(element)`` (a nested message's flat tuple).
    """
    items = list(value)
    for _ in range(depth - 1):
        items = [x for sub in items for x in sub]
    if leaf is not None:
        items = [x for e in items for x in leaf(e)]
    return items


def nest(flat: Sequence, dims: Sequence[int]) -> list:
    """Rebuild nested lists of shape ``dims`` from a flat sequence (row-major, as C stores them)."""
    items = list(flat)
    for d in reversed(dims[1:]):
        items = [items[i : i + d] for i in range(0, len(items), d)]
    return items


def map_nested(func: Callable[[Any], Any], value: Any, depth: int) -> list:
    """Apply ``func`` to every element ``depth`` levels down, keeping the nesting (as lists)."""
    if depth == 0:
        return func(value)
    return [map_nested(func, v, depth - 1) for v in value]


class UnavailableCodec:
    """The codec of a bridged message whose wire codec is not part of this build.

    Creating it costs nothing, so a package whose bridged codecs are missing still imports and its
    direct messages still work; using it raises a clear error naming the message.
    """

    bridged = True

    def __init__(self, cls: type, dtype: np.dtype, slot_size: int, reason: str) -> None:
        self.cls = cls
        self.dtype = dtype
        self.slot_size = slot_size
        self.reason = reason

    @property
    def name(self) -> str:
        return self.cls.__name__

    def __repr__(self) -> str:
        return f"<UnavailableCodec {self.name}: {self.reason}>"

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise RinggenError(
            f"no wire codec for bridged message {self.name}: {self.reason}",
            hint="rebuild the package with a ringgen that includes ringgen.wire",
        )

    pack = pack_into = unpack = to_array = from_array = pack_array = unpack_array = _fail


def verify_layouts(codecs: dict, package: str) -> None:
    """Check that every codec still matches its class's layout (the user may have edited the class).

    Raises:
        BuildError: a class's layout differs from the one the package was generated from.
    """
    for name, codec in codecs.items():
        lay = layout_of(codec.cls)
        if lay.dtype != codec.dtype or lay.slot_size != codec.slot_size:
            raise BuildError(
                f"{package}: message {name} has changed since this package was generated "
                f"(generated {codec.slot_size}-byte slot, now {lay.slot_size})",
                hint="rebuild the package with `ringgen build`",
            )
