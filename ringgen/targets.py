"""The one table of backends: every place ringgen knows a backend by name reads its row here.

A backend is registered by adding one ``Target`` to ``TARGETS``. The writer runs its emitter, the
manifest records its source, ``ringgen check`` runs its checker on that source, the runtime opens
kernels with its loader and ``auto`` tries it in ``auto_rank`` order, ``ringgen devices`` lists it
through its probe, and the CLI help names it. Host-side files that are not a backend's (the header,
the serializers, the manifest, ...) are ``ringgen.codegen.targets``'s.

This module is a leaf: data and strings only, importable from every layer. The code a row names is
written as ``"module:attribute"`` (or ``"module"`` for a loader) and imported only when ``resolve``
is asked for it, so reading the table never imports a generator, a driver or a compiler.

Capabilities are words from ``CAPABILITIES``:

| word | meaning |
|---|---|
| ``resident`` | a launched kernel stays resident and polls its queues (persistent mode) |
| ``relaunch`` | a kernel can run as one launch per batch of queued messages |
| ``bridged`` | kernels with bridged messages (``Str``, ``List``) run: the target has a wire codec |
| ``now`` | ``rg.now()`` works (OpenCL C has no device clock) |
| ``device`` | kernels run on an accelerator (a GPU, or an OpenCL device), not in the host process |
| ``fused_graph`` | a graph runs fused into one kernel (``strategy="shared_memory"``; ``graph_opener``) |
| ``grid_graph`` | a graph runs on the blocks of one grid with edge rings in device memory (``strategy="atomic_queue"``) |
"""

from __future__ import annotations

import importlib
from typing import Any, Optional

import attrs

from .errors import BackendUnavailableError

__all__ = [
    "CAPABILITIES",
    "TARGETS",
    "Target",
    "auto_order",
    "by_name",
    "with_capability",
    "host_backends",
    "names",
    "resolve",
]

#: The capability words a row may hold (the table above says what each means).
CAPABILITIES = frozenset(
    {"resident", "relaunch", "bridged", "now", "device", "fused_graph", "grid_graph"}
)


@attrs.frozen
class Target:
    """One backend: what emits its source, what loads and probes it, what checks its files.

    Attributes:
        name: the backend's name (``backend="cuda"``, the manifest's ``target``, ``--source cuda``).
        suffix: the suffix of the source file its emitter writes (``".cu"``), None without one.
        dialect: the language of that source, in words (``"CUDA C++"``), None without one.
        emitter: ``"module:Class"`` of its ``ringgen.codegen.emitter.Emitter``, None when it emits
            nothing (the cpu backend runs the handlers in Python).
        loader: the runtime module defining ``HANDLE_CLASS``, None when kernels cannot be launched
            from Python on it (Metal is emit-only).
        probe: ``"module:function"`` of its one probe: it raises ``BackendUnavailableError`` when the
            backend cannot run here and otherwise returns the devices it found (``auto``, ``rg.launch``
            and ``ringgen devices`` all call it); None when the backend is always present.
        install_hint: what to install when the probe fails.
        auto_rank: the place in ``auto``'s order (lower first), None when ``auto`` never picks it.
        checker: ``"module:function"`` that checks its source file (``ringgen check``), None
            without one.
        capabilities: words from ``CAPABILITIES``.
        graph_opener: ``"module:function"`` that launches a graph's fused kernel from its source
            and abi (``ringgen.runtime.graph_device.open_fused``), None where no graph runs fused.
    """

    name: str
    suffix: Optional[str]
    dialect: Optional[str]
    emitter: Optional[str]
    loader: Optional[str]
    probe: Optional[str]
    install_hint: str
    auto_rank: Optional[int]
    checker: Optional[str]
    capabilities: frozenset = attrs.field(converter=frozenset)
    graph_opener: Optional[str] = None

    def __attrs_post_init__(self) -> None:
        unknown = sorted(set(self.capabilities) - CAPABILITIES)
        if unknown:
            raise ValueError(
                f"target {self.name}: unknown capabilities {', '.join(unknown)} "
                f"(known: {', '.join(sorted(CAPABILITIES))})"
            )


