"""Where classes are written in their source files, found with one parse per file.

``inspect.getsourcelines(cls)`` parses the whole module again for every class it is asked about, so
declaring N message classes in one file cost O(N x file size): 1,000 classes took minutes. Here each
file (as ``linecache`` holds it) is parsed once and every class definition in it is indexed by its
``__qualname__``, the way ``inspect`` finds classes (names inside a function get ``<locals>``).
"""

from __future__ import annotations

import ast
import linecache
from typing import Optional

__all__ = ["class_node"]

#: file -> (the linecache list it was built from, {qualname: first ClassDef with that qualname}).
#: Keyed by the list object as well, so a file that linecache reloads (edited, or a new exec'd
#: module with the same name) is parsed again.
_INDEX: dict[str, tuple[list[str], dict[str, ast.ClassDef]]] = {}


def _index_classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    """Every ClassDef by qualified name; the first definition of a name wins (as in
    ``inspect.findsource``). Walks statements only, without recursion: a handler with a 900-term
    expression must not reach Python's recursion limit here."""
    classes: dict[str, ast.ClassDef] = {}
    todo: list[tuple[list[ast.stmt], tuple[str, ...]]] = [(tree.body, ())]
    while todo:
        body, prefix = todo.pop()
        for node in body:
            scope = prefix
            if isinstance(node, ast.ClassDef):
                scope = prefix + (node.name,)
                known = classes.get(".".join(scope))
                if known is None or node.lineno < known.lineno:  # the first in the file wins
                    classes[".".join(scope)] = node
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope = prefix + (node.name, "<locals>")
            for attr in ("body", "orelse", "finalbody"):
                block = getattr(node, attr, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    todo.append((block, scope))
            for handler in getattr(node, "handlers", ()):
                todo.append((handler.body, scope))
            for case in getattr(node, "cases", ()):
                todo.append((case.body, scope))
    return classes


def class_node(
    file: str, qualname: str, module_globals: Optional[dict] = None
) -> Optional[ast.ClassDef]:
    """The ``ast.ClassDef`` of the class ``qualname`` in ``file`` (absolute line numbers), or None.

    Args:
        file: the source file (``inspect.getsourcefile``), as ``linecache`` knows it.
        qualname: the class's ``__qualname__``.
        module_globals: the module's globals, so ``linecache`` can ask its loader for the source.

    Returns:
        The first definition of that qualified name, or None when the file cannot be read or parsed
        or holds no such class.
    """
    linecache.checkcache(file)  # as inspect does: a file edited since is read again
    lines = linecache.getlines(file, module_globals)
    if not lines:
        return None
    cached = _INDEX.get(file)
    if cached is None or cached[0] is not lines:
        try:
            tree = ast.parse("".join(lines), filename=file)
        except (SyntaxError, ValueError):
            return None
        cached = (lines, _index_classes(tree))
        _INDEX[file] = cached
    return cached[1].get(qualname)
