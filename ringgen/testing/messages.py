"""Random messages with boundary values, as numpy records of a message's view dtype.

``random_messages(cls, n, seed)`` fills every leaf field of ``n`` records: integers from their
type's boundaries (min, max, 0, -1, 1), small values (so that indexes and loop bounds land in range
as often as out of it) and the whole range; floats around zero over many magnitudes with 0, -0.0,
±1, the extremes and, when ``special`` is set, NaN and ±inf; ``Str`` fields empty, full or in
between, with multi-byte UTF-8; ``List`` fields of every length up to their bound. An ``id`` field
numbers the records 0..n-1 so outputs can be matched to their input.
"""

from __future__ import annotations

import numpy as np

from ..layout import layout_of
from ..schema import spec_of
from ..types import ArrayType, ListType, MessageType, ScalarType, StrType

__all__ = ["fill", "random_messages"]

#: UTF-8 text for Str fields: ASCII prefixes of one another (so == and startswith hit) and
#: multi-byte characters (2, 3 and 4 bytes).
_TEXTS = ("a", "ab", "abc", "ring", "héllo", "ünï ✓", "日本語", "😀x")


def _ints(t: ScalarType, shape, rng: np.random.Generator) -> np.ndarray:
    info = np.iinfo(t.np_type)
    edges = [info.min, info.max, 0, 1, info.max - 1] + ([-1, info.min + 1] if t.is_signed else [])
    edge = rng.choice(np.array(edges, dtype=object), size=shape).astype(t.np_type)
    small = rng.integers(-8 if t.is_signed else 0, 9, size=shape).astype(t.np_type)
    big = rng.integers(info.min, info.max, size=shape, dtype=t.np_type, endpoint=True)
    pick = rng.random(size=shape)
    return np.where(pick < 0.25, edge, np.where(pick < 0.6, small, big))


def _floats(t: ScalarType, shape, rng: np.random.Generator, special: bool) -> np.ndarray:
    info = np.finfo(t.np_type)
    edges = [0.0, -0.0, 1.0, -1.0, 0.5, float(info.max), -float(info.max), float(info.tiny)]
    if special:
        edges += [np.inf, -np.inf, np.nan]
    scale = 10.0 ** rng.integers(-3, 7, size=shape)
    vals = (rng.standard_normal(size=shape) * scale).astype(t.np_type)
    small = rng.integers(-8, 9, size=shape).astype(t.np_type)
    edge = np.array(edges, dtype=t.np_type)[rng.integers(0, len(edges), size=shape)]
    pick = rng.random(size=shape)
    return np.where(pick < 0.15, edge, np.where(pick < 0.4, small, vals)).astype(t.np_type)


def _text(max_bytes: int, rng: np.random.Generator) -> bytes:
    """UTF-8 text of at most ``max_bytes`` bytes, never cut inside a character."""
    pick = rng.random()
    if pick < 0.2:
        return b""
    if pick < 0.4:  # exactly full: ASCII padding after a multi-byte start when it fits
        head = _TEXTS[rng.integers(len(_TEXTS))].encode()
        head = head if len(head) <= max_bytes else b""
        return head + b"z" * (max_bytes - len(head))
    word = _TEXTS[rng.integers(len(_TEXTS))]
    while len(word.encode()) > max_bytes:
        word = word[:-1]
    return word.encode()


def fill(arr: np.ndarray, t, rng: np.random.Generator, special: bool = True) -> None:
    """Fill ``arr`` (any shape, elements of ringgen type ``t``) with random boundary-rich values.

    Args:
        arr: a view of the records' field (``records[name]``) to write into.
        t: the field's ringgen type (``ScalarType``, ``ArrayType``, ``MessageType``, ...).
        rng: the random generator.
        special: also NaN and infinities in float fields.
    """
    if isinstance(t, ScalarType):
        if t.kind == "bool":
            arr[...] = rng.integers(0, 2, size=arr.shape).astype(bool)
        elif t.is_float:
            arr[...] = _floats(t, arr.shape, rng, special)
        else:
            arr[...] = _ints(t, arr.shape, rng)
    elif isinstance(t, ArrayType):
        fill(arr, t.elem, rng, special)
    elif isinstance(t, MessageType):
        for f in spec_of(t.cls).fields:
            fill(arr[f.name], f.type, rng, special)
    elif isinstance(t, StrType):
        flat = arr.reshape(-1)
        for k in range(flat.shape[0]):
            data = _text(t.max_bytes, rng)
            flat[k]["len"] = len(data)
            flat[k]["data"][: len(data)] = np.frombuffer(data, dtype=np.uint8)
    elif isinstance(t, ListType):
        flat = arr.reshape(-1)
        for k in range(flat.shape[0]):
            pick = rng.random()
            n = (
                0
                if pick < 0.15
                else t.max_len if pick < 0.35 else int(rng.integers(0, t.max_len + 1))
            )
            flat[k]["len"] = n
            fill(flat[k : k + 1]["items"][:, :n], t.elem, rng, special)
    else:
        raise TypeError(f"cannot fill a field of type {t!r}")


def random_messages(cls: type, n: int, seed: int, *, special: bool = True) -> np.ndarray:
    """``n`` random records of message ``cls`` (its view dtype), ``id`` numbered 0..n-1 if present.

    Args:
        cls: an ``@rg.message`` class.
        n: how many records.
        seed: the numpy seed (the same seed gives the same records).
        special: also NaN and infinities in float fields.
    """
    rng = np.random.default_rng(seed)
    arr = np.zeros(n, dtype=layout_of(cls).dtype)
    for f in spec_of(cls).fields:
        fill(arr[f.name], f.type, rng, special)
    if "id" in (arr.dtype.names or ()):
        arr["id"] = np.arange(n)
    return arr
