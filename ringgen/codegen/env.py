"""The one jinja2 environment every emitter renders with.

``StrictUndefined`` turns a missing template variable into an error instead of an empty string, so a
template and its emitter cannot drift apart silently. Templates are found in the source tree's
``templates/`` folder, or, in an installed ringgen, in the ``ringgen.templates`` package that
pyproject.toml maps that folder to.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["environment", "render", "templates_dir"]


def templates_dir() -> Path:
    """The folder holding ringgen's templates: installed package first, then the source tree.

    Raises:
        FileNotFoundError: neither location exists (a broken installation).
    """
    package_dir = Path(__file__).resolve().parent.parent
    candidates = (package_dir / "templates", package_dir.parent / "templates")
    for candidate in candidates:
        if (candidate / "header").is_dir():
            return candidate
    raise FileNotFoundError(
        "ringgen templates not found (looked in " + ", ".join(str(c) for c in candidates) + ")"
    )


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The shared environment: strict, whitespace-controlled, trailing newline kept."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["hex32"] = lambda n: f"0x{int(n):08x}"
    env.filters["pyrepr"] = repr
    return env


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a path relative to templates/, e.g. ``header/types.h.j2``) with ``context``."""
    return environment().get_template(template).render(**context)
