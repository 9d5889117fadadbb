"""Compiling generated CUDA and caching the result: nvcc once per source, a cubin on disk after that.

Kept apart from the handle (``ringgen.runtime.cuda``): this module turns ``.cu`` text into a cubin
(``nvcc -cubin -arch=sm_XY``) and keeps it in a ``ringgen.cachestore`` entry under ``<ringgen
cache>/cuda``, named by a sha256 of the source, the options and the architecture. A warm start reads
the cubin and never runs nvcc (the loader hands the bytes to ``module_from_buffer``). Entries are
published whole, so processes can share the cache, and checked (owner, mode, SHA-256) when read: the
bytes handed to ``cuModuleLoadData`` are the bytes that were checked, and a damaged or swapped cubin
is compiled again into a fresh entry, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional, Sequence

from ... import cachestore
from ..logs import kernel_logger
from ...errors import CacheError, ToolchainError

__all__ = [
    "DEFAULT_OPTIONS",
    "cache_dir",
    "cache_key",
    "compile_cubin",
    "find_nvcc",
    "nvcc_compile",
]

log = kernel_logger(__name__)

#: Options every build gets (the architecture is added per device). ``--fmad=false``: a handler's
#: float arithmetic is rounded per operation, as in the reference backend; a contracted a*b+c can
#: differ from it by hundreds of ULPs where terms cancel (seen on examples/array_math's dot product).
DEFAULT_OPTIONS: tuple[str, ...] = ("-std=c++17", "-O3", "-lineinfo", "--fmad=false")

_lock = threading.Lock()
_memory: dict[str, bytes] = {}


#: The file of a cubin cache entry.
CUBIN = "kernel.cubin"


def cache_dir() -> Path:
    """Where cubins live: ``<ringgen cache>/cuda`` (``ringgen.cachestore.cache_root``)."""
    return cachestore.cache_root() / "cuda"


def cache_key(source: str, options: Sequence[str], arch: str) -> str:
    """The content hash naming a cache entry: source, options and architecture, nothing else."""
    h = hashlib.sha256()
    for part in (source, "\0".join(options), arch):
        h.update(part.encode())
        h.update(b"\0\0")
    return h.hexdigest()


def find_nvcc() -> Optional[str]:
    """The nvcc to use: ``$RINGGEN_NVCC``, else the one on PATH, else CUDA's default install; or None."""
    env = os.environ.get("RINGGEN_NVCC")
    if env:
        return env
    found = shutil.which("nvcc")
    if found:
        return found
    default = "/usr/local/cuda/bin/nvcc"
    return default if os.path.isfile(default) else None


def nvcc_compile(
    source: str,
    options: Sequence[str],
    arch: str,
    *,
    what: str,
    output: str = "cubin",
    timeout: float = 300.0,
) -> bytes:
    """Run nvcc on ``source`` and return the output file's bytes (``output``: "cubin" or "obj").

    Raises:
        ToolchainError: nvcc is missing, timed out, or rejected the source (its log is in the message).
    """
    nvcc = find_nvcc()
    if nvcc is None:
        raise ToolchainError(
            f"cannot compile {what}: nvcc was not found (PATH, $RINGGEN_NVCC, /usr/local/cuda/bin)",
            hint="install the CUDA toolkit, or set RINGGEN_NVCC to its nvcc",
        )
    flag = {"cubin": "-cubin", "obj": "-c"}[output]
    with tempfile.TemporaryDirectory(prefix="ringgen-nvcc-") as tmp:
        src = Path(tmp) / "kernel.cu"
        out = Path(tmp) / f"kernel.{output}"
        src.write_text(source)
        cmd = [nvcc, flag, f"-arch={arch}", *options, "-o", str(out), str(src)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolchainError(f"nvcc took longer than {timeout:g} s on {what}") from None
        if proc.returncode != 0:
            log_text = (proc.stderr + proc.stdout).replace(str(src), what)
            raise ToolchainError(
                f"nvcc ({arch}) rejected {what}:\n{log_text.strip()}",
                hint="this is a ringgen bug if the source is generated; please report it with the log",
            )
        return out.read_bytes()


def compile_cubin(
    source: str,
    arch: str,
    *,
    options: Sequence[str] = DEFAULT_OPTIONS,
    what: str = "<generated .cu>",
) -> tuple[bytes, bool]:
    """The cubin of ``source`` for ``arch`` (e.g. "sm_90"), from memory, the disk cache, or nvcc.

    Returns:
        (cubin bytes, True when nvcc ran for this call).

    Raises:
        ToolchainError: as ``nvcc_compile``.
        CacheError: the cache folder belongs to another user or others can write it.
    """
    key = cache_key(source, options, arch)
    with _lock:
        hit = _memory.get(key)
    if hit is not None:
        return hit, False
    compiled = []

    def compile_into(folder: Path) -> None:
        log.info("compiling %s with nvcc (%s)", what, arch)
        compiled.append(nvcc_compile(source, options, arch, what=what))
        (folder / CUBIN).write_bytes(compiled[0])

    try:
        entry = cachestore.get_or_build(
            cachestore.cache_subdir("cuda"),
            key[:32],
            key,
            compile_into,
            what=f"the cubin of {what}",
        )
        data = entry.files[CUBIN]  # the bytes that were checked against the entry's SHA-256
        if not compiled:
            log.debug("cubin for %s loaded from %s", what, entry.path)
    except CacheError:
        raise
    except OSError as exc:  # a read-only cache only costs a recompile next time
        log.warning("cannot write the CUDA cubin cache %s: %s", cache_dir(), exc)
        data = compiled[0] if compiled else nvcc_compile(source, options, arch, what=what)
        compiled.append(data)
    with _lock:
        _memory[key] = data
    return data, bool(compiled)
