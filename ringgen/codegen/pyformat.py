"""Formatting of generated Python: black, within a size bound that keeps builds linear.

Generated Python is formatted with black (STYLE.md: "formatted (black for Python)") so a reader sees
ordinary code. Black's time grows faster than the file, though: 1.5 s for 370 kB and 3.5 s for 750 kB
of text it had already formatted, 41 s for the 1.5 MB ``bridged.py`` of 1,000 classes. Past
``BLACK_MAX_CHARS`` the text is therefore only checked (parsed) and left as the templates wrote it,
which keeps ``ringgen build`` linear in classes and fields (docs/architecture.md, "Build time"); the
examples' modules are a few kB and always formatted.
"""

from __future__ import annotations

import ast
import logging

import black

from ..errors import BuildError

__all__ = ["BLACK_MAX_CHARS", "format_python"]

log = logging.getLogger(__name__)

#: Fixed, not read from the user's pyproject: generated text must not depend on where it is built.
_BLACK_MODE = black.Mode(line_length=100)

#: Generated Python longer than this (characters, before formatting) is not run through black.
BLACK_MAX_CHARS = 64_000

#: Large texts already checked (``bridged.py`` passes through twice: ``render_bridged``, then the
#: writer); parsing 1.5 MB takes over a second. A few entries, compared in full on a hit.
_CHECKED: dict[int, str] = {}


def format_python(text: str, name: str = "<generated>") -> str:
    """Format generated Python with black; past ``BLACK_MAX_CHARS``, check it and return it as is.

    Formatting is idempotent, so text formatted once (``render_bridged``) may pass through again.

    Args:
        text: the module's source.
        name: its file name, for the error message.

    Returns:
        The formatted text (ending in a newline).

    Raises:
        BuildError: the text is not valid Python (a template bug), naming the file.
    """
    if len(text) > BLACK_MAX_CHARS:
        if _CHECKED.get(hash(text)) != text:
            try:
                compile(text, name, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
            except SyntaxError as exc:
                raise BuildError(f"generated {name} is not valid Python: {exc}") from None
            if len(_CHECKED) >= 4:
                _CHECKED.clear()
            _CHECKED[hash(text)] = text
        log.debug("%s: %d characters, left unformatted", name, len(text))
        return text if text.endswith("\n") else text + "\n"
    try:
        return black.format_str(text, mode=_BLACK_MODE)
    except black.InvalidInput as exc:
        raise BuildError(f"generated {name} is not valid Python: {exc}") from None
