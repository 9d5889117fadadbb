"""What one build contains: ``collect(path_or_module) -> BuildUnit``.

``collect`` imports the user's module (a file path or a dotted module name), gathers every message and
state class, ring kernel, device function and graph of kernels declared in it (a graph's stages
join the build's kernels), adds the message classes those reach (kernel inputs, outputs, state,
outbox, nested fields), lays each out once, rejects two different classes that share a name, and
fingerprints the sources. Emitters receive the result and nothing else.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterable, Optional, Union

import attrs

from ._version import __version__
from .errors import BuildError
from .graphs import Graph, named
from .importer import import_target
from .kernel import DeviceFunction, KernelSpec, RingKernel
from .layout import MessageLayout, layout_of
from .schema import is_message_class, spec_of

__all__ = ["BuildUnit", "collect", "import_target"]


@attrs.frozen
class BuildUnit:
    """Everything one generated package is made from (docs/architecture.md, "BuildUnit").

    ``messages`` holds every message and state layout the build uses, dependencies first;
    ``kernels`` and ``device_functions`` are in declaration order; ``source_file`` is relative to the
    folder the module is imported from (``examples/vector_add.py``), so output does not depend on
    where the repository is checked out. ``source_path`` is the module's absolute file (None when
    it has none); only the writer reads it, to keep a package from shadowing the module (emitters
    must not, or their output would depend on the checkout). ``graphs`` are the module's graphs
    (``rg.graph``, ``rg.pipeline``, ``a >> b`` bound to a module variable), each named (its
    ``name=``, else the variable's name), in declaration order; their stages are in ``kernels``.
    """

    name: str
    module: str
    source_file: str
    messages: tuple[MessageLayout, ...]
    kernels: tuple[KernelSpec, ...]
    device_functions: tuple[DeviceFunction, ...]
    fingerprint: str
    source_path: Optional[str] = attrs.field(default=None, eq=False, repr=False)
    graphs: tuple[Graph, ...] = ()

    @property
    def ringgen_version(self) -> str:
        return __version__

    @property
    def direct_messages(self) -> tuple[MessageLayout, ...]:
        return tuple(m for m in self.messages if not m.is_bridged)

    @property
    def bridged_messages(self) -> tuple[MessageLayout, ...]:
        return tuple(m for m in self.messages if m.is_bridged)

    def layout(self, name_or_cls: Union[str, type]) -> MessageLayout:
        """The layout of one message of this build, by class name or class.

        Raises:
            KeyError: the build has no such message.
        """
        name = name_or_cls if isinstance(name_or_cls, str) else name_or_cls.__name__
        for m in self.messages:
            if m.name == name:
                return m
        raise KeyError(name)


def _relative_source(module: ModuleType) -> str:
    file = Path(getattr(module, "__file__", None) or f"{module.__name__}.py")
    parts = module.__name__.split(".")
    if file.name == "__init__.py":
        return "/".join(parts + ["__init__.py"])
    return "/".join(parts[:-1] + [file.name])


def _where(cls: type) -> str:
    decl = getattr(cls, "__ringgen_decl__", None)
    pos = decl.pos if decl is not None else None
    if pos is not None and pos.file:
        return f"{pos.file}:{pos.line}" if pos.line else pos.file
    return f"module {cls.__module__}"


def _ordered_classes(roots: Iterable[type]) -> list[type]:
    """Every class reachable from ``roots``, dependencies first; two classes, one name: BuildError."""
    out: list[type] = []
    by_name: dict[str, type] = {}
    for root in roots:
        spec = spec_of(root)
        for dep in [s.cls for s in spec.nested()] + [root]:
            if any(dep is c for c in out):
                continue
            other = by_name.get(dep.__name__)
            if other is not None:
                raise BuildError(
                    f"duplicate message name {dep.__name__!r}: {other.__module__}.{other.__qualname__} "
                    f"({_where(other)}) and {dep.__module__}.{dep.__qualname__} ({_where(dep)})",
                    hint="message names are C struct names and must be unique in a build; rename one",
                )
            by_name[dep.__name__] = dep
            out.append(dep)
    return out


def _fingerprint(modules: Iterable[ModuleType]) -> str:
    h = hashlib.sha256(f"ringgen {__version__}\n".encode())
    for mod in sorted(set(modules), key=lambda m: m.__name__):
        try:
            text = inspect.getsource(mod)
        except (OSError, TypeError):
            text = ""
        h.update(f"module {mod.__name__}\n".encode())
        h.update(hashlib.sha256(text.encode()).hexdigest().encode())
    return h.hexdigest()


def _add_kernel(kernels: list[KernelSpec], spec: KernelSpec, mod_name: str) -> None:
    other = next((k for k in kernels if k.name == spec.name), None)
    if other is not None:
        raise BuildError(
            f"duplicate kernel name {other.name!r} in {mod_name}",
            file=spec.pos.file,
            line=spec.pos.line,
            col=spec.pos.col,
            hint="pass name=... to @rg.ring_kernel",
        )
    kernels.append(spec)


def _collect_graphs(module: ModuleType) -> tuple[Graph, ...]:
    """The graphs declared in ``module`` (bound to its variables), each named, in order.

    Raises:
        BuildError: two graphs of the module have one name.
    """
    out: list[Graph] = []
    seen: list[Graph] = []
    for var, obj in vars(module).items():
        if not isinstance(obj, Graph) or obj.module != module.__name__:
            continue
        if any(obj is g for g in seen):
            continue  # an alias counts once
        seen.append(obj)
        g = obj if obj.name else named(obj, var)
        other = next((o for o in out if o.name == g.name), None)
        if other is not None:
            raise BuildError(
                f"duplicate graph name {g.name!r} in {module.__name__} (declared at lines "
                f"{other.line} and {g.line})",
                file=g.file,
                line=g.line,
                hint="pass name=... to rg.graph or rg.pipeline",
            )
        out.append(g)
    return tuple(out)


def collect(
    target: Union[str, os.PathLike, ModuleType], *, name: Optional[str] = None
) -> BuildUnit:
    """Import ``target`` and gather what one build contains.

    Args:
        target: a ``.py`` path, a dotted module name, or an imported module.
        name: the package name under the output folder (default: the module's last name component).

    Raises:
        BuildError: the target cannot be imported, declares nothing, or two classes share a name,
            or two kernels share a name.
        SchemaError, LayoutError: a message is rejected (naming class and field).
    """
    module = import_target(target)
    mod_name = module.__name__
    own: list = []
    for obj in vars(module).values():  # definition order; an alias counts once
        if getattr(obj, "__module__", None) == mod_name and all(obj is not o for o in own):
            own.append(obj)
    kernels: list[KernelSpec] = []
    for obj in own:
        if isinstance(obj, RingKernel) and all(obj.spec is not k for k in kernels):
            _add_kernel(kernels, obj.spec, mod_name)
    graphs = _collect_graphs(module)
    for g in graphs:
        for stage in g.kernels:
            if all(stage.spec is not k for k in kernels):
                _add_kernel(kernels, stage.spec, mod_name)
    device_functions = tuple(obj for obj in own if isinstance(obj, DeviceFunction))
    roots = [obj for obj in own if is_message_class(obj)]
    for k in kernels:
        roots.extend(c for c in (k.input, k.output, k.state, k.outbox) if c is not None)
    if not roots and not kernels:
        raise BuildError(
            f"{mod_name} declares no @rg.message, @rg.state or @rg.ring_kernel",
            file=getattr(module, "__file__", None),
            hint="decorate message classes with @rg.message and handlers with @rg.ring_kernel",
        )
    classes = _ordered_classes(roots)
    layouts = tuple(layout_of(cls) for cls in classes)
    sources = [module] + [sys.modules[c.__module__] for c in classes if c.__module__ in sys.modules]
    sources += [sys.modules[k.module] for k in kernels if k.module in sys.modules]
    return BuildUnit(
        name=name or mod_name.rpartition(".")[2],
        module=mod_name,
        source_file=_relative_source(module),
        messages=layouts,
        kernels=tuple(kernels),
        device_functions=device_functions,
        fingerprint=_fingerprint(sources),
        source_path=getattr(module, "__file__", None),
        graphs=graphs,
    )
