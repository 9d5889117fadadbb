"""Numpy-typed messages and state for the reference backend: ``Record``.

A ``Record`` holds one message (or state) in a 1-element numpy structured array of the class's view
dtype (``layout_of(cls).dtype``), so its bytes are exactly what a device sees. Reading a field gives
a numpy scalar (so arithmetic wraps and rounds like C), a writable view of an Array, a ``RgStr`` for a
``Str`` and a view of the live items of a ``List``; writing a field converts like a C store (integers
wrap). ``new_state``, ``to_numpy_message`` and ``to_object`` are shared by the reference backend and
the differential tests.
"""

from __future__ import annotations

import operator
from typing import Any

import attrs
import numpy as np

from ..layout import array_dims, layout_of
from ..protocol import Reason
from ..schema import is_message_class, spec_of
from ..types import ArrayType, ListType, MessageType, ScalarType, StrType, cast_scalar

__all__ = [
    "HandlerFault",
    "ListView",
    "Record",
    "RgStr",
    "new_state",
    "to_numpy_message",
    "to_object",
]


class HandlerFault(Exception):
    """Raised by a reference handler for a fault the device would count (index out of range,
    integer division by zero, a value out of range, too many emits); ``reason`` is a ``Reason``."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason = Reason(reason)
        super().__init__(f"{self.reason.name}{': ' + detail if detail else ''}")


class RgStr(str):
    """A ``Str`` field's value: a ``str`` whose ``len`` is its UTF-8 byte count, as on the device."""

    def __len__(self) -> int:
        return len(self.encode("utf-8"))


class ListView:
    """A ``List`` field's live items: ``len``, indexing (negative counts from the end, past the
    end raises ``IndexError``), iteration, ``append`` (``HandlerFault`` when full) and ``__array__``.
    """

    __slots__ = ("_col", "_type")

    def __init__(self, col: np.ndarray, t: ListType) -> None:
        self._col = col
        self._type = t

    def __len__(self) -> int:
        return int(self._col["len"][0])

    def _item(self, i: int) -> Any:
        items = self._col["items"][0]
        if isinstance(self._type.elem, MessageType):
            return Record(self._type.elem.cls, items[i : i + 1])
        return items[i]

    def __getitem__(self, index: Any) -> Any:
        n = len(self)
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"List index {int(index)} out of range (length {n})")
        return self._item(i)

    def __iter__(self):
        for i in range(len(self)):
            yield self._item(i)

    def append(self, value: Any) -> None:
        n = len(self)
        if n >= self._type.max_len:
            raise HandlerFault(
                Reason.RANGE_ERROR, f"append to a full List[..., {self._type.max_len}]"
            )
        items = self._col["items"][0]
        if isinstance(self._type.elem, MessageType):
            rec = value if isinstance(value, Record) else to_numpy_message(value)
            items[n] = rec.array[0]
        else:
            items[n] = cast_scalar(self._type.elem, value)
        self._col["len"][0] = n + 1

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.array(self._col["items"][0][: len(self)], dtype=dtype)

    def __repr__(self) -> str:
        return f"ListView({list(self)!r})"


