"""What a queue carries, and how the host API's objects and arrays become it and back.

A ``KernelHandle`` moves *batches* through its transport: a batch is whatever the backend's queues
hold, and it supports ``len()`` and slicing (``batch[k:]``), so a partly accepted batch can be resumed.
A ``BatchFormat`` converts between the public API (message objects, numpy structured arrays of the
view dtype) and batches, through the generated codecs (``serializers.CODECS[name]``, interface in
docs/architecture.md):

- ``ObjectBatches``: a batch is a list of message objects (the cpu reference backend: it runs the
  user's Python handler on objects, so nothing is encoded).
- ``SlotBatches``: a batch is a numpy array of queue slots (device backends). For a direct message a
  slot is its C struct, so the array has the view dtype itself; for a bridged message a slot is the
  256-byte header plus payload, an array of ``np.dtype((np.void, slot_size))``.

Device backends only copy slot arrays into and out of their rings; the codecs do the rest here.
"""

from __future__ import annotations

import abc
import collections
import itertools
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import EncodeError, SchemaError

__all__ = [
    "Batch",
    "BatchFormat",
    "ObjectBatches",
    "RawSlot",
    "SlotBatches",
    "SpillBuffer",
    "check_messages",
    "prefix",
    "slot_dtype",
]

#: A list of message objects or a numpy array of slots; both support len() and slicing.
Batch = Union[list, np.ndarray]


def check_messages(kernel: str, cls: type, messages: Sequence[Any]) -> None:
    """Reject anything that is not an instance of the queue's message class, naming the first one.

    Raises:
        SchemaError: an item (by index) is not a ``cls``.
    """
    for i, m in enumerate(messages):
        if type(m) is not cls and not isinstance(m, cls):
            raise SchemaError(
                f"kernel {kernel}: item {i} sent is a {type(m).__qualname__}, "
                f"but the input queue carries {cls.__qualname__}",
                hint=f"send {cls.__qualname__}(...) objects or a numpy array of its dtype",
            )


def prefix(messages: Any, n: int) -> Any:
    """The first ``n`` of ``messages`` without touching the rest: a view of an array, a slice of a
    sequence, ``n`` items of any other iterable."""
    if isinstance(messages, np.ndarray):
        return messages[:n] if messages.ndim else messages  # a 0-d array: input_batch says why
    if isinstance(messages, (list, tuple)):
        return messages[:n]
    return list(itertools.islice(messages, n))


def _check_array(kernel: str, codec: Any, arr: Any) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None:
        raise SchemaError(
            f"kernel {kernel}: send_batch expects {codec.cls.__qualname__} objects or a numpy "
            f"structured array of its dtype, got {type(arr).__qualname__}",
            hint=f"build it with np.zeros(n, dtype=rg.dtype_of({codec.cls.__qualname__}))",
        )
    if arr.ndim != 1:
        raise SchemaError(f"kernel {kernel}: send_batch expects a 1-d array, got shape {arr.shape}")
    if arr.dtype != codec.dtype:
        missing = [n for n in codec.dtype.names if n not in arr.dtype.names]
        if missing:
            raise SchemaError(
                f"kernel {kernel}: the array lacks field(s) {', '.join(missing)} of "
                f"{codec.cls.__qualname__}",
                hint=f"use the message's dtype: rg.dtype_of({codec.cls.__qualname__})",
            )
        # Same fields in another layout (unaligned, other order, other dtypes): convert field by
        # field, refusing any conversion that would change a value.
        out = np.zeros(len(arr), dtype=codec.dtype)
        _copy_fields(kernel, codec.cls.__qualname__, out, arr)
        return out
    if arr.flags.c_contiguous:
        return arr
    # Rows as opaque records of their size: numpy copies a structured array field by field, element
    # by element, 10 to 20 times slower than memory speed.
    rows = np.dtype((np.void, arr.dtype.itemsize))
    return np.ascontiguousarray(arr.view(rows)).view(arr.dtype)


