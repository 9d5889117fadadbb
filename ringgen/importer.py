"""Importing a build target (a module, a ``.py`` path or a dotted name) the way ``ringgen build`` does.

Shared by the generator (``ringgen.build``) and the runtime (``ringgen.runtime.launcher``, which
imports the module a generated package came from); it depends on nothing but ``ringgen.errors``.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Optional, Union

from .errors import BuildError, RinggenError

__all__ = ["import_target"]


def _looks_like_path(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target or os.path.exists(target)


def _dotted_name_for(path: Path) -> tuple[str, Path]:
    """``examples/vector_add.py`` -> ("examples.vector_add", folder above ``examples``)."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    root = path.parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    return ".".join(parts), root


def _import_error(exc: Exception, what: str, file: Optional[str]) -> BuildError:
    if isinstance(exc, SyntaxError):
        return BuildError(
            f"{what} has a syntax error: {exc.msg}",
            file=exc.filename or file,
            line=exc.lineno,
            col=(exc.offset - 1) if exc.offset else None,
        )
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if file and f.filename == file]
    where = frames[-1] if frames else None
    return BuildError(
        f"importing {what} failed: {type(exc).__name__}: {exc}",
        file=where.filename if where else file,
        line=where.lineno if where else None,
        hint="the module must import cleanly on its own: python -c 'import <module>'",
    )


def import_target(target: Union[str, os.PathLike, ModuleType]) -> ModuleType:
    """Import a build target given as a module, a ``.py`` path, or a dotted module name.

    A file inside a package (a folder with ``__init__.py``) is imported by its dotted name, with the
    package's parent folder put on ``sys.path``, so ``examples/vector_add.py`` is
    ``examples.vector_add`` and its relative imports work.

    Raises:
        BuildError: the file does not exist, is not Python, clashes with a module already imported
            from elsewhere, or fails to import (with the file and line where it failed).
        RinggenError: a declaration in the module is rejected (raised as the declaration raised it).
    """
    if isinstance(target, ModuleType):
        return target
    text = os.fspath(target)
    if not _looks_like_path(text):
        try:
            return importlib.import_module(text)
        except RinggenError:
            raise
        except ModuleNotFoundError as exc:
            if exc.name and text.startswith(exc.name):
                raise BuildError(
                    f"no module named {text!r}",
                    hint="pass a path to a .py file, or a dotted name importable from here",
                ) from None
            raise _import_error(exc, f"module {text}", None) from None
        except Exception as exc:
            raise _import_error(exc, f"module {text}", None) from None
    path = Path(text).resolve()
    if not path.is_file():
        raise BuildError(f"{text}: no such file")
    if path.suffix != ".py":
        raise BuildError(
            f"{text}: not a Python file", hint="pass a .py file or a dotted module name"
        )
    dotted, root = _dotted_name_for(path)
    existing = sys.modules.get(dotted)
    if existing is not None:
        existing_file = getattr(existing, "__file__", None)
        if existing_file and Path(existing_file).resolve() == path:
            return existing
        raise BuildError(
            f"{text}: module name {dotted!r} is already taken by {existing_file or 'a built-in'}",
            hint="rename the file, or build the other one in a separate process",
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        return importlib.import_module(dotted)
    except RinggenError:
        raise
    except Exception as exc:
        raise _import_error(exc, str(text), str(path)) from None
