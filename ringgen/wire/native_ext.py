"""The per-message bridged encoder and decoder (``_encoder.c``): a CPython extension built on first
use.

ctypes costs about half a microsecond per call, as much as encoding a small message, so the
one-message path (``BridgedCodec.pack``/``pack_into``) uses a tiny extension module instead: one
C call reads the object's attributes, writes header, MemoryPack payload and CRC-32 straight into the
ring slot, and returns the size. It is compiled and cached exactly like the batch helpers
(``native._build``: a sha256-keyed entry in ``<ringgen cache>/native`` whose file list is checked,
owner, mode and SHA-256, before the library is loaded), with Python's headers on the include path
and the interpreter's extension suffix, and imported with ``importlib.machinery.ExtensionFileLoader``.

``program_for`` describes a bridged class as the extension's step program (scalars, Str, Lists and
Arrays of scalars, nested bridged messages and Lists of them); classes with a field it does not
cover (nested direct messages, arrays of arrays) get None and stay on the generated Python encoder. The extension
returns None for any value it cannot encode exactly as the generated encoder would (the caller then
runs that encoder, which raises the precise ``EncodeError``), so its output and errors are the
generated encoder's byte for byte. With no compiler, a failed build, a big-endian host or
``RINGGEN_NO_NATIVE=1``, ``module()`` is None (the reason logged once) and codecs use Python.

``fast_decoder`` reads a message back with the same program: one C call from the slot's bytes (in
place, or from ``bytes``) to the object, with the generated decoder's Python types; any
irregularity goes to the generated decoder, which raises the precise ``WireFormatError``.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import logging
import os
import struct
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

from ..layout import layout_of
from ..types import ArrayType, ListType, MessageType, ScalarType, StrType
from . import native
from .header import HEADER_SIZE

__all__ = [
    "MODULE_NAME",
    "SOURCE",
    "fast_decoder",
    "fast_encoder",
    "load",
    "module",
    "program_for",
    "with_fallback",
]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_encoder.c")
#: The name the extension's init function is spelled for (``PyInit__ringgen_encoder``).
MODULE_NAME = "_ringgen_encoder"

# Step kinds of _encoder.c
_K_SCALAR, _K_STR, _K_LIST, _K_ARRAY, _K_OBJECT, _K_OBJLIST = 1, 2, 3, 4, 5, 6
# struct rg_spec and struct rg_step of _encoder.c
_SPEC = struct.Struct("<IIII")
_STEP = struct.Struct("<iiq")
# The struct codes _encoder.c's put_scalar handles.
_CODES = frozenset("bhiqBHIQfd?")

_lock = threading.Lock()
_loaded: Optional[ModuleType] = None
_tried = False


def _flags() -> tuple[str, ...]:
    include = sysconfig.get_paths()["include"]
    return ("-O2", "-shared", "-fPIC", f"-I{include}")


def load(cache_dir: Optional[Path] = None, cc: Optional[str] = None) -> Optional[ModuleType]:
    """Build (if needed) and import the extension; None, with the reason logged, when that fails.

    Args:
        cache_dir: where the module is kept (default ``$RINGGEN_CACHE_DIR/native``).
        cc: the compiler (default ``$CC``, else cc, gcc or clang from PATH).
    """
    compiler = native.usable_compiler(cc, "messages are encoded in Python")
    if compiler is None:
        return None
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").exists():
        log.info("ringgen.wire: no Python.h under %s; messages are encoded in Python", include)
        return None
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    try:
        path = native._build(
            compiler,
            Path(cache_dir) if cache_dir else native._cache_root(),
            source=SOURCE,
            flags=_flags(),
            suffix=suffix,
            prefix="encoder",
        )
        loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, str(path))
        spec = importlib.util.spec_from_file_location(MODULE_NAME, str(path), loader=loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
    except (OSError, ImportError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("ringgen.wire: native encoder unavailable, using Python (%s)", exc)
        return None
    log.debug("ringgen.wire: native encoder loaded from %s", path)
    return mod


def module() -> Optional[ModuleType]:
    """The loaded extension, or None (``RINGGEN_NO_NATIVE=1``, or it could not be built)."""
    global _loaded, _tried
    if os.environ.get(native.ENV_DISABLE, "") not in ("", "0"):
        return None
    if not _tried:
        with _lock:
            if not _tried:
                _loaded = load()
                _tried = True
    return _loaded


def _bridged(t) -> bool:
    return isinstance(t, MessageType) and layout_of(t.cls).is_bridged


def _step(t, subs: list) -> Optional[tuple[tuple, int]]:
    """The step (kind, code, bound) of one field's type and its largest encoding, or None when the
    extension does not cover the type. Nested bridged classes get their program appended to
    ``subs`` (the step's code is its index there)."""
    if isinstance(t, ScalarType):
        return ((_K_SCALAR, ord(t.struct_code), 0), t.size) if t.struct_code in _CODES else None
    if isinstance(t, StrType):
        return (_K_STR, 0, t.max_bytes), 8 + t.max_bytes
    if _bridged(t):
        sub = program_for(t.cls)
        if sub is None:
            return None
        subs.append(sub)
        return (_K_OBJECT, len(subs) - 1, 0), _max_payload(sub)
    if isinstance(t, ListType) and _bridged(t.elem):
        sub = program_for(t.elem.cls)
        if sub is None:
            return None
        subs.append(sub)
        return (_K_OBJLIST, len(subs) - 1, t.max_len), 4 + t.max_len * _max_payload(sub)
    if isinstance(t, (ListType, ArrayType)):
        elem = t.elem
        if not isinstance(elem, ScalarType) or elem.struct_code not in _CODES:
            return None  # direct messages and arrays as elements: the generated encoder
        count = t.max_len if isinstance(t, ListType) else t.length
        kind = _K_LIST if isinstance(t, ListType) else _K_ARRAY
        return (kind, ord(elem.struct_code), count), 4 + count * elem.size
    return None  # nested direct messages: the generated encoder


def _max_payload(prog: tuple) -> int:
    return _SPEC.unpack_from(prog[1])[1]


@functools.lru_cache(maxsize=None)
def program_for(cls: type) -> Optional[tuple]:
    """The (cached) program of bridged ``cls`` for ``encode_into`` with no fallback:
    ``(cls, spec, names, None, subs)``, or None when a field's type is not covered (the codec then
    keeps the generated encoder for every message)."""
    lay = layout_of(cls)
    if not lay.is_bridged or len(lay.fields) > 255:
        return None
    steps: list = []
    subs: list = []
    max_payload = 1  # the member count
    for f in lay.fields:
        step = _step(f.type, subs)
        if step is None:
            return None
        steps.append(step[0])
        max_payload += step[1]
    if max_payload >= 2**31:  # beyond the spec's u32 and any sane slot
        return None
    spec = _SPEC.pack(lay.type_id, max_payload, len(lay.fields), len(steps))
    spec += b"".join(_STEP.pack(*step) for step in steps)
    # interned names: the attribute lookups then hit the interned-key fast path
    names = tuple(sys.intern(f.name) for f in lay.fields)
    return (cls, spec, names, None, tuple(subs))


def fast_encoder(cls: type, fallback: Callable[..., Any]) -> Optional[Callable[..., Any]]:
    """``encode_into`` bound to the program of ``cls``, or None (no extension, or a shape it does
    not cover).

    The result is called as ``(buffer, offset, obj, sender=0, receiver=0, sequence=0,
    timestamp=None)``: it writes the message at ``buffer[offset:]`` and returns None, or returns the
    bytes when ``buffer`` is None. Whatever it cannot encode it passes on, with the same arguments,
    to ``fallback`` (the codec's Python path, which gives the same bytes or the precise error).
    """
    mod = module()
    if mod is None:
        return None
    prog = program_for(cls)
    if prog is None:
        return None
    assert HEADER_SIZE == 256  # _encoder.c writes the 256-byte header
    # a C partial: calling it runs no Python frame
    return functools.partial(mod.encode_into, with_fallback(prog, fallback))


def fast_decoder(cls: type, fallback: Callable[[Any], Any]) -> Optional[Callable[..., Any]]:
    """``decode_at`` bound to the program of ``cls`` (the encoder's), or None (no extension,
    ``RINGGEN_NO_NATIVE=1``, or a shape the program does not cover).

    The result is called as ``(data)``, the generated decoder's signature, or ``(buffer, offset,
    limit)`` for the slot at ``buffer[offset:offset + limit]`` read in place (a ring slot). It
    returns the message the generated decoder returns for the same bytes, the same Python types
    throughout; whatever it does not accept (any irregularity, and shapes it does not read) it
    passes to ``fallback``, the generated decoder, as ``data`` itself or, for a range, a ``bytes``
    copy of it, so every error is the generated decoder's ``WireFormatError``, type and text.
    """
    mod = module()
    if mod is None:
        return None
    prog = program_for(cls)
    if prog is None or HEADER_SIZE + _max_payload(prog) != layout_of(cls).slot_size:
        return None  # the decoder bounds a message by the slot the layout gives it
    return functools.partial(mod.decode_at, with_fallback(prog, fallback))


def with_fallback(prog: tuple, fallback: Callable[..., Any]) -> tuple:
    """``prog`` with ``fallback`` as the callable ``encode_into`` (``decode_at``) hands what it
    cannot encode (decode) to."""
    return (*prog[:3], fallback, prog[4])
