"""The ``manifest.json`` emitter, and a small validator for the JSON-schema subset its schema uses.

The manifest records every layout, queue and kernel of a build and every file emitted with it, so that
tools and tests can read a build without importing it. It is validated against
``schemas/manifest.schema.json`` before it is written. Its ``files`` list (path and SHA-256 of every
file ringgen wrote, the manifest itself aside) is also what a later build may delete: only a file
listed there whose content still has the listed hash (``ringgen.codegen.writer``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import targets as registry
from ..causal import hlc_field
from ..dsl import compile_program
from ..errors import BuildError
from ..layout import FieldLayout, MessageLayout, layout_of
from ..types import describe_type
from . import graph_kernel
from .graph_strategies import STRATEGIES
from .header import header_name
from .targets import backend_emitter

if TYPE_CHECKING:
    from ..build import BuildUnit
    from ..kernel import KernelSpec
    from .writer import EmittedFile

__all__ = [
    "MANIFEST_VERSION",
    "compute_manifest",
    "emit",
    "load_schema",
    "source_targets",
    "validate",
]

MANIFEST_VERSION = 1


def source_targets() -> tuple[str, ...]:
    """The targets whose files hold kernel code (recorded per kernel as its sources): every backend
    of ``ringgen.targets`` with an emitter."""
    return tuple(t.name for t in registry.TARGETS if t.emitter is not None)


def _schema_path() -> Path:
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "schemas", package_dir.parent / "schemas"):
        path = candidate / "manifest.schema.json"
        if path.is_file():
            return path
    raise FileNotFoundError("schemas/manifest.schema.json not found (broken installation)")


@functools.lru_cache(maxsize=1)
def load_schema() -> dict:
    """The manifest's JSON schema (from the source tree, or the installed ringgen.schemas package)."""
    return json.loads(_schema_path().read_text(encoding="utf-8"))


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def validate(instance: Any, schema: dict, root: dict | None = None, path: str = "$") -> list[str]:
    """Check ``instance`` against ``schema``; return the problems, each as ``path: what``.

    Supports the subset ringgen's schemas use: ``type`` (one or a list), ``properties``, ``required``,
    ``additionalProperties`` (bool or schema), ``items``, ``enum``, ``const``, ``minimum``,
    ``maximum``, ``minItems``, ``minLength``, ``pattern`` and local ``$ref`` (``#/$defs/...``).
    """
    root = schema if root is None else root
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return validate(instance, target, root, path)
    errors: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(instance, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {type(instance).__name__}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']!r}")
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {instance!r}")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{path}: {instance} is below the minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{path}: {instance} is above the maximum {schema['maximum']}")
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(f"{path}: {instance!r} does not match {schema['pattern']!r}")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(instance):
                errors += validate(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{path}: missing required property {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                errors += validate(value, props[key], root, f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += validate(value, extra, root, f"{path}.{key}")
    return errors


def _field(f: FieldLayout) -> dict:
    return {
        "name": f.name,
        "type": describe_type(f.type),
        "c_type": f.c_type,
        "dims": list(f.c_dims),
        "offset": f.offset,
        "size": f.size,
        "align": f.align,
    }


def _layout(m: MessageLayout) -> dict:
    return {
        "name": m.name,
        "role": m.spec.kind,
        "kind": m.kind,
        "size": m.size,
        "align": m.align,
        "slot_size": m.slot_size,
        "max_payload": m.max_payload,
        "type_id": m.type_id,
        "fields": [_field(f) for f in m.fields],
        "aux": [
            {
                "c_name": a.c_name,
                "type": describe_type(a.type),
                "size": a.size,
                "align": a.align,
                "fields": [_field(f) for f in a.fields],
            }
            for a in m.aux
        ],
    }


def _skipped_by_target(
    unit: "BuildUnit", sources: dict[str, str], program: Any = None
) -> dict[str, dict[str, str]]:
    """Kernels each source target leaves out, with its reason (e.g. Metal has no f64), from each
    backend's ``Emitter.skipped``."""
    if sources and program is None:
        program = compile_program(unit.kernels, unit.device_functions, unit.source_file)
    return {
        target: dict(backend_emitter(target).skipped(unit, program)) for target in sorted(sources)
    }


def _abi(kernel: "KernelSpec", sources: dict, emitted: dict, skipped: dict) -> dict:
    """What a loader needs to know about ``kernel``'s compiled code, by target (each backend's
    ``Emitter.abi``): the runtime reads this instead of importing the emitters
    (docs/architecture.md, "The manifest contract")."""
    out = {}
    for target, name in sorted(sources.items()):
        if kernel.name in skipped.get(target, {}):
            continue
        entry = backend_emitter(target).abi(kernel, emitted[name].text)
        if entry is not None:
            out[target] = entry
    return out


def compute_manifest(
    unit: "BuildUnit", emitted: dict[str, "EmittedFile"], program: Any = None
) -> dict:
    """The manifest of ``unit`` as a dict; ``emitted`` are the other files of the build;
    ``program`` the compiled IR when the writer has it."""
    sources = {
        f.target: name for name, f in sorted(emitted.items()) if f.target in source_targets()
    }
    skipped = _skipped_by_target(unit, sources, program)
    queues = []
    kernels = []
    for k in unit.kernels:
        inp = layout_of(k.input)
        queues.append(
            {
                "kernel": k.name,
                "role": "input",
                "message": inp.name,
                "capacity": k.capacity,
                "slot_size": inp.slot_size,
            }
        )
        if k.output is not None:
            out = layout_of(k.output)
            queues.append(
                {
                    "kernel": k.name,
                    "role": "output",
                    "message": out.name,
                    "capacity": k.capacity,
                    "slot_size": out.slot_size,
                }
            )
        kernels.append(
            {
                "name": k.name,
                "input": k.input.__name__,
                "output": k.output.__name__ if k.output else None,
                "state": k.state.__name__ if k.state else None,
                "outbox": k.outbox is not None,
                "may_skip": k.may_skip,
                "ordered": k.ordered,
                "capacity": k.capacity,
                "outbox_limit": k.outbox_limit,
                "sources": {t: f for t, f in sources.items() if k.name not in skipped.get(t, {})},
                "skipped": {t: why[k.name] for t, why in sorted(skipped.items()) if k.name in why},
                "abi": _abi(k, sources, emitted, skipped),
            }
        )
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "ringgen_version": unit.ringgen_version,
        "name": unit.name,
        "module": unit.module,
        "source_file": unit.source_file,
        "fingerprint": unit.fingerprint,
        "header": header_name(unit),
        "messages": [_layout(m) for m in unit.messages],
        "queues": queues,
        "kernels": kernels,
        "device_functions": [d.__name__ for d in unit.device_functions],
        "files": [
            {
                "path": name,
                "target": f.target,
                "sha256": hashlib.sha256(f.text.encode("utf-8")).hexdigest(),
            }
            for name, f in sorted(emitted.items())
        ],
    }
    if unit.graphs:  # absent without graphs, so packages built before graphs stay byte-identical
        manifest["graphs"] = [_graph(g, emitted) for g in unit.graphs]
    return manifest


def _graph(g: Any, emitted: dict[str, "EmittedFile"]) -> dict:
    """One graph of kernels: its stages (producers first), edges, entry and exits; its topics,
    causal stages and stamp fields when it has any (absent otherwise: older manifests stay); and,
    when a target that fuses graphs was built, its device-strategy forms (``_strategies``)."""
    entry = {
        "name": g.name,
        "entry": g.entry,
        "exits": list(g.exits),
        "stages": list(g.stages),
        "edges": [
            {"producer": e.producer, "consumer": e.consumer, "message": e.message.__name__}
            for e in g.edges
        ],
    }
    entry.update(_graph_ordering(g))
    strategies = _strategies(g, emitted)
    if strategies:
        entry["strategies"] = strategies
    return entry


def _graph_ordering(g: Any) -> dict:
    """The ``topics``, ``causal`` and ``stamps`` keys of a graph's entry (those it has)."""
    out: dict[str, Any] = {}
    if g.topics:
        out["topics"] = [
            {
                "name": t.name,
                "message": t.message.__name__,
                "policy": t.policy.name,
                "capacity": t.policy.capacity,
                "publishers": list(t.publishers),
                "subscribers": list(t.subscribers),
                "host_publishes": t.host_publishes,
                "host_subscribes": t.host_subscribes,
            }
            for t in g.topics
        ]
    causal = [s for s in g.stages if g.spec(s).order == "causal"]
    if causal:
        out["causal"] = causal
    stamps = {}
    for k in g.kernels:
        for cls in (k.spec.input, k.spec.output):
            field = hlc_field(cls)
            if field is not None:
                stamps[cls.__name__] = field
    if stamps:
        out["stamps"] = dict(sorted(stamps.items()))
    return out


def _strategies(g: Any, emitted: dict[str, "EmittedFile"]) -> dict:
    """Per device strategy with a target that was built (``graph_strategies.STRATEGIES``): its
    kernel's name, sources and abi per target (the writer emitted the sources:
    ``writer.emit_graphs``), or why it refuses the graph. Empty when no such target was built."""
    built = {f.target for f in emitted.values()}
    out = {}
    for name, strategy in STRATEGIES.items():
        targets = [t for t in strategy.targets if t in built]
        if not targets:
            continue
        try:
            kernel = strategy.check(g)
        except BuildError as exc:
            out[name] = {"refused": exc.message}
            continue
        sources = {t: graph_kernel.source_path(g.name, t, name) for t in targets}
        out[name] = {
            "kernel": kernel,
            "sources": sources,
            "abi": {t: strategy.abi(g, t, emitted[path].text) for t, path in sources.items()},
        }
    return out


def emit(
    unit: "BuildUnit", emitted: dict[str, "EmittedFile"], program: Any = None
) -> dict[str, str]:
    """Emitter for the ``manifest`` target: ``{"manifest.json": text}``, validated.

    Raises:
        BuildError: the manifest does not satisfy its schema (a bug in ringgen, reported as such).
    """
    manifest = compute_manifest(unit, emitted, program)
    problems = validate(manifest, load_schema())
    if problems:
        raise BuildError("manifest.json does not match its schema: " + "; ".join(problems[:5]))
    return {"manifest.json": json.dumps(manifest, indent=2) + "\n"}
