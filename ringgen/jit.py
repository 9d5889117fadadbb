"""Just-in-time builds: ``rg.launch(kernel)`` builds the kernel's module into the cache, then opens it.

This is the layer above both the generator (``ringgen.build``, ``ringgen.codegen``) and the runtime
(``ringgen.runtime``): it builds a cache entry with the writer and hands the package folder to the
runtime, which only reads it (docs/architecture.md, "Layers").

A cache entry is one generated package, named by a content hash: sha256 of the build unit's
fingerprint (the sources it was made from), the ringgen version, the generator's own sources and the
targets built. Entries are kept by ``ringgen.cachestore`` (see ``ringgen.runtime.cache`` for how
they are imported).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, overload

from . import cachestore
from ._version import __version__
from .build import collect
from .codegen import cuda as cuda_codegen
from .codegen import graph_kernel, graph_queue
from .codegen.env import templates_dir
from .codegen.options import EmitOptions
from .codegen.targets import emitters, is_backend
from .codegen.writer import write_unit
from .errors import BackendUnavailableError, BuildError, CacheError
from .graphs import Graph
from .graph_fusion import counter_layout, fused_spec
from .kernel import InT, OutT, RingKernel, kernel_spec_of
from .runtime import KernelHandle, load_backend, open_kernel
from .runtime.cache import load_codecs
from .runtime.backends import resolve_backend
from .runtime.graph_device import (
    DEVICE_STRATEGIES,
    FusedGraphHandle,
    check_strategy,
    open_fused,
)
from .runtime.graph_host import STRATEGIES, GraphHandle

__all__ = [
    "DEVICE_TARGETS",
    "build_targets",
    "built_package",
    "cache_key",
    "ensure_built",
    "generator_fingerprint",
    "fault_hook",
    "launch",
]

ENV_VAR = cachestore.ENV_VAR

log = logging.getLogger(__name__)

_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    # DEVICE_TARGETS: the targets that emit device source (every backend with an emitter in
    # ringgen.targets), read from the table when asked for. A cache entry holds only those its
    # backend loads, so a launch on the cpu never waits for (or fails in) a device emitter.
    if name == "DEVICE_TARGETS":
        return frozenset(t for t in emitters() if is_backend(t))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_targets(device_targets: Iterable[str] = ()) -> tuple[str, ...]:
    """Every host-side target (serializers, package, runtime, ...) plus ``device_targets``, in the
    writer's order (``ringgen.codegen.targets.emitters()``)."""
    wanted = set(device_targets)
    return tuple(t for t in emitters() if not is_backend(t) or t in wanted)


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
    "graphs.py",
    "protocol.py",
    "naming.py",
    "importer.py",
    "_version.py",
    "build.py",
    "codec.py",
)


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """sha256 over ringgen's generator sources and templates, so that an upgraded or edited ringgen
    never serves a cache entry an older generator wrote (the version number alone would)."""
    package = Path(__file__).resolve().parent
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


