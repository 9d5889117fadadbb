"""ringgen.wire.compiled: rg.encode/rg.decode of a bare bridged class through in-memory generated codecs."""

from __future__ import annotations

import linecache
import subprocess
import sys
import textwrap

import ringgen as rg
from ringgen.types import List, Str, f32, i32
from ringgen.wire import codec_for
from ringgen.wire.codec import encode_reference
from ringgen.wire.compiled import bridged_codec, compile_codecs


@rg.message
class CPt:
    x: f32
    y: f32


@rg.message
class CShape:
    id: i32
    pts: List[CPt, 4]
    label: Str[12]


def test_bare_class_gets_the_compiled_generated_codec():
    codec = codec_for(CShape)
    assert codec is codec_for(CShape)  # compiled once, cached
    assert codec.bridged and type(codec) is type(bridged_codec(CShape))
    shape = CShape(7, [CPt(1.0, 2.0), CPt(3.5, -1.0)], "tri€")
    data = rg.encode(shape, timestamp=5)
    assert data == encode_reference(CShape, shape, timestamp=5)
    assert rg.decode(CShape, data) == shape


def test_compiled_source_is_registered_for_tracebacks():
    namespace = compile_codecs([CShape])
    code = namespace["encode_CShape"].__code__
    lines = linecache.getlines(code.co_filename)
    assert code.co_filename.startswith("<ringgen bridged codecs #")
    assert any("def encode_CShape" in line for line in lines)


def test_importing_wire_does_not_load_the_generator():
    """The generator is reached lazily, for the first bridged class, never at import time."""
    script = textwrap.dedent("""
        import sys
        import ringgen as rg
        import ringgen.wire
        from ringgen.types import Str
        assert not [m for m in sys.modules if m.startswith("ringgen.codegen")], "eager import"

        @rg.message
        class Note:
            text: Str[8]

        assert rg.decode(Note, rg.encode(Note("hi"))) == Note("hi")
        assert "ringgen.codegen.bridged_py" in sys.modules
        """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
