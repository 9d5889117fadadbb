"""Turning a position in a handler's source into a ``HandlerError`` with file, line, column and caret."""

from __future__ import annotations

import ast
from typing import Optional

from ..errors import HandlerError
from ..kernel import SourceInfo

__all__ = [
    "Diagnostics",
    "builtin_call_message",
    "module_value_message",
    "unsupported_node_message",
]


class Diagnostics:
    """Builds errors for one function's source (``SourceInfo`` from ``ringgen.kernel``)."""

    def __init__(self, info: SourceInfo, where: str) -> None:
        self.info = info
        self.where = where  # "kernel vector_add" or "device function clamp"
        self._lines = info.text.splitlines()

    def line_of(self, node: ast.AST) -> int:
        """The 1-based line of ``node`` in the user's file."""
        return self.info.first_line + getattr(node, "lineno", 1) - 1

    def error(self, node: ast.AST, message: str, hint: Optional[str] = None) -> HandlerError:
        """A ``HandlerError`` located at ``node`` (its first line, from its column to its end column)."""
        lineno = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0) + self.info.col_offset
        end_line = getattr(node, "end_lineno", lineno)
        end = getattr(node, "end_col_offset", None)
        src = self._lines[lineno - 1] if 0 < lineno <= len(self._lines) else None
        if src is not None:
            src = " " * self.info.col_offset + src
            if end is None or end_line != lineno:
                end = len(src.rstrip()) - self.info.col_offset
        end_col = end + self.info.col_offset if end is not None else None
        return HandlerError(
            f"{self.where}: {message}",
            file=self.info.file,
            line=self.line_of(node),
            col=col,
            end_col=end_col,
            hint=hint,
            source_line=src,
        )


#: What a Python user calls each construct outside the allow-list, and what to write instead.
_CONSTRUCTS: dict[str, tuple[str, Optional[str]]] = {
    "Dict": (
        "a dict literal",
        "messages and locals are fixed-size; use a @rg.message class or Array fields",
    ),
    "Set": ("a set literal", "use an Array and a loop, or `x in (a, b, c)` for a test"),
    "ListComp": ("a list comprehension", "write a for loop"),
    "SetComp": ("a set comprehension", "write a for loop"),
    "DictComp": ("a dict comprehension", "write a for loop"),
    "GeneratorExp": ("a generator expression", "write a for loop"),
    "Lambda": ("a lambda", "declare a @rg.device function"),
    "Try": (
        "a try statement",
        "handlers cannot raise or catch; return a message that reports the problem",
    ),
    "TryStar": (
        "a try statement",
        "handlers cannot raise or catch; return a message that reports the problem",
    ),
    "Raise": ("a raise statement", "return a rejection message (or None) instead of raising"),
    "With": ("a with statement", "remove the with block; handlers have no context managers"),
    "AsyncWith": ("an async with statement", "handlers are synchronous"),
    "AsyncFor": ("an async for loop", "handlers are synchronous"),
    "Import": ("an import", "import at module level; handlers may use math.* and rg.* names"),
    "ImportFrom": ("an import", "import at module level; handlers may use math.* and rg.* names"),
    "Global": (
        "a global statement",
        "kernel state lives in an @rg.state parameter; module constants can be read directly",
    ),
    "Nonlocal": ("a nonlocal statement", "kernel state lives in an @rg.state parameter"),
    "FunctionDef": ("a nested function", "declare helpers at module level with @rg.device"),
    "AsyncFunctionDef": ("a nested async function", "handlers are synchronous"),
    "ClassDef": ("a class definition", "declare messages at module level with @rg.message"),
    "Yield": (
        "yield",
        "emit messages through an rg.Outbox[Msg] parameter: out.emit(Msg(...))",
    ),
    "YieldFrom": (
        "yield from",
        "emit messages through an rg.Outbox[Msg] parameter: out.emit(Msg(...))",
    ),
    "Await": ("await", "handlers are synchronous"),
    "Delete": ("a del statement", "locals cannot be deleted"),
    "Assert": ("an assert statement", "use if and return a rejection message"),
    "JoinedStr": (
        "an f-string",
        "handlers have no string formatting; copy Str fields, store string literals, or compare",
    ),
    "TemplateStr": ("a template string", "handlers have no string formatting"),
    "FormattedValue": ("an f-string", "handlers have no string formatting"),
    "Starred": ("a starred expression (*x)", "pass arguments one by one"),
    "NamedExpr": ("an assignment expression (:=)", "assign on its own line"),
    "Slice": ("a slice", "index one element at a time in a loop"),
    "Match": ("a match statement", "use if/elif/else"),
    "TypeAlias": ("a type statement", "declare types at module level"),
    "Is": ("an `is` comparison", "use == or !="),
    "IsNot": ("an `is not` comparison", "use == or !="),
    "MatMult": ("the matrix multiplication operator @", "write the loops out"),
}


def unsupported_node_message(node: ast.AST) -> tuple[str, Optional[str]]:
    """The one message (and hint) for an AST node outside the allow-list, named as Python names it."""
    name = type(node).__name__
    what, hint = _CONSTRUCTS.get(name, (_words(name), None))
    return f"{what} is not supported in handlers", hint