def cache_key(
    fingerprint: str, targets: Iterable[str] = (), options: Optional[EmitOptions] = None
) -> str:
    """The content hash naming a cache entry: sha256 of the unit's fingerprint, ringgen's version,
    the generator's own fingerprint, the targets built and the emit options (default:
    ``EmitOptions.from_env()``; ``RINGGEN_LINE_DIRECTIVES`` changes the output, so the key)."""
    options = EmitOptions.from_env() if options is None else options
    text = (
        f"{fingerprint}\nringgen {__version__}\ngenerator {generator_fingerprint()}\n"
        f"targets {','.join(sorted(targets))}\noptions {options.key()}\n"
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _entry(unit: Any, targets: tuple[str, ...]) -> cachestore.Entry:
    """The checked cache entry of ``unit`` built with ``targets``, building it if needed.

    Raises:
        CacheError: the cache root is not the user's, or others can write it.
        BuildError: the cache cannot be written, or an emitter fails.
    """
    options = EmitOptions.from_env()
    key = cache_key(unit.fingerprint, targets, options)
    root = cachestore.cache_root()
    try:
        return cachestore.get_or_build(
            cachestore.cache_subdir(),
            f"{unit.name}-{key[:24]}",
            key,
            lambda folder: write_unit(unit, folder, targets, options=options),
            what=f"the cache entry of {unit.name}",
        )
    except CacheError:
        raise
    except OSError as exc:
        raise BuildError(
            f"cannot write the build cache {root}: {exc.strerror or exc}",
            hint=f"set {ENV_VAR} to a writable folder",
        ) from None


def ensure_built(unit: Any, targets: Optional[Iterable[str]] = None) -> Path:
    """The generated package of ``unit`` (a ``BuildUnit``) in the cache, building it if needed.

    The entry is checked first (``ringgen.cachestore.open_entry``); one that fails a check is
    rebuilt under a fresh name, with a warning.

    Args:
        targets: the targets to build (default: ``build_targets()``, the host package only).

    Returns:
        The package folder (``<cache>/<name>-<key>[.N]/<name>``).

    Raises:
        CacheError: the cache root is not the user's, or others can write it.
        BuildError: the cache folder cannot be written, or an emitter fails.
    """
    targets = build_targets() if targets is None else tuple(targets)
    return _entry(unit, targets).path / unit.name


# Per process: (kernel spec, targets) -> (package folder, codecs), so launching the same kernel again
# costs no fingerprinting, building or importing. Keyed by id() with the spec kept alive alongside.
_BUILT: dict[tuple[int, tuple[str, ...], EmitOptions], tuple[Any, Path, Mapping[str, Any]]] = {}


def built_package(spec: Any, device_targets: Iterable[str] = ()) -> tuple[Path, Mapping[str, Any]]:
    """The cached package folder and codecs of the module declaring ``spec`` (building if needed),
    with the host targets and ``device_targets``."""
    targets = build_targets(device_targets)
    memo = (id(spec), targets, EmitOptions.from_env())
    hit = _BUILT.get(memo)
    if hit is not None and hit[0] is spec:
        return hit[1], hit[2]
    module = sys.modules.get(spec.module)
    if module is None:
        raise BuildError(f"kernel {spec.name}: its module {spec.module!r} is not imported")
    unit = collect(module)
    entry = _entry(unit, targets)
    pkg = entry.path / unit.name
    prefix = f"{unit.name}/"
    sources = {k[len(prefix) :]: v for k, v in entry.files.items() if k.startswith(prefix)}
    codecs = load_codecs(pkg, sources)
    with _lock:
        _BUILT[memo] = (spec, pkg, codecs)
    return pkg, codecs


def fault_hook(
    kernel: str, debug_fault: Optional[tuple[str, int]], source: Optional[str]
) -> Optional[cuda_codegen.FaultHook]:
    """The test-only ``debug_fault`` launch option as a ``FaultHook`` (None when not given).

    Raises:
        ValueError: not ``(kind, n)`` with a known kind and n >= 0, or given with ``source``.
    """
    if debug_fault is None:
        return None
    if source is not None:
        raise ValueError(f"kernel {kernel}: debug_fault and source cannot be combined")
    try:
        kind, after = debug_fault
        return cuda_codegen.FaultHook(kind, int(after))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"kernel {kernel}: debug_fault must be (kind, n) with kind one of "
            f"{', '.join(cuda_codegen.FAULT_KINDS)} and n >= 0, got {debug_fault!r}"
        ) from exc


def _fault_source(spec: Any, hook: Any) -> str:
    """The ``.cu`` of ``spec``'s module emitted in memory with the test-only fault hook (the
    package's file never has it)."""
    module = sys.modules.get(spec.module)
    if module is None:
        raise BuildError(f"kernel {spec.name}: its module {spec.module!r} is not imported")
    unit = collect(module)
    return cuda_codegen.emit(unit, fault=hook)[cuda_codegen.source_name(unit)]


# For type checkers: a kernel declared from typed handlers launches as KernelHandle[In, Out], a
# graph as a GraphHandle.
@overload
def launch(
    kernel: RingKernel[InT, OutT], backend: str = ..., **options: Any
) -> KernelHandle[InT, OutT]: ...
@overload
def launch(kernel: Graph, backend: str = ..., **options: Any) -> GraphHandle: ...
@overload
def launch(kernel: Any, backend: str = ..., **options: Any) -> Any: ...


