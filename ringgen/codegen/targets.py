"""The emitter table: target name -> ``"module:function"``, run in this order by the writer.

Each emitter is a pure function ``emit(unit: BuildUnit) -> dict[str, str]`` (relative file name ->
text). An emitter that also takes ``emitted`` (the manifest) runs after all others and receives every
other file, so it can describe them. To add a target, add one line here.
"""

from __future__ import annotations

import importlib
from typing import Callable

__all__ = ["TARGETS", "resolve"]

TARGETS: dict[str, str] = {
    "header": "ringgen.codegen.header:emit",
    "serializers": "ringgen.codegen.serializers:emit",
    "bridged": "ringgen.codegen.bridged_py:emit",
    "manifest": "ringgen.codegen.manifest:emit",
    "package": "ringgen.codegen.package:emit",
    "runtime": "ringgen.codegen.runtime_module:emit",
    "c": "ringgen.codegen.c_target:emit",
    "metal": "ringgen.codegen.metal:emit",
    "opencl": "ringgen.codegen.opencl:emit",
    "cuda": "ringgen.codegen.cuda:emit",
}


def resolve(target: str) -> Callable:
    """Import and return the emitter of ``target`` (a key of ``TARGETS``).

    Raises:
        KeyError: ``target`` is not in the table.
        ImportError, AttributeError: the table names a module or function that does not exist.
    """
    module_name, _, func_name = TARGETS[target].partition(":")
    return getattr(importlib.import_module(module_name), func_name)