def _words(name: str) -> str:
    """``'AugAssign'`` -> ``'this construct (aug assign)'``: never the ``ast`` class name alone."""
    spaced = "".join(" " + c.lower() if c.isupper() else c for c in name).strip()
    return f"this construct ({spaced})"


_LOOP = "write a for loop"
#: Python builtins a handler cannot call: (message, hint). ``range``, ``len``, ``min``, ``max``,
#: ``abs`` are supported; ``int``/``float``/``bool`` have their own hint (a cast).
_BUILTINS: dict[str, tuple[str, str]] = {
    "print": (
        "kernels cannot print",
        "report values through the output message, an Outbox or state fields",
    ),
    "sum": ("sum() is not supported in handlers", "add in a for loop: for x in seq: total += x"),
    "round": (
        "round() is not supported in handlers",
        "use math.floor(x + 0.5) to round half up, or a cast: i32(x) truncates toward zero",
    ),
    "pow": (
        "pow() is not supported in handlers",
        "use x ** n for a constant n in 0..8, or math.pow(x, y)",
    ),
    "divmod": ("divmod() is not supported in handlers", "use q = a // b and r = a % b"),
    "enumerate": (
        "enumerate() can only be the iterable of a for loop",
        "for i, v in enumerate(seq): ...",
    ),
    "zip": (
        "zip() is not supported in handlers",
        "loop over the indices: for i in range(len(a)): ... a[i] ... b[i]",
    ),
    "sorted": ("sorted() is not supported in handlers", "sort on the host, or " + _LOOP),
    "reversed": (
        "reversed() is not supported in handlers",
        "loop backwards: for i in range(len(seq) - 1, -1, -1)",
    ),
    "map": ("map() is not supported in handlers", _LOOP),
    "filter": ("filter() is not supported in handlers", _LOOP),
    "any": ("any() is not supported in handlers", _LOOP + " with a flag local"),
    "all": ("all() is not supported in handlers", _LOOP + " with a flag local"),
    "isinstance": (
        "isinstance() is not supported in handlers",
        "every value's type is fixed when the handler is compiled",
    ),
    "type": (
        "type() is not supported in handlers",
        "every value's type is fixed when the handler is compiled",
    ),
    "str": (
        "str() is not supported in handlers",
        "handlers have no string formatting; store string literals or copy Str fields",
    ),
    "repr": ("repr() is not supported in handlers", "handlers have no string formatting"),
    "format": ("format() is not supported in handlers", "handlers have no string formatting"),
    "list": (
        "list() is not supported in handlers",
        "make an Array local from a list literal: v = [a, b, c]",
    ),
    "tuple": (
        "tuple() is not supported in handlers",
        "handlers have no tuple values; unpack them where you write them: a, b = x, y",
    ),
    "dict": (
        "dict() is not supported in handlers",
        "messages and locals are fixed-size; use a @rg.message class",
    ),
    "set": ("set() is not supported in handlers", "use an Array and a loop"),
    "hash": ("hash() is not supported in handlers", "compute the hash you need in a loop"),
    "input": ("input() is not supported in handlers", "handlers read only their message"),
    "open": ("open() is not supported in handlers", "handlers read only their message"),
}

#: numpy scalar types and their ringgen names, for ``np.float32(x)`` -> ``f32(x)``.
_NUMPY_TYPES = {
    "float32": "f32",
    "float64": "f64",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "bool_": "bool_",
    "double": "f64",
    "single": "f32",
}


def builtin_call_message(name: str, value: object) -> Optional[tuple[str, str]]:
    """(message, hint) for a call to a Python builtin or a numpy function a handler cannot
    make, or None when ``name`` is neither."""
    if name in _BUILTINS and getattr(value, "__module__", None) == "builtins":
        return _BUILTINS[name]
    module = getattr(value, "__module__", None) or ""
    if (
        module == "numpy"
        or module.startswith("numpy.")
        or isinstance(value, type)
        and (value.__module__ == "numpy")
    ):
        short = name.split(".")[-1]
        if short in _NUMPY_TYPES:
            rg_name = _NUMPY_TYPES[short]
            return (
                f"numpy's {short} is not supported in handlers",
                f"use ringgen's type: {rg_name}(x) (from ringgen.types import {rg_name})",
            )
        return (
            f"numpy function {name}() is not supported in handlers",
            "handlers compute on scalars: use math.* functions, operators and loops",
        )
    return None


def module_value_message(name: str, value: object) -> Optional[tuple[str, str]]:
    """(message, hint) for a module-level value a handler cannot read (a list, a tuple, an array,
    a string), or None."""
    if isinstance(value, (list, tuple)) or type(value).__module__ == "numpy":
        kind = type(value).__name__
        return (
            f"'{name}' is a module-level {kind}; handlers can read only scalar constants",
            "put the table in an Array field with a default in the @rg.state class (or in the "
            "message), or write its values as scalar constants",
        )
    if isinstance(value, str):
        return (
            f"'{name}' is a module-level string; handlers can read only scalar constants",
            "write the string literal where it is compared or stored",
        )
    return None
