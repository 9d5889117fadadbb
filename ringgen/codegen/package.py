"""The ``package`` emitter: ``__init__.py``, so that ``generated/<name>`` imports as a package."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .env import render
from .header import header_name

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = ["emit"]


def emit(unit: "BuildUnit") -> dict[str, str]:
    """Emitter for the ``package`` target: ``{"__init__.py": text}``."""
    text = render(
        "python/init.py.j2",
        name=unit.name,
        module=unit.module,
        source_file=unit.source_file,
        version=unit.ringgen_version,
        fingerprint=unit.fingerprint,
        header=header_name(unit),
        messages=[m.name for m in unit.messages],
        kernels=[k.name for k in unit.kernels],
    )
    return {"__init__.py": text}