def _copy_fields(kernel: str, path: str, out: np.ndarray, src: np.ndarray) -> None:
    """Copy every field of ``out``'s dtype from ``src``, recursing into nested structs.

    A conversion numpy calls "same_kind" is allowed (float64 -> float32 rounds, as ``send`` does); an
    integer column is converted to any integer type after a range check (its min and max, so no
    per-row work).

    Raises:
        EncodeError: a field's dtype cannot be converted safely (float -> int), or an integer value
            is out of its field's range; names ``Class.field`` and both dtypes.
    """
    for name in out.dtype.names:
        where = f"{path}.{name}"
        dst_t, src_t = out.dtype[name], src.dtype[name]
        if dst_t.names is not None:
            if src_t.names is None:
                raise EncodeError(
                    f"kernel {kernel}: {where} is a struct, the array's field is " f"{src_t}",
                    hint="use the message's dtype: np.zeros(n, dtype=rg.dtype_of(MessageClass))",
                )
            _copy_fields(kernel, where, out[name], src[name])
            continue
        if dst_t.shape != src_t.shape:
            raise EncodeError(
                f"kernel {kernel}: {where} is {_dtype_name(src_t)} in the array, the field is "
                f"{_dtype_name(dst_t)}: the shapes differ",
                hint="use the codec's dtype: CODECS[name].dtype (np.zeros(n, dtype=...))",
            )
        dst, have = dst_t.base, src_t.base
        if dst.kind in "iu" and have.kind in "iub":
            column = src[name]
            if column.size and not np.can_cast(have, dst, "safe"):
                info = np.iinfo(dst)
                lo, hi = column.min(), column.max()
                if lo < info.min or hi > info.max:
                    bad = lo if lo < info.min else hi
                    raise EncodeError(
                        f"kernel {kernel}: {where} = {int(bad)} (array dtype {have}) is out of the "
                        f"range of {dst} [{info.min}, {info.max}]",
                        hint="fix the value, or declare the field with a wider type",
                    )
        elif not np.can_cast(have, dst, "same_kind"):
            raise EncodeError(
                f"kernel {kernel}: {where} has dtype {src_t} in the array, which does not convert "
                f"safely to the field's {dst_t}",
                hint="use the message's dtype: np.zeros(n, dtype=rg.dtype_of(MessageClass))",
            )
        out[name] = src[name]


def _dtype_name(t: np.dtype) -> str:
    """``int32`` or, for a subarray, ``int32[4]``."""
    return str(t.base) + (f"[{', '.join(map(str, t.shape))}]" if t.shape else "")


class BatchFormat(abc.ABC):
    """Converts between the host API's messages and one backend's batches, for one kernel.

    ``in_codec``/``out_codec`` are the generated codecs of the input and output message classes
    (``out_codec`` is None for a kernel without output).
    """

    def __init__(self, kernel: str, in_codec: Any, out_codec: Any) -> None:
        self.kernel = kernel
        self.in_codec = in_codec
        self.out_codec = out_codec

    @abc.abstractmethod
    def from_objects(self, messages: Sequence[Any]) -> Batch:
        """Input message objects (already type-checked) -> one input batch."""

    @abc.abstractmethod
    def from_array(self, arr: np.ndarray) -> Batch:
        """A structured array of the input view dtype -> one input batch."""

    @abc.abstractmethod
    def from_slots(self, rows: np.ndarray) -> Batch:
        """Already-encoded input slots (an ``(n, slot_size)`` uint8 array) -> one input batch, as they
        are: the kernel validates them (``send_raw``)."""

    @abc.abstractmethod
    def to_objects(self, batch: Batch) -> list:
        """One output batch -> output message objects."""

    @abc.abstractmethod
    def to_array(self, batch: Batch) -> Union[np.ndarray, list]:
        """One output batch -> what ``receive_batch`` returns: a structured array of the output view
        dtype for a direct message, a list of objects for a bridged one."""

    @abc.abstractmethod
    def empty(self) -> Union[np.ndarray, list]:
        """What ``receive_batch`` returns when nothing arrived."""

    def input_batch(self, messages: Any) -> Batch:
        """Objects or a structured array -> one input batch (type-checked)."""
        if isinstance(messages, np.ndarray):
            return self.from_array(_check_array(self.kernel, self.in_codec, messages))
        seq = messages if isinstance(messages, (list, tuple)) else list(messages)
        check_messages(self.kernel, self.in_codec.cls, seq)
        return self.from_objects(seq)


