"""The build cache, the runtime's side: find the cache root and import generated packages from it.

``rg.launch(kernel)`` builds the kernel's module once per content (``ringgen.jit``, which writes the
entries), then reuses it; this module only reads them (the runtime never imports the generator).

A cache entry is one generated package, named by a content hash: sha256 of the build unit's
fingerprint (the sources it was made from), the ringgen version, the generator's own sources and the
targets built. Entries are kept by ``ringgen.cachestore``: built in a temporary folder, listed with
the SHA-256 of every file, moved into place with one rename, and checked (owner, mode, every hash)
before anything in them is used; a damaged or foreign entry is rebuilt under a fresh name.

The cache lives in ``RINGGEN_CACHE_DIR`` (else ``$XDG_CACHE_HOME/ringgen``, else
``~/.cache/ringgen``). Generated packages are imported under a unique module name, so entries never
clash with each other or with a ``generated/`` folder on ``sys.path``; a cache entry's modules are
compiled from the bytes that were checked, never from ``__pycache__`` or a file read again later.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Optional

from .. import cachestore
from ..errors import BuildError, CacheError
from .logs import kernel_logger

__all__ = [
    "cache_dir",
    "import_package",
    "load_codecs",
]

log = kernel_logger(__name__)

ENV_VAR = cachestore.ENV_VAR

_lock = threading.Lock()


def cache_dir() -> Path:
    """The cache root (``ringgen.cachestore.cache_root``: ``$RINGGEN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/ringgen``, else ``~/.cache/ringgen``)."""
    return cachestore.cache_root()


class _CheckedSources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the modules of checked cache entries from the bytes that were checked.

    Each module name maps to (file name, source, is a package). Packages get an empty ``__path__``,
    so nothing but the listed modules can be imported from them.
    """

    def __init__(self) -> None:
        self.modules: dict[str, tuple[str, bytes, bool]] = {}

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 - importlib's hook
        hit = self.modules.get(fullname)
        if hit is None:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin=hit[0], is_package=hit[2])
        spec.has_location = True  # __file__ is the entry's file (tracebacks read it: same bytes)
        return spec

    def create_module(self, spec):  # noqa: D102 - importlib's hook
        return None

    def exec_module(self, module) -> None:  # noqa: D102 - importlib's hook
        filename, source, _ = self.modules[module.__spec__.name]
        exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)  # noqa: S102


_CHECKED = _CheckedSources()


def _register_sources(name: str, pkg: Path, sources: Mapping[str, bytes]) -> None:
    """Make the ``.py`` files of ``sources`` (paths relative to ``pkg``) importable as ``name``.
    The caller holds ``_lock``."""
    if _CHECKED not in sys.meta_path:
        sys.meta_path.insert(0, _CHECKED)
    for rel, data in sources.items():
        if not rel.endswith(".py"):
            continue
        parts = rel[: -len(".py")].split("/")
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        _CHECKED.modules[".".join([name, *parts])] = (str(pkg / rel), data, is_package)


def _module_name_for(package_dir: Path) -> str:
    digest = hashlib.sha256(str(package_dir).encode()).hexdigest()[:16]
    return f"_ringgen_pkg_{package_dir.name}_{digest}"


def import_package(
    package_dir: os.PathLike | str, sources: Optional[Mapping[str, bytes]] = None
) -> ModuleType:
    """Import the generated package in ``package_dir`` under a unique module name.

    The same folder is imported once per process. Relative imports inside the package work.

    Args:
        sources: the package's checked files by path relative to ``package_dir`` (a cache entry's):
            its modules are then compiled from these bytes, and only these modules can be imported
            from the package. Without it the package is imported from its folder, as Python does.

    Raises:
        BuildError: the folder holds no generated package, or importing it fails.
    """
    pkg = Path(package_dir).resolve()
    init = pkg / "__init__.py"
    if not ("__init__.py" in sources if sources is not None else init.is_file()):
        raise BuildError(
            f"{pkg} is not a generated package (no __init__.py)",
            hint="build it with `ringgen build <module> -o <folder>`",
        )
    name = _module_name_for(pkg)
    with _lock:
        module = sys.modules.get(name)
        if module is not None:
            return module
        if sources is not None:
            _register_sources(name, pkg, sources)
            spec = _CHECKED.find_spec(name)
        else:
            spec = importlib.util.spec_from_file_location(
                name, init, submodule_search_locations=[str(pkg)]
            )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise BuildError(
                f"importing the generated package {pkg} failed: " f"{type(exc).__name__}: {exc}",
                hint="rebuild it; if it persists, the generator has a bug",
            ) from exc
    return module


def load_codecs(
    package_dir: os.PathLike | str, sources: Optional[Mapping[str, bytes]] = None
) -> Mapping[str, Any]:
    """``serializers.CODECS`` of the generated package in ``package_dir`` (``sources``: as for
    ``import_package``).

    Raises:
        BuildError: the package cannot be imported, has no serializers, or is stale (a message class
            changed since it was generated).
    """
    package = import_package(package_dir, sources)
    try:
        serializers = importlib.import_module(f"{package.__name__}.serializers")
    except ImportError as exc:
        raise BuildError(
            f"{package_dir}: the generated package has no serializers ({exc})",
            hint="rebuild it with `ringgen build`",
        ) from None
    codecs = serializers.CODECS
    from ..codec import verify_layouts

    verify_layouts(codecs, str(package_dir))
    return codecs
