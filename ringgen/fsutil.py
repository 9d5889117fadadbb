"""File-system helpers shared by the generator and the host runtimes (no other ringgen imports).

It sits at the package root so both sides of the flow (codegen -> generated -> runtime) may import it
without one reaching into the other.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: os.PathLike | str, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that a reader sees either the old file or the whole new one.

    The bytes go to a uniquely named temporary file in the same folder (so concurrent writers, threads
    or processes, never share one), which then replaces ``path`` in one ``os.replace``; on any failure
    the temporary file is removed, so none is left behind. The folder is created if missing, and the
    file gets ``mode`` (default 0644: ``mkstemp`` would leave it readable by its owner only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