class RawSlot:
    """One input slot sent as bytes (``send_raw``) on a backend whose batches hold objects: the
    kernel decodes and validates it when it takes it, as a device kernel does."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"RawSlot({len(self.data)} bytes)"


class ObjectBatches(BatchFormat):
    """Batches are lists of message objects (the cpu reference backend); raw slots travel as
    ``RawSlot`` items among them."""

    def from_objects(self, messages: Sequence[Any]) -> list:
        return list(messages)

    def from_slots(self, rows: np.ndarray) -> list:
        return [RawSlot(r.tobytes()) for r in rows]

    def from_array(self, arr: np.ndarray) -> list:
        return list(self.in_codec.from_array(arr))

    def to_objects(self, batch: list) -> list:
        return list(batch)

    def to_array(self, batch: list) -> Union[np.ndarray, list]:
        if self.out_codec.bridged:
            return list(batch)
        return self.out_codec.to_array(list(batch))

    def empty(self) -> Union[np.ndarray, list]:
        if self.out_codec is None or self.out_codec.bridged:
            return []
        return np.zeros(0, dtype=self.out_codec.dtype)


def slot_dtype(codec: Any) -> np.dtype:
    """The numpy dtype of one queue slot of ``codec``'s message."""
    if codec.bridged:
        return np.dtype((np.void, codec.slot_size))
    return codec.dtype


class SlotBatches(BatchFormat):
    """Batches are numpy arrays of queue slots (device backends)."""

    def __init__(self, kernel: str, in_codec: Any, out_codec: Any) -> None:
        super().__init__(kernel, in_codec, out_codec)
        self.in_slot = slot_dtype(in_codec)
        self.out_slot = slot_dtype(out_codec) if out_codec is not None else None

    def from_objects(self, messages: Sequence[Any]) -> np.ndarray:
        codec = self.in_codec
        if not codec.bridged:
            return codec.to_array(list(messages))
        # Bridged: each object is encoded straight into its slot (the columnar path would build a
        # view row per object first, which costs more than the encoding for a few messages).
        out = np.zeros(len(messages), dtype=self.in_slot)
        flat = out.view(np.uint8)
        size = codec.slot_size
        pack_into = getattr(codec, "pack_into", None)
        for i, message in enumerate(messages):
            if pack_into is not None:
                pack_into(flat, i * size, message)
            else:
                data = codec.pack(message)
                flat[i * size : i * size + len(data)] = np.frombuffer(data, np.uint8)
        return out

    def from_array(self, arr: np.ndarray) -> np.ndarray:
        if not self.in_codec.bridged:
            return arr
        data = self.in_codec.pack_array(arr)
        return np.frombuffer(data, dtype=self.in_slot, count=len(arr))

    def from_slots(self, rows: np.ndarray) -> np.ndarray:
        # A view, not a copy: every transport copies a batch into its ring (or keeps a copy) before
        # _push returns, so the caller may reuse its buffer at once.
        return np.ascontiguousarray(rows).reshape(-1).view(self.in_slot)

    def to_objects(self, batch: np.ndarray) -> list:
        codec = self.out_codec
        if not codec.bridged:
            return list(codec.from_array(batch))
        # Bridged: each slot is decoded straight to its object (no view rows in between).
        flat = np.ascontiguousarray(batch).view(np.uint8)
        size = codec.slot_size
        return [codec.unpack(flat, i * size) for i in range(len(batch))]

    def to_array(self, batch: np.ndarray) -> Union[np.ndarray, list]:
        if self.out_codec.bridged:
            return self.to_objects(batch)
        return batch

    def empty(self) -> Union[np.ndarray, list]:
        if self.out_codec is None or self.out_codec.bridged:
            return []
        return np.zeros(0, dtype=self.out_codec.dtype)


class SpillBuffer:
    """Replies the host pulled out of the output queue while terminating, in order (a FIFO of
    batches that hands out slices, so no batch is copied or concatenated)."""

    def __init__(self) -> None:
        self._batches: collections.deque = collections.deque()
        self._offset = 0  # consumed prefix of the first batch
        self.count = 0

    def put(self, batch: Batch) -> None:
        if len(batch):
            self._batches.append(batch)
            self.count += len(batch)

    def take(self, max_n: int) -> Optional[Batch]:
        """Up to ``max_n`` replies from the oldest batch (None when empty)."""
        if not self._batches:
            return None
        first = self._batches[0]
        part = first[self._offset : self._offset + max_n]
        self._offset += len(part)
        if self._offset >= len(first):
            self._batches.popleft()
            self._offset = 0
        self.count -= len(part)
        return part