class MessageArrayView:
    """An ``Array`` of messages: indexing (Python's rules) gives a ``Record`` viewing the element;
    assigning an element copies a message into it."""

    __slots__ = ("_items", "_cls")

    def __init__(self, items: np.ndarray, cls: type) -> None:
        self._items = items
        self._cls = cls

    def __len__(self) -> int:
        return self._items.shape[0]

    def _index(self, index: Any) -> int:
        n = len(self)
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"Array index {int(index)} out of range (length {n})")
        return i

    def __getitem__(self, index: Any) -> "Record":
        i = self._index(index)
        return Record(self._cls, self._items[i : i + 1])

    def __setitem__(self, index: Any, value: Any) -> None:
        rec = value if isinstance(value, Record) else to_numpy_message(value)
        self._items[self._index(index)] = rec.array[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.array(self._items, dtype=dtype)


class Record:
    """One message or state value backed by numpy (see the module docstring)."""

    __slots__ = ("_cls", "_arr", "_types")

    def __init__(self, cls: type, arr: np.ndarray) -> None:
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_arr", arr)
        object.__setattr__(self, "_types", {f.name: f.type for f in spec_of(cls).fields})

    @classmethod
    def zeros(cls, msg_cls: type) -> "Record":
        return cls(msg_cls, np.zeros(1, dtype=layout_of(msg_cls).dtype))

    @property
    def cls(self) -> type:
        return self._cls

    @property
    def array(self) -> np.ndarray:
        """The 1-element structured array holding this value (the device's bytes)."""
        return self._arr

    def field_array(self, name: str) -> np.ndarray:
        """A writable numpy view of a scalar field (shape (1,)) or an Array field (shape (N,))."""
        t = self._field_type(name)
        if isinstance(t, ScalarType):
            return self._arr[name]
        if isinstance(t, ArrayType):
            return self._arr[name][0]
        raise TypeError(f"{self._cls.__name__}.{name} is not a scalar or Array field")

    def _field_type(self, name: str):
        try:
            return self._types[name]
        except KeyError:
            raise AttributeError(f"{self._cls.__name__} has no field '{name}'") from None

    def __getattr__(self, name: str) -> Any:
        t = self._field_type(name)
        col = self._arr[name]
        if isinstance(t, ScalarType):
            return col[0]
        if isinstance(t, ArrayType):
            if isinstance(t.elem, MessageType):
                return MessageArrayView(col[0], t.elem.cls)
            return col[0]
        if isinstance(t, MessageType):
            return Record(t.cls, col)
        if isinstance(t, StrType):
            n = int(col["len"][0])
            return RgStr(bytes(col["data"][0][:n]).decode("utf-8", errors="replace"))
        if isinstance(t, ListType):
            return ListView(col, t)
        raise TypeError(t)

    def __setattr__(self, name: str, value: Any) -> None:
        t = self._field_type(name)
        _store(self._arr[name] if not isinstance(t, ScalarType) else self._arr, name, t, value)

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, Record)
            and other._cls is self._cls
            and self._arr.tobytes() == other._arr.tobytes()
        )

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._types)
        return f"Record[{self._cls.__name__}]({parts})"

    def copy(self) -> "Record":
        return Record(self._cls, self._arr.copy())


def _exactly(values: Any, dtype: np.dtype) -> np.ndarray:
    """``values`` (Python numbers, nested for an Array of Arrays) as an array of the element type
    ``dtype``: np.asarray would go through float64 when u64 values mix numbers above and below
    2**63, and round them (the generated kernels found it for Lists, then for Arrays: the Metal
    shim's decoded bridged replies, and any such message sent to the cpu backend). Values the
    element type cannot take as they are keep np.asarray's type, for the caller's cast."""
    try:
        return np.array(values, dtype=dtype)
    except (OverflowError, TypeError, ValueError):
        return np.asarray(values)