def launch(kernel: Any, backend: str = "auto", **options: Any) -> Any:
    """Build ``kernel``'s module into the cache (once per content) and launch it, in one call.

    Args:
        kernel: a ``@rg.ring_kernel``, or a graph of them (``rg.graph``, ``rg.pipeline``,
            ``a >> b``): then every stage is launched on one backend and a ``GraphHandle`` is
            returned (``_launch_graph``; docs/graphs.md).
        backend: "auto" (the first available in ``ringgen.targets.auto_order()``: cuda, opencl,
            c, cpu; ``RINGGEN_BACKEND`` replaces auto), or a backend's name.
        options: launch options, e.g. ``capacity=4096`` (docs/runtime.md lists each backend's).

    Returns:
        The running ``KernelHandle`` (``GraphHandle`` for a graph); use it as a context manager so
        the kernel is terminated.

    Raises:
        TypeError: ``kernel`` is not a ``@rg.ring_kernel`` or a graph.
        BuildError, SchemaError, HandlerError: the kernel's module does not build.
        BackendUnavailableError: the backend is unknown or absent, or cannot run a graph's stage
            (the message names the stage).
    """
    if isinstance(kernel, Graph):
        return _launch_graph(kernel, backend, **options)
    spec = kernel_spec_of(kernel)
    # Test-only (docs/cuda.md): the CUDA source with a fault hook, emitted here, above the runtime.
    hook = fault_hook(spec.name, options.pop("debug_fault", None), options.get("source"))
    if hook is not None:
        options["source"] = _fault_source(spec, hook)

    def package_for(name: str) -> tuple:
        # A device backend loads the source its own target emits ("opencl" -> <name>.cl).
        targets = load_backend(name).targets or ((name,) if is_backend(name) else ())
        package_dir, codecs = built_package(spec, targets)
        return str(package_dir), codecs

    # open_kernel resolves "auto", and falls back past a backend that cannot run this kernel.
    return open_kernel(spec, None, backend, package_for=package_for, **options)


def _launch_graph(graph: Graph, backend: str, **options: Any) -> GraphHandle:
    """Launch every stage of ``graph`` on one backend and forward between them on the host.

    ``backend="auto"`` is decided by the entry stage (the first backend that runs it); every other
    stage must run there too. Options go to every stage, except ``strategy`` (how edges are
    carried: ``"host"``, or a device strategy: ``_launch_fused``; default ``"shared_memory"`` on
    CUDA, else ``"host"``) and ``edge_capacity`` (messages an edge holds; default the consumer's
    queue capacity).

    Raises:
        ValueError: an unknown ``strategy``.
        BackendUnavailableError: a stage cannot run on the backend (naming the stage); the
            stages already launched are stopped.
    """
    strategy = options.pop("strategy", None)
    if strategy is None:
        # The default (docs/graphs.md, "Strategies"): fused on CUDA, where a second resident
        # kernel cannot start; host-forwarded elsewhere.
        strategy = "shared_memory" if _resolves_to(backend) == "cuda" else "host"
    if strategy not in STRATEGIES and strategy not in DEVICE_STRATEGIES:
        raise ValueError(
            f"graph {graph.label}: unknown strategy {strategy!r} (strategies: "
            f"{', '.join(STRATEGIES + tuple(DEVICE_STRATEGIES))})"
        )
    if strategy in DEVICE_STRATEGIES:
        return _launch_fused(graph, resolve_backend(backend), strategy, **options)
    edge_capacity = options.pop("edge_capacity", None)
    handles: dict[str, KernelHandle] = {}
    chosen = backend
    try:
        for kernel in graph.kernels:
            name = kernel.spec.name
            try:
                handle = launch(kernel, chosen, **options)
            except BackendUnavailableError as exc:
                raise BackendUnavailableError(
                    f"graph {graph.label}: stage {name} cannot run on backend {chosen}: "
                    f"{exc.message}",
                    hint=exc.hint or "launch the graph on a backend every stage runs on",
                ) from None
            handles[name] = handle
            chosen = handle.backend
        return GraphHandle(graph, handles, edge_capacity=edge_capacity)
    except BaseException:
        for name, handle in handles.items():
            try:
                handle.terminate(drain=False)
            except Exception:  # noqa: BLE001 - the launch error is the one to report
                log.exception(
                    "graph %s: stopping stage %s after a failed launch", graph.label, name
                )
        raise


