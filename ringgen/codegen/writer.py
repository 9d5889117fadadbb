"""The only code in ringgen that writes generated files.

``emit_unit`` runs every emitter of ``targets.emitters()`` in order (the host-side targets, then each
backend's ``Emitter`` from ``ringgen.targets``; emitters that describe the others, such as the
manifest, last), formats Python output with black, and returns the texts;
``write_unit`` writes them into ``<out>/<unit.name>/``, each file atomically
(``ringgen.fsutil.write_atomic``: a temporary file in the same folder, then ``os.replace``) so a reader
never sees half a file. ``write_units`` does the same for several modules, all or nothing: every unit
is emitted and every destination checked before the first file is written.

A build deletes only its own files. The manifest lists every file ringgen wrote with its SHA-256; a
rebuild removes a file only when the previous manifest lists it, this build no longer emits it and
its content is unchanged since. A folder that is not empty and holds no ringgen manifest is not
ringgen's: building into it is refused unless ``force`` (then nothing there is deleted), and so is
overwriting a file ringgen did not write. A package that would shadow a module next to it
(``foo/`` beside ``foo.py``: ``import foo`` would find the package) is refused as well.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import attrs

from ..errors import BuildError
from ..fsutil import write_atomic
from ..dsl import compile_program
from .options import EmitOptions
from .pyformat import format_python
from .emitter import Emitter
from .graph_kernel import FUSED_TARGETS, source_path
from .graph_strategies import STRATEGIES
from .targets import emitters, resolve

if TYPE_CHECKING:
    from ..build import BuildUnit

__all__ = [
    "EmittedFile",
    "emit_graphs",
    "emit_unit",
    "format_python",
    "write_unit",
    "write_units",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: Folders Python creates beside modules; they do not make a package folder "not empty".
_IGNORED = frozenset({"__pycache__"})


@attrs.frozen
class EmittedFile:
    """One generated file: its name relative to the package folder, the target that made it, its text."""

    name: str
    target: str
    text: str


def _takes(func, name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _wants_emitted(func) -> bool:
    return _takes(func, "emitted")


def _check_name(target: str, name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BuildError(f"target {target!r} emitted an invalid file name {name!r}")


def emit_unit(
    unit: "BuildUnit",
    targets: Optional[Iterable[str]] = None,
    options: Optional[EmitOptions] = None,
) -> dict[str, EmittedFile]:
    """Run the emitters (all of ``targets.emitters()``, or the named subset) and return every file,
    formatted.

    ``options`` (default: ``EmitOptions.from_env()``) go to every backend's emitter and every
    host-side one that takes ``options``. The handlers are compiled once, when the first backend's
    emitter runs, and that ``ir.Program`` goes to every later emitter that takes it (the manifest
    asks each backend which kernels it leaves out).

    Raises:
        BuildError: two targets emit the same file, or a file name is invalid.
        KeyError: a named target is neither a host-side target nor a backend with an emitter.
    """
    options = EmitOptions.from_env() if options is None else options
    names = list(emitters()) if targets is None else list(targets)
    funcs = {name: resolve(name) for name in names}
    # Describers (the manifest) see every other file, so they run after all of them, the fused
    # graphs' sources included.
    describers = [n for n in names if _wants_emitted(funcs[n])]
    order = [n for n in names if n not in describers] + [None] + describers
    files: dict[str, EmittedFile] = {}
    program = None
    for target in order:
        if target is None:
            for f in emit_graphs(unit, [n for n in names if n in FUSED_TARGETS], options):
                _add(files, f.target, f.name, f.text)
            continue
        func = funcs[target]
        log.debug("emitting target %s for %s", target, unit.name)
        if isinstance(func, Emitter):
            if program is None:
                program = compile_program(unit.kernels, unit.device_functions, unit.source_file)
            out = func.emit(unit, program, options)
        else:
            kwargs = {"options": options} if _takes(func, "options") else {}
            if _takes(func, "program"):
                kwargs["program"] = program
            if _takes(func, "emitted"):
                kwargs["emitted"] = dict(files)
            out = func(unit, **kwargs)
        for name, text in sorted(out.items()):
            _add(files, target, name, text)
    return files


def _add(files: dict[str, EmittedFile], target: str, name: str, text: str) -> None:
    _check_name(target, name)
    if name in files:
        raise BuildError(
            f"targets {files[name].target!r} and {target!r} both emit {name!r}",
            hint="give each target its own file names",
        )
    if name.endswith(".py"):
        text = format_python(text, name)
    files[name] = EmittedFile(name, target, text)


def emit_graphs(
    unit: "BuildUnit", targets: Iterable[str], options: Optional[EmitOptions] = None
) -> list[EmittedFile]:
    """The device sources of ``unit``'s graphs, per strategy (``graph_strategies.STRATEGIES``) and
    per target of ``targets`` it has, at ``graphs/<graph>.<strategy>.<ext>``. A graph that a
    strategy refuses gets no file for it; the manifest says why."""
    wanted = set(targets)
    out = []
    for g in unit.graphs:
        for strategy in STRATEGIES.values():
            for target in strategy.targets:
                if target not in wanted:
                    continue
                try:
                    text = strategy.emit(unit, g, target, options)
                except BuildError:
                    continue  # recorded as "refused" in the manifest (manifest._strategies)
                out.append(EmittedFile(source_path(g.name, target, strategy.name), target, text))
    return out


@attrs.frozen
class _Plan:
    """What writing one package does: the files to write, and the stale files to remove."""

    pkg: Path
    files: dict[str, EmittedFile]
    remove: tuple[Path, ...]


def _safe_name(name: object) -> bool:
    if not isinstance(name, str) or not name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and "\\" not in name


def _previous_files(pkg: Path) -> tuple[Optional[dict[str, str]], str]:
    """The files the previous build listed (path -> sha256), or None with what is there instead."""
    path = pkg / MANIFEST
    if not path.is_file():
        return None, f"holds no {MANIFEST}"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        ours = (
            isinstance(manifest.get("manifest_version"), int)
            and isinstance(manifest.get("ringgen_version"), str)
            and isinstance(files, list)
            and all(
                isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str) for f in files
            )
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ours = False
    if not ours:
        return None, f"holds a {MANIFEST} that ringgen did not write"
    return {f["path"]: f["sha256"] for f in files if _safe_name(f["path"])}, ""


def _contents(pkg: Path) -> list[str]:
    """The entries of ``pkg`` that make it "not empty" (``__pycache__`` does not)."""
    try:
        return sorted(p.name for p in pkg.iterdir() if p.name not in _IGNORED)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise BuildError(
            f"cannot build into {pkg}: it is a file", hint="choose another -o folder or --name"
        ) from None


def _sha256(path: Path) -> Optional[str]:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _check_shadowing(unit: "BuildUnit", pkg: Path) -> None:
    """Refuse ``pkg`` when a module beside it has its name (``foo/`` next to ``foo.py``): ``import
    foo`` would then find the package, and the next build of ``foo.py`` would import the package,
    which imports ``foo`` again (a circular import)."""
    beside = pkg.parent / f"{pkg.name}.py"
    source = Path(unit.source_path).resolve() if unit.source_path else None
    if source is not None and source.name == "__init__.py" and pkg.resolve() == source.parent:
        raise BuildError(
            f"cannot build {unit.module} into {pkg}: that is the folder of the package it is "
            "built from, and the generated __init__.py would replace its own",
            hint=f"build into another folder (-o generated) or under another name (--name "
            f"{unit.name}_gen)",
        )
    if beside.is_file():
        what = "the module it is built from" if source == beside.resolve() else "a module there"
        raise BuildError(
            f"cannot build {unit.module} into {pkg}: {beside} ({what}) is beside it, and "
            f"`import {pkg.name}` would then find the generated package instead of that module "
            "(the next build would import the package, not the module)",
            hint=f"build into another folder (-o generated) or under another name (--name "
            f"{unit.name}_gen)",
        )


def _plan(
    unit: "BuildUnit", files: dict[str, EmittedFile], out_dir: Path, *, clean: bool, force: bool
) -> _Plan:
    """Check that ``unit`` may be written into ``out_dir/<name>/`` and say what that does.

    Raises:
        BuildError: the folder is not ringgen's (not empty, no ringgen manifest) and not ``force``;
            the build would overwrite a file ringgen did not write and not ``force``; the package
            would shadow a module; the folder is a file.
    """
    pkg = out_dir / unit.name
    _check_shadowing(unit, pkg)
    present = _contents(pkg)
    previous, what = _previous_files(pkg)
    if previous is None and present:
        if not force:
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise BuildError(
                f"refusing to build {unit.module} into {pkg}: the folder is not empty ({shown}) "
                f"and {what}, so it is not a package ringgen built; ringgen build writes only into "
                "an empty folder or one it built before, so that it never overwrites or deletes "
                "files it did not write",
                hint="choose another -o folder or --name, or pass --force to build into it anyway "
                "(nothing there is deleted; files with ringgen's names are overwritten)",
            )
        log.warning("--force: building into %s, which ringgen did not build", pkg)
    ours = previous or {}
    if previous is not None:
        ours = {**ours, MANIFEST: ""}  # the manifest never lists itself
    foreign = [
        name
        for name, f in files.items()
        if name not in ours
        and (pkg / name).exists()
        and _sha256(pkg / name) != hashlib.sha256(f.text.encode("utf-8")).hexdigest()
    ]
    if foreign and not force and previous is not None:
        raise BuildError(
            f"refusing to build {unit.module} into {pkg}: it would overwrite "
            f"{', '.join(sorted(foreign))}, which the previous build did not write",
            hint="move the file away, or pass --force to overwrite it",
        )
    remove = []
    if clean and previous:
        for name, digest in sorted(previous.items()):
            path = pkg / name
            if name in files or path.is_symlink() or not path.is_file():
                continue
            if _sha256(path) == digest:
                remove.append(path)
            else:
                log.warning("kept %s: ringgen wrote it, but it has changed since", path)
    return _Plan(pkg, files, tuple(remove))


def _apply(plan: _Plan) -> Path:
    """Write the files of ``plan`` (unchanged ones are left alone), then remove its stale files.

    Raises:
        BuildError: the package folder cannot be created.
    """
    try:
        plan.pkg.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create output folder {plan.pkg}: {exc.strerror}") from None
    # the manifest goes last: until it is written, the previous one still describes the folder
    for name, f in sorted(plan.files.items(), key=lambda kv: kv[0] == MANIFEST):
        path = plan.pkg / name
        data = f.text.encode("utf-8")
        if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
            continue
        write_atomic(path, data)
        log.info("wrote %s", path)
    for path in plan.remove:
        path.unlink()
        log.info("removed stale %s", path)
    return plan.pkg


def write_unit(
    unit: "BuildUnit",
    out_dir: os.PathLike | str,
    targets: Optional[Iterable[str]] = None,
    *,
    force: bool = False,
    options: Optional[EmitOptions] = None,
) -> Path:
    """Emit ``unit`` and write it into ``<out_dir>/<unit.name>/``; return that folder.

    Files whose text is unchanged are not rewritten (their mtimes stay, so make and caches are calm).
    When every target runs (not for a subset), files the previous build listed in its manifest that
    this one no longer emits are removed, but only when their content is what ringgen wrote.

    Args:
        force: build into a folder that is not empty and holds no ringgen manifest (nothing there is
            deleted), and overwrite files ringgen did not write.

    Raises:
        BuildError: as ``emit_unit``; the folder is not ringgen's and not ``force``; the package
            would shadow a module beside it; the output folder cannot be created.
    """
    files = emit_unit(unit, targets, options)
    return _apply(_plan(unit, files, Path(out_dir), clean=targets is None, force=force))


def write_units(
    units: Sequence["BuildUnit"],
    out_dir: os.PathLike | str,
    *,
    force: bool = False,
    options: Optional[EmitOptions] = None,
) -> list[Path]:
    """Emit every unit with every target and write each into ``<out_dir>/<unit.name>/``.

    All or nothing as far as ringgen can tell: every unit is emitted in memory and every destination
    checked before the first file is written, so one failing module leaves the disk untouched.

    Raises:
        BuildError: two units share a package name, or as ``write_unit`` for any unit.
    """
    out = Path(out_dir)
    seen: dict[str, str] = {}
    for unit in units:
        if unit.name in seen:
            raise BuildError(
                f"{seen[unit.name]} and {unit.module} would both be written to {out / unit.name}",
                hint="build them into different folders, or one at a time with --name",
            )
        seen[unit.name] = unit.module
    plans = [_plan(u, emit_unit(u, None, options), out, clean=True, force=force) for u in units]
    return [_apply(plan) for plan in plans]
