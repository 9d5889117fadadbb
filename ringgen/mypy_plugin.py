"""A mypy plugin that reads ringgen's field types as the Python values they hold.

``i64``, ``f32``, ``bool_`` ... are objects (callable casts), and ``Array[f32, 4]`` takes a length,
which no Python type does; without help, mypy refuses every message class ("Variable
"ringgen.types.i64" is not valid as a type"). Enable the plugin in the project's mypy configuration::

    [tool.mypy]
    plugins = ["ringgen.mypy_plugin"]

and a field reads as the value it holds on the host:

| annotation | mypy sees |
|---|---|
| ``i8`` ... ``i64``, ``u8`` ... ``u64`` | ``int`` |
| ``f32``, ``f64`` | ``float`` |
| ``bool_`` | ``bool`` |
| ``Str[N]`` | ``str`` |
| ``List[T, N]`` | ``list[T]`` (the bound is checked by ringgen, not by mypy) |
| ``Array[T, N]`` | ``Any``: a list, a numpy array and a state default's fill value (``= 0``) are all valid |

``@rg.message`` is a ``dataclass_transform``, so mypy checks constructor calls by itself; with the
handlers typed, ``rg.launch(kernel)`` is a ``KernelHandle[Request, Reply]`` (docs/observability.md,
"Typed packages").
"""

from __future__ import annotations

from typing import Callable, Optional

from mypy.plugin import AnalyzeTypeContext, Plugin
from mypy.types import AnyType, Type, TypeOfAny

__all__ = ["plugin"]

_SCALARS = {
    **{f"ringgen.types.{n}": "builtins.int" for n in ("i8", "i16", "i32", "i64")},
    **{f"ringgen.types.{n}": "builtins.int" for n in ("u8", "u16", "u32", "u64")},
    "ringgen.types.f32": "builtins.float",
    "ringgen.types.f64": "builtins.float",
    "ringgen.types.bool_": "builtins.bool",
}
_ARRAY = "ringgen.types.Array"
_LIST = "ringgen.types.List"
_STR = "ringgen.types.Str"


def _scalar(fullname: str) -> Callable[[AnalyzeTypeContext], Type]:
    def analyze(ctx: AnalyzeTypeContext) -> Type:
        return ctx.api.named_type(fullname, [])

    return analyze


def _list(ctx: AnalyzeTypeContext) -> Type:
    args = ctx.type.args
    if len(args) != 2:
        ctx.api.fail("List takes an element type and a bound, e.g. List[f32, 16]", ctx.context)
        return AnyType(TypeOfAny.from_error)
    return ctx.api.named_type("builtins.list", [ctx.api.analyze_type(args[0])])


def _array(ctx: AnalyzeTypeContext) -> Type:
    if len(ctx.type.args) != 2:
        ctx.api.fail("Array takes an element type and a length, e.g. Array[f32, 4]", ctx.context)
        return AnyType(TypeOfAny.from_error)
    return AnyType(TypeOfAny.special_form)


def _str(ctx: AnalyzeTypeContext) -> Type:
    return ctx.api.named_type("builtins.str", [])


class RinggenPlugin(Plugin):
    """Maps ringgen's field types to Python types (the module's docstring has the table)."""

    def get_type_analyze_hook(
        self, fullname: str
    ) -> Optional[Callable[[AnalyzeTypeContext], Type]]:
        if fullname in _SCALARS:
            return _scalar(_SCALARS[fullname])
        if fullname == _LIST:
            return _list
        if fullname == _ARRAY:
            return _array
        if fullname == _STR:
            return _str
        return None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point: the plugin class for every mypy version ringgen supports."""
    return RinggenPlugin