def _resolves_to(backend: str) -> Optional[str]:
    """The backend ``backend`` stands for, or None when there is none (the host strategy then
    reports it, naming the stage that cannot run)."""
    try:
        return resolve_backend(backend)
    except BackendUnavailableError:
        return None


def _fused_unit(graph: Graph) -> Any:
    """The build holding every stage of ``graph``: its entry's module, else the graph's."""
    for name in dict.fromkeys((graph.spec(graph.entry).module, graph.module)):
        module = sys.modules.get(name)
        if module is not None:
            unit = collect(module)
            if set(graph.stages) <= {k.name for k in unit.kernels}:
                return unit
    raise BuildError(
        f"graph {graph.label}: no module declares or imports all its stages "
        f"({', '.join(graph.stages)})",
        file=graph.file,
        line=graph.line,
        hint="declare the graph in a module that imports every stage",
    )


def _launch_fused(graph: Graph, backend: str, strategy: str, **options: Any) -> FusedGraphHandle:
    """Launch ``graph`` as one device kernel on ``backend``: fused (``shared_memory``:
    ``ringgen.codegen.graph_kernel``) or as per-stage blocks (``atomic_queue``:
    ``ringgen.codegen.graph_queue``, with ``workers`` worker blocks in all, by default
    ``graph_queue.default_workers``).

    The package of the stages' module gives the codecs; the fused source is emitted here (the
    nvcc and OpenCL caches key on its text), so a graph need not be bound to a module variable.

    Raises:
        ValueError: ``backend`` cannot run ``strategy``, ``edge_capacity`` is given (an edge's
            bound is fixed by the types and the strategy), or ``atomic_queue`` gets fewer
            ``workers`` than stages.
        BackendUnavailableError: the blocks cannot all be resident (naming the graph, its stages
            and the strategy).
        BuildError: the graph cannot be fused (several exits, several stateful stages) or does
            not fit one thread (``graph_kernel.check_fits``).
    """
    check_strategy(graph, strategy, backend)
    if options.pop("edge_capacity", None) is not None:
        raise ValueError(
            f"graph {graph.label}: strategy {strategy!r} takes no edge_capacity (its edges' bounds "
            "are fixed by the stages' types and the strategy: docs/graphs.md, 'Strategies')"
        )
    unit = _fused_unit(graph)
    emit_options = EmitOptions.from_env()
    if strategy == graph_queue.STRATEGY:
        spec = graph_queue.launch_spec(graph)
        source = graph_queue.emit(unit, graph, options=emit_options)
        abi = graph_queue.abi(graph)
        capacity = graph_queue.edge_capacity(graph)
        workers = options.setdefault("workers", graph_queue.default_workers(graph))
        if not isinstance(workers, int) or workers < len(graph.stages):
            raise ValueError(
                f"graph {graph.label}: strategy {strategy!r} needs at least one worker block per "
                f"stage ({len(graph.stages)}), got workers={workers!r}"
            )
    else:
        spec = fused_spec(graph)
        source = graph_kernel.emit_fused(unit, graph, backend, options=emit_options)
        abi = graph_kernel.abi(graph, backend, source)
        capacity = graph_kernel.edge_capacity(graph)
    package_dir, codecs = built_package(graph.spec(graph.entry))
    try:
        kernel = open_fused(
            backend,
            spec,
            str(package_dir),
            source=source,
            abi=abi,
            counters=counter_layout(graph).total,
            codecs=codecs,
            **options,
        )
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"graph {graph.label} (stages {', '.join(graph.stages)}, strategy {strategy}): "
            f"{exc.message}",
            hint=exc.hint,
        ) from None
    return FusedGraphHandle(graph, kernel, strategy=strategy, edge_capacity=capacity)
