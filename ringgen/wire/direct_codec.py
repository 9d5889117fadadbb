"""The codec of a direct message: objects <-> slot bytes (its C struct) <-> numpy rows.

One implementation for every direct message, whoever needs it. A generated ``serializers.py``
subclasses ``DirectCodec`` once per direct message with functions specialised to its fields (the fast
path: the runtime's queues use them); ``rg.encode``/``rg.decode`` on a bare class, which has no built
package, take ``direct_codec(cls)``, the same class with those four functions derived from the layout
(``ringgen.wire.direct``). Both implement the codec interface of docs/architecture.md ("Codecs") and
the wire API (``encode``/``decode``) that ``ringgen.wire.codec_for`` returns for every message:

* single messages go through ``struct`` (one ``pack``/``unpack`` call: the host's hot path);
* batches are numpy structured arrays; array <-> bytes is a view or one copy, never a Python loop.
"""

from __future__ import annotations

import functools
import itertools
import struct
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np

from ..errors import EncodeError, WireFormatError
from ..layout import layout_of
from ..protocol import Reason
from ..types import ArrayType, MessageType, ScalarType
from ..values import check_message, fill_state_arrays, struct_guard, struct_is_exact
from .direct import direct_struct, flatten_direct, unflatten_direct
from .memorypack import wire_error

__all__ = ["DirectCodec", "direct_codec"]


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

    def encode(self, obj: Any, **header: Any) -> bytes:
        """``rg.encode`` of one message: its C struct bytes, as ``pack`` writes them.

        Raises:
            EncodeError: header fields were given (a direct message has no header to carry them),
                or a field value is not accepted (names ``Class.field``).
            TypeError: ``obj`` is not an instance of this codec's class.
        """
        if any(v not in (None, 0) for v in header.values()):
            raise EncodeError(
                f"{self.name} is a direct message: its bytes are its C struct, with no header "
                f"to carry {', '.join(sorted(header))}"
            )
        return self.pack(obj)

    def decode(self, data: Any) -> Any:
        """``rg.decode`` of one message from a C-contiguous buffer (bytes, a uint8 array, ...).

        Raises:
            WireFormatError: ``data`` is shorter than the struct (``reason`` ``BAD_SIZE``).
        """
        have = memoryview(data).nbytes
        if have < self.slot_size:
            raise wire_error(
                have, self.name, Reason.BAD_SIZE, f"{have} bytes, the struct has {self.slot_size}"
            )
        return self.from_flat(self.packer.unpack_from(data, 0), 0)

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


def _row_value(t, value: Any) -> Any:
    """One field of a numpy row: nested messages as row tuples, everything else as given."""
    if isinstance(t, MessageType):
        return _row(t.cls, value)
    if isinstance(t, ArrayType) and not isinstance(t.elem, ScalarType):
        return [_row_value(t.elem, v) for v in value]
    return value


def _row(cls: type, obj: Any) -> tuple:
    return tuple(_row_value(f.type, getattr(obj, f.name)) for f in layout_of(cls).fields)


def _from_row_value(t, value: Any) -> Any:
    """One field of a row from ``ndarray.tolist()`` as the user's value (sub-arrays as lists)."""
    if isinstance(t, MessageType):
        return _from_row(t.cls, value)
    if isinstance(t, ArrayType):
        items = value.tolist() if isinstance(value, np.ndarray) else value
        return [_from_row_value(t.elem, v) for v in items]
    return value


def _from_row(cls: type, row: Sequence) -> Any:
    return cls(*[_from_row_value(f.type, v) for f, v in zip(layout_of(cls).fields, row)])


@functools.lru_cache(maxsize=None)
def direct_codec(cls: type) -> DirectCodec:
    """The (cached) ``DirectCodec`` of the direct message class ``cls``, derived from its layout.

    What a built package's ``serializers.py`` generates, without a build: the same class, with the
    four field functions written once over the layout instead of specialised to the fields (slower
    per message; ``flat`` checks every value as ``ringgen.values`` does, so no guard is added).

    Raises:
        SchemaError: ``cls`` is not a message class.
        TypeError: ``cls`` is a bridged message (its codec is ``ringgen.wire.codec_for``'s).
    """
    lay = layout_of(cls)
    if lay.is_bridged:
        raise TypeError(f"{lay.name} is a bridged message: it has no direct codec")

    def flat(o: Any) -> tuple:
        out: list = []
        flatten_direct(cls, o, out)
        return tuple(out)

    def from_flat(values: Sequence, start: int) -> Any:
        return unflatten_direct(cls, itertools.islice(values, start, None))

    codec = type(f"{lay.name}Codec", (DirectCodec,), {"cls": cls, "dtype": lay.dtype})
    codec.packer = direct_struct(cls)
    # set after the class exists: __init_subclass__ guards only a generated ``flat``
    codec.flat = staticmethod(flat)
    codec.from_flat = staticmethod(from_flat)
    codec.row = staticmethod(functools.partial(_row, cls))
    codec.from_row = staticmethod(functools.partial(_from_row, cls))
    return codec()
