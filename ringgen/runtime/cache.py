"""The build cache: ``rg.launch(kernel)`` builds the kernel's module once per content, then reuses it.

A cache entry is one generated package, named by a content hash: sha256 of the build unit's
fingerprint (the sources it was made from) and the ringgen version. Entries are built in a temporary
folder next to their final place and moved there with one ``os.replace``, so two processes sharing the
cache never see half an entry: the loser of a race discards its copy and uses the winner's.

The cache lives in ``RINGGEN_CACHE_DIR`` (default ``~/.cache/ringgen``). Generated packages are
imported by file path under a unique module name, so entries never clash with each other or with a
``generated/`` folder on ``sys.path``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping, Optional

from .. import __version__
from ..errors import BuildError

__all__ = [
    "DEVICE_TARGETS",
    "build_targets",
    "built_package",
    "cache_dir",
    "cache_key",
    "ensure_built",
    "import_package",
    "load_codecs",
]

log = logging.getLogger("ringgen")

ENV_VAR = "RINGGEN_CACHE_DIR"

_lock = threading.Lock()


def cache_dir() -> Path:
    """The cache root: ``$RINGGEN_CACHE_DIR``, else ``~/.cache/ringgen``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ringgen"


#: Targets that emit device source; a cache entry holds only those its backend loads, so a
#: launch on the cpu never waits for (or fails in) a device emitter.
DEVICE_TARGETS = frozenset({"c", "cuda", "metal", "opencl"})


def build_targets(device_targets: Iterable[str] = ()) -> tuple[str, ...]:
    """Every host target of ``TARGETS`` (serializers, package, runtime, ...) plus ``device_targets``,
    in table order."""
    from ..codegen.targets import TARGETS

    wanted = set(device_targets)
    return tuple(t for t in TARGETS if t not in DEVICE_TARGETS or t in wanted)


#: What decides the text of a generated package, besides the user's source: ringgen's own modules and
#: templates (the runtime is left out: it reads packages, it does not write them).
_GENERATOR_PARTS = (
    "codegen",
    "dsl",
    "wire",
    "metal_shim",
    "types.py",
    "schema.py",
    "layout.py",
    "kernel.py",
    "protocol.py",
    "naming.py",
    "build.py",
    "codec.py",
)


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """sha256 over ringgen's generator sources and templates, so that an upgraded or edited ringgen
    never serves a cache entry an older generator wrote (the version number alone would)."""
    from ..codegen.env import templates_dir

    package = Path(__file__).resolve().parent.parent
    files = []
    for part in _GENERATOR_PARTS:
        path = package / part
        files += sorted(path.rglob("*")) if path.is_dir() else [path]
    files += sorted(Path(templates_dir()).rglob("*"))
    h = hashlib.sha256()
    for f in files:
        if f.is_file() and f.suffix not in (".pyc",) and "__pycache__" not in f.parts:
            h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def cache_key(fingerprint: str, targets: Iterable[str] = ()) -> str:
    """The content hash naming a cache entry: sha256 of the unit's fingerprint, ringgen's version,
    the generator's own fingerprint and the targets built."""
    text = (
        f"{fingerprint}\nringgen {__version__}\ngenerator {generator_fingerprint()}\n"
        f"targets {','.join(sorted(targets))}\n"
    )
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_built(unit: Any, targets: Optional[Iterable[str]] = None) -> Path:
    """The generated package of ``unit`` (a ``BuildUnit``) in the cache, building it if needed.

    Args:
        targets: the targets to build (default: ``build_targets()``, the host package only).

    Returns:
        The package folder (``<cache>/<name>-<key>/<name>``).

    Raises:
        BuildError: the cache folder cannot be written, or an emitter fails.
    """
    from ..codegen.writer import write_unit

    targets = build_targets() if targets is None else tuple(targets)
    key = cache_key(unit.fingerprint, targets)
    root = cache_dir()
    entry = root / f"{unit.name}-{key[:24]}"
    pkg = entry / unit.name
    if (pkg / "__init__.py").is_file():
        return pkg
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{unit.name}-", suffix=".building", dir=str(root)))
    except OSError as exc:
        raise BuildError(
            f"cannot write the build cache {root}: {exc.strerror}",
            hint=f"set {ENV_VAR} to a writable folder",
        ) from None
    try:
        write_unit(unit, tmp, targets)
        try:
            os.replace(tmp, entry)
            log.info("built %s into the cache: %s", unit.name, entry)
        except OSError:
            # Another process finished the same entry first (the target exists and is not empty).
            if not (pkg / "__init__.py").is_file():
                raise
            log.debug("cache entry %s was built concurrently; using it", entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return pkg


def _module_name_for(package_dir: Path) -> str:
    digest = hashlib.sha256(str(package_dir).encode()).hexdigest()[:16]
    return f"_ringgen_pkg_{package_dir.name}_{digest}"


def import_package(package_dir: os.PathLike | str) -> ModuleType:
    """Import the generated package in ``package_dir`` by its path, under a unique module name.

    The same folder is imported once per process. Relative imports inside the package work.

    Raises:
        BuildError: the folder holds no generated package, or importing it fails.
    """
    pkg = Path(package_dir).resolve()
    init = pkg / "__init__.py"
    if not init.is_file():
        raise BuildError(
            f"{pkg} is not a generated package (no __init__.py)",
            hint="build it with `ringgen build <module> -o <folder>`",
        )
    name = _module_name_for(pkg)
    with _lock:
        module = sys.modules.get(name)
        if module is not None:
            return module
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


def load_codecs(package_dir: os.PathLike | str) -> Mapping[str, Any]:
    """``serializers.CODECS`` of the generated package in ``package_dir``.

    Raises:
        BuildError: the package cannot be imported, has no serializers, or is stale (a message class
            changed since it was generated).
    """
    package = import_package(package_dir)
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


# Per process: (kernel spec, targets) -> (package folder, codecs), so launching the same kernel again
# costs no fingerprinting, building or importing. Keyed by id() with the spec kept alive alongside.
_BUILT: dict[tuple[int, tuple[str, ...]], tuple[Any, Path, Mapping[str, Any]]] = {}


def built_package(spec: Any, device_targets: Iterable[str] = ()) -> tuple[Path, Mapping[str, Any]]:
    """The cached package folder and codecs of the module declaring ``spec`` (building if needed),
    with the host targets and ``device_targets``."""
    targets = build_targets(device_targets)
    hit = _BUILT.get((id(spec), targets))
    if hit is not None and hit[0] is spec:
        return hit[1], hit[2]
    from ..build import collect

    module = sys.modules.get(spec.module)
    if module is None:
        raise BuildError(f"kernel {spec.name}: its module {spec.module!r} is not imported")
    unit = collect(module)
    pkg = ensure_built(unit, targets)
    codecs = load_codecs(pkg)
    with _lock:
        _BUILT[(id(spec), targets)] = (spec, pkg, codecs)
    return pkg, codecs
