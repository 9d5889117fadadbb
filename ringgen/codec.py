"""Runtime base classes of generated serializers: one codec per message class.

A generated ``serializers.py`` subclasses ``DirectCodec`` once per direct message, filling in the
message's dtype, its ``struct`` format and four small functions specialised to its fields (flatten to
and rebuild from a flat tuple, to and from a numpy row). This base class turns those into the codec
interface of docs/architecture.md ("Codecs"):

* single messages go through ``struct`` (one ``pack``/``unpack`` call: the host's hot path);
* batches are numpy structured arrays; array <-> bytes is a view or one copy, never a Python loop.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np

from .errors import BuildError, EncodeError, RinggenError, WireFormatError
from .layout import layout_of
from .values import check_message, fill_state_arrays, struct_guard, struct_is_exact

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


class DirectCodec:
    """Converts one direct message class between objects, slot bytes and numpy rows.

    Subclasses (generated) set ``cls``, ``dtype``, ``packer`` (a ``struct.Struct``) and the four static functions:
    ``flat(obj) -> tuple`` (every scalar leaf in memory order), ``from_flat(values, start) -> obj``,
    ``row(obj) -> tuple`` (a numpy structured row) and ``from_row(row) -> obj``.
    """

    cls: ClassVar[type]
    dtype: ClassVar[np.dtype]
    packer: ClassVar[struct.Struct]
    bridged: ClassVar[bool] = False

    flat: ClassVar[Callable[[Any], tuple]]
    from_flat: ClassVar[Callable[[Sequence, int], Any]]
    row: ClassVar[Callable[[Any], tuple]]
    from_row: ClassVar[Callable[[Sequence], Any]]

    @property
    def name(self) -> str:
        return self.cls.__name__

    @property
    def slot_size(self) -> int:
        """Bytes of one queue slot: the C struct's size."""
        return self.dtype.itemsize

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: {self.slot_size} bytes>"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make the generated ``flat`` check values where ``struct`` alone would not.

        ``struct`` accepts exactly the values ``ringgen.values`` accepts for a class of non-bool
        scalars; for any other class (a ``bool_``, an Array, a nested message) ``flat`` checks the
        whole message first, so every path that packs ``flat(obj)`` (the codec's and the CUDA
        latency path's) rejects the same values with the same error.
        """
        super().__init_subclass__(**kwargs)
        if "flat" not in cls.__dict__ or struct_is_exact(cls.cls):
            return
        raw, message_cls = cls.__dict__["flat"].__func__, cls.cls
        guard = struct_guard(message_cls)
        if layout_of(message_cls).spec.kind == "state":

            def flat(o: Any) -> tuple:
                o = fill_state_arrays(message_cls, o)  # `hist: Array[u32, 4] = 0` fills
                if not guard(o):
                    check_message(message_cls, o)
                return raw(o)

        else:

            def flat(o: Any) -> tuple:
                if not guard(o):
                    check_message(message_cls, o)  # raises the precise EncodeError
                return raw(o)

        cls.flat = staticmethod(flat)

    def _check_type(self, obj: Any) -> None:
        if type(obj) is not self.cls:
            raise TypeError(f"{self.name} codec got {type(obj).__name__}, expected {self.name}")

    def _encode_error(self, obj: Any, exc: Exception) -> EncodeError:
        """The ``EncodeError`` naming the first field (``Class.field``) whose value is not accepted:
        ``ringgen.values``'s, so that every encoder says the same."""
        try:
            check_message(self.cls, fill_state_arrays(self.cls, obj))
        except EncodeError as err:
            return err
        return EncodeError(f"cannot pack {self.name}: {exc}")

    def pack(self, obj: Any) -> bytes:
        """The slot bytes of one message (its C struct, padding zeroed).

        Raises:
            TypeError: ``obj`` is not an instance of this codec's class.
            EncodeError: a field value is not accepted (``ringgen.values``; names ``Class.field``).
        """
        self._check_type(obj)
        try:
            return self.packer.pack(*self.flat(obj))
        except (struct.error, OverflowError, TypeError) as exc:
            raise self._encode_error(obj, exc) from None

    def pack_into(self, buf: Any, offset: int, obj: Any) -> None:
        """Write one message's slot bytes into ``buf`` at ``offset`` (no intermediate bytes object)."""
        self._check_type(obj)
        try:
            self.packer.pack_into(buf, offset, *self.flat(obj))
        except (struct.error, OverflowError, TypeError) as exc:
            raise self._encode_error(obj, exc) from None

    def unpack(self, buf: Any, offset: int = 0) -> Any:
        """The message stored in ``buf`` at ``offset``.

        Raises:
            WireFormatError: ``buf`` holds fewer than ``slot_size`` bytes past ``offset``.
        """
        have = len(memoryview(buf).cast("B")) - offset
        if have < self.slot_size:
            raise WireFormatError(
                f"{self.name} needs {self.slot_size} bytes, got {max(have, 0)} at offset {offset}"
            )
        return self.from_flat(self.packer.unpack_from(buf, offset), 0)

    def to_array(self, objs: Iterable[Any]) -> np.ndarray:
        """A structured array (``dtype``) holding ``objs``: each packed into its row with ``struct``.

        The rows are the bytes ``pack`` gives (padding zeroed), and the values are checked as
        ``pack`` checks them: numpy's own conversion would turn ``"5"`` into 5, ``1.5`` into 1 and
        ``None`` into nan.

        Raises:
            TypeError: an item is not an instance of this codec's class.
            EncodeError: a field value is not accepted (names ``Class.field``).
        """
        objs = list(objs)
        cls, size, pack_into, flat = self.cls, self.slot_size, self.packer.pack_into, self.flat
        # bytearray memory is 16-byte aligned (CPython's allocators), as numpy would allocate it
        buf = bytearray(len(objs) * size)
        i = 0
        try:
            for i, obj in enumerate(objs):
                if type(obj) is not cls:
                    self._check_type(obj)
                pack_into(buf, i * size, *flat(obj))
        except (struct.error, OverflowError, TypeError) as exc:
            self._check_type(objs[i])  # another class: the TypeError, not a value error
            raise self._encode_error(objs[i], exc) from None
        return np.frombuffer(buf, dtype=self.dtype)

    def from_array(self, arr: np.ndarray) -> list:
        """The message objects of a structured array; numpy converts all scalars in one ``tolist``."""
        arr = self._as_array(arr)
        return [self.from_row(r) for r in arr.tolist()]

    def pack_array(self, arr: np.ndarray) -> bytes:
        """The slots of every row of ``arr``, back to back (one copy, no Python loop)."""
        return np.ascontiguousarray(self._as_array(arr)).tobytes()

    def unpack_array(self, buf: Any, n: int | None = None) -> np.ndarray:
        """``n`` rows (default: as many as ``buf`` holds) read from ``buf`` into a new array.

        Raises:
            WireFormatError: ``buf`` is shorter than ``n`` slots.
        """
        size = len(memoryview(buf).cast("B"))
        if n is None:
            n = size // self.slot_size
        if size < n * self.slot_size:
            raise WireFormatError(
                f"{n} {self.name} slots need {n * self.slot_size} bytes, got {size}"
            )
        # Copy as raw bytes, then view: a structured copy would not carry the padding bytes over.
        raw = np.frombuffer(buf, dtype=np.uint8, count=n * self.slot_size).copy()
        return raw.view(self.dtype)

    def _as_array(self, arr: np.ndarray) -> np.ndarray:
        arr = np.asarray(arr)
        if arr.dtype != self.dtype:
            raise TypeError(f"{self.name} codec expects dtype {self.dtype}, got {arr.dtype}")
        return arr.reshape(-1)


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
