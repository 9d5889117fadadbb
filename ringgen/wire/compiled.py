"""In-memory bridged codecs: the one place the host library reaches back into the generator.

The flow is codegen -> generated package -> runtime, and ``ringgen.wire`` is a runtime-side library
that generated code imports. ``rg.encode``/``rg.decode`` on a bare class have no built package to take
their bridged codec from, so this module renders the same ``bridged.py`` text the build writes and
compiles it in memory: the caller gets the generated codec's speed without a build, and there is one
bridged codec implementation, not a second hand-written one here.

It lives on the wire side (not in ``ringgen.codegen``) because compiling and executing code is a
run-time act, while the generator only produces text. ``ringgen.codegen`` is imported lazily, on the
first bridged class, so importing ``ringgen.wire`` never loads the generator (or black, jinja2) and
the two packages do not import each other at module level.
"""

from __future__ import annotations

import itertools
import linecache
from typing import Any, Iterable

from ..layout import layout_of

__all__ = ["bridged_codec", "compile_codecs"]

# Numbers the in-memory modules, so each gets its own linecache file name.
_COMPILED = itertools.count(1)


def compile_codecs(classes: Iterable[type]) -> dict[str, Any]:
    """Generate and compile the codec module for ``classes`` in memory; return its namespace.

    The namespace holds what a built ``bridged.py`` defines (``CODECS``, ``encode_<Name>``, ...). The
    source is registered in ``linecache`` so tracebacks and debuggers show the generated lines.
    """
    from ..codegen.bridged_py import bridged_closure, render_bridged

    classes = list(classes)
    layouts = [layout_of(c) for c in classes]
    text = render_bridged(layouts, module=None)
    filename = (
        f"<ringgen bridged codecs #{next(_COMPILED)}: {', '.join(c.__name__ for c in classes)}>"
    )
    # module=None leaves the user's import out of the text: the classes are passed in instead
    namespace: dict[str, Any] = {m.name: m.spec.cls for m in bridged_closure(layouts)}
    namespace["__name__"] = "ringgen_bridged_codecs"
    code = compile(text, filename, "exec")
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    exec(code, namespace)  # noqa: S102 - our own generated source
    return namespace


def bridged_codec(cls: type) -> Any:
    """A fresh ``BridgedCodec`` of the bridged message class ``cls``, compiled in memory.

    Each call generates and compiles again: callers go through ``ringgen.wire.codec_for``, which caches.
    """
    return compile_codecs([cls])["CODECS"][layout_of(cls).name]
