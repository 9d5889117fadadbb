"""Turning a position in a handler's source into a ``HandlerError`` with file, line, column and caret."""

from __future__ import annotations

import ast
from typing import Optional

from ..errors import HandlerError
from ..kernel import SourceInfo

__all__ = ["Diagnostics", "unsupported_node_message"]


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


_HINTS = {
    "Dict": "messages and locals are fixed-size; use a @rg.message class or Array fields",
    "Set": "use an Array field and a loop",
    "List": "only `[]` (an empty List, to fill with .append) can be written here",
    "Tuple": "handlers have no tuples; use separate locals",
    "ListComp": "write a for loop",
    "SetComp": "write a for loop",
    "DictComp": "write a for loop",
    "GeneratorExp": "write a for loop",
    "Lambda": "declare a @rg.device function",
    "Try": "handlers cannot raise or catch; return a message that reports the problem",
    "TryStar": "handlers cannot raise or catch; return a message that reports the problem",
    "Raise": "return a rejection message (or None) instead of raising",
    "With": "remove the with block; handlers have no context managers",
    "AsyncWith": "remove the with block; handlers have no context managers",
    "Import": "import at module level; handlers may use math.* and rg.* names",
    "ImportFrom": "import at module level; handlers may use math.* and rg.* names",
    "Global": "kernel state lives in an @rg.state parameter; module constants can be read directly",
    "Nonlocal": "kernel state lives in an @rg.state parameter",
    "FunctionDef": "declare helpers at module level with @rg.device",
    "AsyncFunctionDef": "handlers are synchronous",
    "ClassDef": "declare messages at module level with @rg.message",
    "Yield": "emit messages through an rg.Outbox[Msg] parameter: out.emit(Msg(...))",
    "YieldFrom": "emit messages through an rg.Outbox[Msg] parameter: out.emit(Msg(...))",
    "Await": "handlers are synchronous",
    "Delete": "locals cannot be deleted",
    "Assert": "use if and return a rejection message",
    "JoinedStr": "handlers have no string formatting; copy Str fields or compare them",
    "Starred": "pass arguments one by one",
    "NamedExpr": "assign on its own line",
    "Slice": "index one element at a time in a loop",
    "Match": "use if/elif/else",
    "AugAssign": None,
    "AnnAssign": "drop the annotation; a local's type is inferred (cast the value: x = f32(0))",
    "Is": "use == or !=",
    "IsNot": "use == or !=",
    "In": "write a loop that compares each element",
    "NotIn": "write a loop that compares each element",
    "MatMult": "write the loops out",
    "Pow": "use math.pow(x, y) or multiply",
}


def unsupported_node_message(node: ast.AST) -> tuple[str, Optional[str]]:
    """The one message (and hint) for an AST node outside the allow-list."""
    name = type(node).__name__
    return f"`ast.{name}` is not supported in handlers", _HINTS.get(name)