#: Every backend, in the order the writer runs their emitters (``auto_order()`` is the launch order).
TARGETS: tuple[Target, ...] = (
    Target(
        name="c",
        suffix=".c",
        dialect="C99",
        emitter="ringgen.codegen.c_target:CEmitter",
        loader="ringgen.runtime.c_native",
        probe="ringgen.runtime.c_native:devices",
        install_hint="install a C compiler (gcc, clang) or set CC",
        auto_rank=3,
        checker="ringgen.check:check_c_source",
        capabilities={"resident", "now"},
    ),
    Target(
        name="metal",
        suffix=".metal",
        dialect="Metal Shading Language",
        emitter="ringgen.codegen.metal:MetalEmitter",
        loader=None,
        probe=None,
        install_hint="Metal kernels are emitted only; run them from Swift or Objective-C on a Mac",
        auto_rank=None,
        checker="ringgen.check:check_metal_source",
        capabilities={"relaunch", "bridged", "now", "device"},
    ),
    Target(
        name="opencl",
        suffix=".cl",
        dialect="OpenCL C",
        emitter="ringgen.codegen.opencl:OpenclEmitter",
        loader="ringgen.runtime.opencl",
        probe="ringgen.runtime.probes:probe_opencl",
        install_hint="install PyOpenCL and an OpenCL platform (pip install 'ringgen[opencl]' "
        "pocl-binary-distribution, or your vendor's ICD)",
        auto_rank=2,
        checker="ringgen.check:check_opencl_source",
        capabilities={"resident", "relaunch", "bridged", "device", "fused_graph"},
        graph_opener="ringgen.runtime.graph_opencl:open_fused",
    ),
    Target(
        name="cuda",
        suffix=".cu",
        dialect="CUDA C++",
        emitter="ringgen.codegen.cuda:CudaEmitter",
        loader="ringgen.runtime.cuda",
        probe="ringgen.runtime.probes:probe_cuda",
        install_hint="install PyCUDA (pip install 'ringgen[cuda]') on a machine with an NVIDIA GPU "
        "and driver",
        auto_rank=1,
        checker="ringgen.check:check_cuda_source",
        capabilities={"resident", "bridged", "now", "device", "fused_graph", "grid_graph"},
        graph_opener="ringgen.runtime.graph_cuda:open_fused",
    ),
    Target(
        name="cpu",
        suffix=None,
        dialect=None,
        emitter=None,
        loader="ringgen.runtime.cpu",
        probe="ringgen.runtime.probes:probe_cpu",
        install_hint="the cpu backend needs nothing beyond ringgen itself; reinstall ringgen",
        auto_rank=4,
        checker=None,
        capabilities={"resident", "bridged", "now"},
    ),
)


def names() -> tuple[str, ...]:
    """The name of every backend, in table order."""
    return tuple(t.name for t in TARGETS)


def by_name(name: str) -> Target:
    """The row of backend ``name``.

    Raises:
        BackendUnavailableError: no backend has that name (the message lists the known ones).
    """
    for target in TARGETS:
        if target.name == name:
            return target
    raise BackendUnavailableError(
        f"unknown backend {name!r} (known: {', '.join(names())})",
        hint="ringgen devices lists the backends this machine can run",
    )


def auto_order() -> tuple[Target, ...]:
    """The backends ``auto`` tries, in order (those with an ``auto_rank``, lowest first)."""
    ranked = [t for t in TARGETS if t.auto_rank is not None]
    return tuple(sorted(ranked, key=lambda t: t.auto_rank))


def with_capability(word: str) -> tuple[Target, ...]:
    """The backends whose row holds the capability ``word``, in table order."""
    return tuple(t for t in TARGETS if word in t.capabilities)


def host_backends() -> tuple[Target, ...]:
    """The launchable backends that run kernels in the host process (no ``device`` capability),
    the ``cpu`` reference aside: today ``c``. The kernel generator and the contract tests run every
    one of them, so a new host backend joins both by its row."""
    return tuple(
        t
        for t in TARGETS
        if t.loader is not None and "device" not in t.capabilities and t.name != "cpu"
    )


def resolve(spec: str) -> Any:
    """Import what ``spec`` names: ``"module:attribute"`` gives the attribute, ``"module"`` the module.

    Raises:
        ImportError: the module cannot be imported (the driver it needs is missing, a typo).
        AttributeError: the module has no such attribute (the message names both).
    """
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise AttributeError(
            f"{spec}: module {module_name} has no attribute {attribute!r}"
        ) from None
