"""What the writer runs: the host-side targets here, then every backend's emitter from ``ringgen.targets``.

A host-side target is a pure function ``emit(unit) -> dict[str, str]`` (relative file name -> text)
that may also take ``options``, ``program`` or ``emitted`` (the manifest: it runs after all others
and receives every other file, so it can describe them). A backend's emitter is an
``ringgen.codegen.emitter.Emitter`` named by its row of ``ringgen.targets``; to add a backend, add
its row there, not here.
"""

from __future__ import annotations

from typing import Callable, Union

from .. import targets as registry
from ..errors import BuildError
from .emitter import Emitter

__all__ = ["TARGETS", "backend_emitter", "emitters", "is_backend", "resolve"]

#: Host-side targets: name -> ``"module:function"``, run in this order before the backends' emitters.
TARGETS: dict[str, str] = {
    "header": "ringgen.codegen.header:emit",
    "serializers": "ringgen.codegen.serializers:emit",
    "bridged": "ringgen.codegen.bridged_py:emit",
    "manifest": "ringgen.codegen.manifest:emit",
    "package": "ringgen.codegen.package:emit",
    "runtime": "ringgen.codegen.runtime_module:emit",
}


def emitters() -> dict[str, str]:
    """Every target the writer runs, in order: the host-side ones, then each backend that has an
    emitter, in the order of ``ringgen.targets.TARGETS``."""
    backends = {t.name: t.emitter for t in registry.TARGETS if t.emitter is not None}
    return {**TARGETS, **{n: spec for n, spec in backends.items() if n not in TARGETS}}


def is_backend(target: str) -> bool:
    """Whether ``target`` is a backend's emitter (it prints the handlers) rather than a host file."""
    return any(t.name == target and t.emitter is not None for t in registry.TARGETS)


def backend_emitter(target: str) -> Emitter:
    """The ``Emitter`` of backend ``target``.

    Raises:
        BackendUnavailableError: no backend has that name.
        BuildError: the backend emits nothing (the cpu backend).
        ImportError, AttributeError, TypeError: its row names code that does not exist or is not an
            ``Emitter``.
    """
    row = registry.by_name(target)
    if row.emitter is None:
        raise BuildError(f"backend {target} has no emitter (it generates no source)")
    found = registry.resolve(row.emitter)
    emitter = found() if isinstance(found, type) else found
    if not isinstance(emitter, Emitter):
        raise TypeError(f"backend {target}: {row.emitter} is not a ringgen.codegen.emitter.Emitter")
    return emitter


def resolve(target: str) -> Union[Callable, Emitter]:
    """The emitter of ``target``: a host-side target's function, or a backend's ``Emitter``.

    Raises:
        KeyError: ``target`` is neither a host-side target nor a backend with an emitter.
        ImportError, AttributeError: the table names a module or attribute that does not exist.
    """
    if target in TARGETS:
        return registry.resolve(TARGETS[target])
    if is_backend(target):
        return backend_emitter(target)
    raise KeyError(f"unknown target {target!r} (known: {', '.join(emitters())})")
