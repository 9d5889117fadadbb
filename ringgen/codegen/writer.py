"""The only code in ringgen that writes generated files.

``emit_unit`` runs every emitter of ``targets.TARGETS`` in table order (emitters that describe the
others, such as the manifest, last), formats Python output with black, and returns the texts;
``write_unit`` writes them into ``<out>/<unit.name>/``, each file atomically
(``ringgen.fsutil.write_atomic``: a temporary file in the same folder, then ``os.replace``) so a reader
never sees half a file, and removes files a previous build wrote that this one no longer emits.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterable, Optional

import attrs

from ..errors import BuildError
from ..fsutil import write_atomic
from .pyformat import format_python
from .targets import TARGETS, resolve

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = ["EmittedFile", "emit_unit", "format_python", "write_unit"]

log = logging.getLogger("ringgen")


@attrs.frozen
class EmittedFile:
    """One generated file: its name relative to the package folder, the target that made it, its text."""

    name: str
    target: str
    text: str


def _wants_emitted(func) -> bool:
    try:
        return "emitted" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _check_name(target: str, name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BuildError(f"target {target!r} emitted an invalid file name {name!r}")


def emit_unit(unit: "BuildUnit", targets: Optional[Iterable[str]] = None) -> dict[str, EmittedFile]:
    """Run the emitters (all of ``TARGETS``, or the named subset) and return every file, formatted.

    Raises:
        BuildError: two targets emit the same file, or a file name is invalid.
        KeyError: a named target is not in ``TARGETS``.
    """
    names = list(TARGETS) if targets is None else list(targets)
    funcs = {name: resolve(name) for name in names}
    # Describers (the manifest) see every other file, so they run after all of them.
    order = [n for n in names if not _wants_emitted(funcs[n])] + [
        n for n in names if _wants_emitted(funcs[n])
    ]
    files: dict[str, EmittedFile] = {}
    for target in order:
        func = funcs[target]
        log.debug("emitting target %s for %s", target, unit.name)
        out = func(unit, emitted=dict(files)) if _wants_emitted(func) else func(unit)
        for name, text in sorted(out.items()):
            _check_name(target, name)
            if name in files:
                raise BuildError(
                    f"targets {files[name].target!r} and {target!r} both emit {name!r}",
                    hint="give each target its own file names",
                )
            if name.endswith(".py"):
                text = format_python(text, name)
            files[name] = EmittedFile(name, target, text)
    return files


def write_unit(
    unit: "BuildUnit", out_dir: os.PathLike | str, targets: Optional[Iterable[str]] = None
) -> Path:
    """Emit ``unit`` and write it into ``<out_dir>/<unit.name>/``; return that folder.

    Files whose text is unchanged are not rewritten (their mtimes stay, so make and caches are calm).
    Files left from an earlier build of the same package that this build no longer emits are removed
    when every target runs (not for a subset); the folder is only cleaned when it holds a
    ``manifest.json``, i.e. when ringgen made it.

    Raises:
        BuildError: as ``emit_unit``, or the output folder cannot be created.
    """
    files = emit_unit(unit, targets)
    pkg = Path(out_dir) / unit.name
    try:
        pkg.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create output folder {pkg}: {exc.strerror}") from None
    ours = targets is None and (pkg / "manifest.json").exists()
    for name, f in files.items():
        path = pkg / name
        if path.is_file() and path.read_text(encoding="utf-8") == f.text:
            continue
        write_atomic(path, f.text.encode("utf-8"))
        log.info("wrote %s", path)
    if ours:
        for path in sorted(pkg.rglob("*")):
            rel = path.relative_to(pkg).as_posix()
            if path.is_file() and "__pycache__" not in path.parts and rel not in files:
                path.unlink()
                log.info("removed stale %s", path)
    return pkg
