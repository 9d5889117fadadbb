"""The host C toolchain: which compiler, and the flags that keep its floats the reference's.

A leaf (it imports nothing of ringgen), so the C target's emitter, the ``c`` backend's loader and
the wire format's native helpers all find the same compiler and build with the same flags. nvcc is
the CUDA loader's (``ringgen.runtime.cuda.build.find_nvcc``).
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

__all__ = ["C_STRICT_FLAGS", "find_c_compiler"]

#: gcc/clang flags for a build whose floats match the reference bit for bit: no contraction of
#: a * b + c into an FMA, no fast math; C99 with the POSIX clock.
C_STRICT_FLAGS: tuple[str, ...] = (
    "-O2",
    "-std=c99",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-D_POSIX_C_SOURCE=199309L",
)


def find_c_compiler(cc: Optional[str] = None) -> Optional[str]:
    """The C compiler's path: ``cc`` if given, else ``$CC``, else the first of cc, gcc, clang on
    PATH; None when there is none (or the named one is not on PATH)."""
    if cc is None:
        cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc)
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None