def _store(col: np.ndarray, name: str, t, value: Any) -> None:
    """Store ``value`` into field ``name`` (``col`` is the record array for scalars, else the column)."""
    if isinstance(t, ScalarType):
        col[name][0] = cast_scalar(t, value)
        return
    if (
        isinstance(t, ArrayType)
        and isinstance(t.elem, MessageType)
        and not isinstance(value, (np.ndarray, MessageArrayView))
    ):
        for j, item in enumerate(value):  # message objects or Records
            rec = item if isinstance(item, Record) else to_numpy_message(item)
            col[0][j] = rec.array[0]
        return
    if isinstance(t, ArrayType):
        src = value if isinstance(value, np.ndarray) else _exactly(value, col.dtype.base)
        col[0] = src if src.dtype.names is not None else src.astype(col.dtype, casting="unsafe")
        return
    if isinstance(t, MessageType):
        rec = value if isinstance(value, Record) else to_numpy_message(value)
        col[0] = rec.array[0]
        return
    if isinstance(t, StrType):
        data = value if isinstance(value, (bytes, bytearray)) else str(value).encode("utf-8")
        if len(data) > t.max_bytes:
            raise HandlerFault(
                Reason.RANGE_ERROR, f"{len(data)} bytes do not fit Str[{t.max_bytes}]"
            )
        col["len"][0] = len(data)
        col["data"][0][:] = 0
        col["data"][0][: len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)
        return
    if isinstance(t, ListType):
        if isinstance(t.elem, MessageType):
            items = list(value)
        elif isinstance(value, np.ndarray):
            items = value
        else:
            items = _exactly(list(value), col["items"].dtype.base)
        n = len(items)
        if n > t.max_len:
            raise HandlerFault(Reason.RANGE_ERROR, f"{n} items do not fit List[..., {t.max_len}]")
        col["len"][0] = n
        dst = col["items"][0]
        dst[...] = np.zeros_like(dst)
        if isinstance(t.elem, MessageType):
            for j, item in enumerate(items):
                rec = item if isinstance(item, Record) else to_numpy_message(item)
                dst[j] = rec.array[0]
        elif n:
            dst[:n] = (
                items.astype(dst.dtype, casting="unsafe") if items.dtype.names is None else items
            )
        return
    raise TypeError(t)


def new_record(cls: type, **fields: Any) -> Record:
    """A Record of ``cls`` from keyword fields, missing ones taken from the class defaults."""
    return _build(cls, fields, zero_missing=False)


def new_state(cls: type) -> Record:
    """A fresh ``@rg.state`` value: every field from its default (an Array's scalar default fills it);
    a field without a default starts zeroed, as device memory does on every backend."""
    return _build(cls, {}, zero_missing=True)


def _build(cls: type, fields: dict, zero_missing: bool) -> Record:
    rec = Record.zeros(cls)
    spec = spec_of(cls)
    for f in spec.fields:
        if f.name in fields:
            value = fields.pop(f.name)
        elif f.default is not attrs.NOTHING:
            value = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default
        elif zero_missing:
            continue  # Record.zeros already holds it
        else:
            raise TypeError(f"{cls.__name__}() missing field '{f.name}'")
        if isinstance(f.type, ArrayType) and np.ndim(value) == 0:
            value = np.full(array_dims(f.type), value)  # a scalar default fills every element
        setattr(rec, f.name, value)
    if fields:
        raise TypeError(f"{cls.__name__}() has no field(s) {', '.join(sorted(fields))}")
    return rec


def to_numpy_message(obj: Any) -> Record:
    """Convert a message object (an instance of a ``@rg.message`` class, a ``Record``, or a numpy
    record of the class's view dtype together with ``cls``) to a fresh ``Record``."""
    if isinstance(obj, Record):
        return obj.copy()
    cls = type(obj)
    if not is_message_class(cls):
        raise TypeError(f"{obj!r} is not a ringgen message")
    return new_record(cls, **{f.name: getattr(obj, f.name) for f in spec_of(cls).fields})


def from_array(cls: type, row: np.ndarray) -> Record:
    """A Record of ``cls`` holding a copy of one element of a structured array of its view dtype."""
    arr = np.zeros(1, dtype=layout_of(cls).dtype)
    arr[0] = row
    return Record(cls, arr)


def to_object(rec: Record) -> Any:
    """The user's message object for a Record: numpy scalars, array copies, ``str``, lists."""
    spec = spec_of(rec.cls)
    values = {}
    for f in spec.fields:
        v = getattr(rec, f.name)
        if isinstance(f.type, MessageType):
            v = to_object(v)
        elif isinstance(f.type, StrType):
            v = str(v)
        elif isinstance(f.type, ListType):
            v = [to_object(x) for x in v] if isinstance(f.type.elem, MessageType) else np.array(v)
        elif isinstance(f.type, ArrayType) and isinstance(f.type.elem, MessageType):
            v = [to_object(x) for x in v]
        elif isinstance(f.type, ArrayType):
            v = v.copy()
        values[f.name] = v
    return rec.cls(**values)
