"""Opening backends: each backend's row of ``ringgen.targets`` resolved lazily, and the ``auto`` choice.

A backend's loader module (its row's ``loader``) exposes ``HANDLE_CLASS``, its ``KernelHandle``
subclass; its row's ``probe`` (``ringgen.runtime.probes``) raises ``BackendUnavailableError`` when
its driver or device is missing. Importing this module imports no driver: PyCUDA and PyOpenCL are
only touched when a backend is asked for, so ``import ringgen`` stays cheap and works on a machine
with neither.

``auto`` picks the first available backend in ``ringgen.targets.auto_order()`` (cuda, opencl, c
when a C compiler is present, cpu); the ``RINGGEN_BACKEND`` environment variable,
when set, replaces ``auto`` (an explicit ``backend=`` argument still wins over it). When the chosen
backend is present but cannot run this kernel (``BackendUnavailableError`` from its launch, e.g. an
OpenCL kernel that calls ``rg.now()``), ``auto`` logs why and launches on the next available one; a
backend the user named (argument or environment variable) is never replaced.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Mapping, Optional, Tuple

from .. import targets as registry
from ..errors import BackendUnavailableError, BuildError
from ..kernel import KernelSpec
from .logs import kernel_logger
from .base import KernelHandle

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "available_backends",
    "load_backend",
    "open_kernel",
    "resolve_backend",
]

log = kernel_logger(__name__)


def _backends() -> dict[str, str]:
    """Backend name -> the module that implements it: the rows of ``ringgen.targets`` with a loader."""
    return {t.name: t.loader for t in registry.TARGETS if t.loader is not None}


def _auto_order() -> tuple[str, ...]:
    """The backends ``auto`` tries, in order (``ringgen.targets.auto_order()``)."""
    return tuple(t.name for t in registry.auto_order() if t.loader is not None)


def __getattr__(name: str) -> Any:
    # BACKENDS and AUTO_ORDER are views of ringgen.targets, read when asked for, so that they never
    # disagree with the table (a row added at run time, as the tests do, is seen at once).
    if name == "BACKENDS":
        return _backends()
    if name == "AUTO_ORDER":
        return _auto_order()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ENV_VAR = "RINGGEN_BACKEND"


def _check_name(name: str, source: str) -> None:
    known = _backends()
    if name not in known:
        raise BackendUnavailableError(
            f"unknown backend {name!r}{source}",
            hint=f"choose one of: auto, {', '.join(known)}",
        )


#: Backends already loaded (drivers do not come and go within a process; probing costs milliseconds).
_LOADED: dict[str, type[KernelHandle]] = {}


def load_backend(name: str) -> type[KernelHandle]:
    """The handle class of backend ``name``, after checking its driver and device are present.

    Raises:
        BackendUnavailableError: the name is unknown, the backend module is not installed, or its
            driver or device is missing (the message says what to install).
    """
    _check_name(name, "")
    if name in _LOADED:
        return _LOADED[name]
    target = registry.by_name(name)
    if target.probe is not None:
        registry.resolve(target.probe)()
    module_name = target.loader
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise BackendUnavailableError(
                f"backend {name}: module {module_name} is not part of this ringgen installation",
                hint="upgrade ringgen, or choose another backend (ringgen devices lists them)",
            ) from None
        raise BackendUnavailableError(f"backend {name}: {exc}", hint=target.install_hint) from None
    cls = getattr(module, "HANDLE_CLASS", None)
    if not (isinstance(cls, type) and issubclass(cls, KernelHandle)):
        raise BackendUnavailableError(
            f"backend {name}: {module_name} does not define HANDLE_CLASS (a KernelHandle subclass)",
            hint="this is a bug in that backend module",
        )
    _LOADED[name] = cls
    return cls


def resolve_backend(backend: str = "auto") -> str:
    """The concrete backend ``backend`` stands for: itself, or for ``auto`` the first available one
    in ``AUTO_ORDER`` (``RINGGEN_BACKEND`` replaces ``auto`` when set).

    Raises:
        BackendUnavailableError: the name (or the environment variable's value) is unknown, or an
            explicitly named backend is unavailable.
    """
    if backend == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env and env != "auto":
            _check_name(env, f" (from the environment variable {ENV_VAR})")
            load_backend(env)
            return env
        reasons = []
        for name in _auto_order():
            try:
                load_backend(name)
            except BackendUnavailableError as exc:
                reasons.append(exc.message)
                continue
            log.debug("backend auto -> %s (skipped: %s)", name, "; ".join(reasons) or "none")
            return name
        raise BackendUnavailableError("no backend is available: " + "; ".join(reasons))
    load_backend(backend)
    return backend


def available_backends() -> list[str]:
    """The backends usable on this machine, in ``auto`` order (``cpu`` always among them)."""
    out = []
    for name in _auto_order():
        try:
            load_backend(name)
        except BackendUnavailableError:
            continue
        out.append(name)
    return out


def _candidates(backend: str) -> list[str]:
    """The backends to try for ``backend``, in order: every available one for a plain ``auto``,
    else just the one it names."""
    if backend == "auto" and os.environ.get(ENV_VAR, "").strip().lower() in ("", "auto"):
        first = resolve_backend("auto")  # raises, listing why, when none is available
        order = _auto_order()
        later = order[order.index(first) + 1 :]
        return [first] + [n for n in available_backends() if n in later]
    return [resolve_backend(backend)]


def open_kernel(
    spec: KernelSpec,
    package_dir: Optional[str],
    backend: str = "auto",
    *,
    codecs: Optional[Mapping[str, Any]] = None,
    package_for: Optional[Callable[[str], Tuple[str, Mapping[str, Any]]]] = None,
    **options: Any,
) -> KernelHandle:
    """Launch ``spec`` on ``backend`` and return its running ``KernelHandle``.

    With ``auto`` (and no ``RINGGEN_BACKEND``), a backend that raises ``BackendUnavailableError``
    for this kernel is skipped (logged at info on the "ringgen" logger) for the next available one.

    Args:
        spec: the kernel to launch.
        package_dir: its generated package directory (codecs and sources are read from there).
        backend: "auto" or a name of ``BACKENDS``.
        codecs: the package's ``serializers.CODECS``, when the caller has imported it already.
        package_for: instead of ``package_dir`` and ``codecs``: ``name -> (package_dir, codecs)``
            for the backend about to be tried (``rg.launch`` builds each backend's sources this way).
        options: backend options (``capacity``, and those a device backend documents).

    Raises:
        BackendUnavailableError: as ``resolve_backend``, or no candidate backend can run the kernel
            (the last one's error).
        BuildError: no package was given, or it has no codec for one of the kernel's messages.
        KernelTimeoutError, KernelFaultError: the kernel did not start.
    """
    names = _candidates(backend)
    for name, fallback in zip(names, names[1:]):
        if package_for is not None:
            package_dir, codecs = package_for(name)
        try:
            return _open_on(name, spec, package_dir, codecs, options)
        except BackendUnavailableError as exc:
            log.info(
                "backend auto: %s cannot run kernel %s (%s); trying %s",
                name,
                spec.name,
                exc.message,
                fallback,
                extra={"kernel": spec.name},
            )
    if package_for is not None:
        package_dir, codecs = package_for(names[-1])
    return _open_on(names[-1], spec, package_dir, codecs, options)


def _open_on(
    name: str,
    spec: KernelSpec,
    package_dir: Optional[str],
    codecs: Optional[Mapping[str, Any]],
    options: Mapping[str, Any],
) -> KernelHandle:
    cls = load_backend(name)
    if codecs is None:
        if package_dir is None:
            raise BuildError(
                f"kernel {spec.name}: launching needs its generated package (package_dir or codecs)",
                hint="use rg.launch(kernel), which builds the package into the cache",
            )
        from .cache import load_codecs

        codecs = load_codecs(package_dir)
    return cls.open(spec, package_dir, codecs=codecs, **options)
