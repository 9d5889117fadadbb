"""Build time grows linearly with classes and fields (issue 11; bench/build_time.py measures it).

The quadratic parts were: one parse of the whole user module per declared class (``inspect``),
black on megabyte-sized generated modules, and a per-message list search in the serializers
template. These tests guard against their return without being slow themselves.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

import ringgen as rg
from ringgen.codegen.pyformat import BLACK_MAX_CHARS, format_python
from ringgen.errors import BuildError
from ringgen.schema import spec_of
from ringgen.source_index import class_node

_BENCH = Path(__file__).resolve().parent.parent / "bench" / "build_time.py"
_spec = importlib.util.spec_from_file_location("bench_build_time", _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_400_classes_build_in_linear_time():
    small = bench.time_build(bench.module_with_classes(100), "classes100")
    large = bench.time_build(bench.module_with_classes(400), "classes400")
    # 1,000 classes take about 4 s of CPU on the 2-core machine; 400 took 25 s when it was quadratic
    assert large["cpu_s"] < 12.0, large
    # four times the classes: about four times the work (plus a fixed start-up), never sixteen
    assert large["cpu_s"] < 8 * small["cpu_s"], (small, large)


def test_10000_field_message_builds_within_bound():
    row = bench.time_build(bench.module_with_fields(10_000), "fields10000")
    assert row["cpu_s"] < 10.0, row  # 2.7 s measured; 26.6 s before


def test_large_generated_python_is_checked_not_formatted():
    text = "x = [\n" + "1,\n" * (BLACK_MAX_CHARS // 3) + "]\n"
    assert format_python(text, "big.py") is text
    with pytest.raises(BuildError, match=r"^error: generated big\.py is not valid Python"):
        format_python(text + "def (:\n" + "#" * 10, "big.py")
    assert format_python("x = [1,2]", "small.py") == "x = [1, 2]\n"


def test_class_positions_match_inspect_for_every_class_of_a_module(tmp_path, monkeypatch):
    src = tmp_path / "many_classes_mod.py"
    src.write_text(
        bench.module_with_classes(30)
        + "\n\ndef outer():\n    @rg.message\n    class M3:\n        z: i64\n\n    return M3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("many_classes_mod")
    inner = mod.outer()
    for cls in [getattr(mod, f"M{i}") for i in range(30)] + [inner]:
        node = class_node(str(src), cls.__qualname__)
        lines, start = inspect.getsourcelines(cls)
        assert lines[node.lineno - start].lstrip().startswith(f"class {cls.__name__}")
        spec = spec_of(cls)
        assert spec.pos.line == node.lineno
        assert spec.fields[0].pos.line == node.lineno + 1
