"""manifest.json records every layout, queue, kernel and file, and satisfies its schema."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from ringgen.build import collect
from ringgen.codegen.manifest import compute_manifest, load_schema, validate
from ringgen.codegen.writer import emit_unit, write_unit

KERNELS_MODULE = """\
import ringgen as rg
from ringgen.types import Array, f32, i64, u64


@rg.message
class Reading:
    sensor: i64
    values: Array[f32, 4]


@rg.message
class Alert:
    sensor: i64
    level: f32


@rg.state
class Seen:
    count: u64


@rg.ring_kernel(capacity=256, ordered=True)
def watch(r: Reading, seen: Seen, out: rg.Outbox[Alert]) -> None:
    seen.count += 1
    if r.values[0] > 1.0:
        out.emit(Alert(sensor=r.sensor, level=r.values[0]))


@rg.ring_kernel
def echo(r: Reading) -> Reading:
    return r
"""


#: The targets this module is about; the full build (every target) is tested on its own below.
OWN_TARGETS = ["header", "serializers", "manifest", "package"]


@pytest.fixture
def built(module_file, tmp_path):
    unit = collect(module_file(KERNELS_MODULE))
    pkg = write_unit(unit, tmp_path / "out", OWN_TARGETS)
    return unit, pkg, json.loads((pkg / "manifest.json").read_text())


def test_manifest_validates(built):
    _, _, manifest = built
    assert validate(manifest, load_schema()) == []


def test_layouts_match_the_layout_engine(built):
    unit, _, manifest = built
    assert [m["name"] for m in manifest["messages"]] == ["Reading", "Alert", "Seen"]
    for m, lay in zip(manifest["messages"], unit.messages):
        assert (m["size"], m["align"], m["slot_size"], m["type_id"], m["kind"]) == (
            lay.size,
            lay.align,
            lay.slot_size,
            lay.type_id,
            lay.kind,
        )
        assert [(f["name"], f["offset"], f["size"], f["align"]) for f in m["fields"]] == [
            (f.name, f.offset, f.size, f.align) for f in lay.fields
        ]
    reading = manifest["messages"][0]
    assert reading["fields"][1] == {
        "name": "values",
        "type": "Array[f32, 4]",
        "c_type": "rg_f32",
        "dims": [4],
        "offset": 8,
        "size": 16,
        "align": 4,
    }
    assert manifest["messages"][2]["role"] == "state"


def test_queues_and_kernels(built):
    _, _, manifest = built
    assert manifest["queues"] == [
        {
            "kernel": "watch",
            "role": "input",
            "message": "Reading",
            "capacity": 256,
            "slot_size": 24,
        },
        {"kernel": "watch", "role": "output", "message": "Alert", "capacity": 256, "slot_size": 16},
        {
            "kernel": "echo",
            "role": "input",
            "message": "Reading",
            "capacity": 1024,
            "slot_size": 24,
        },
        {
            "kernel": "echo",
            "role": "output",
            "message": "Reading",
            "capacity": 1024,
            "slot_size": 24,
        },
    ]
    watch, echo = manifest["kernels"]
    assert (
        watch["name"],
        watch["input"],
        watch["output"],
        watch["state"],
        watch["outbox"],
        watch["ordered"],
        watch["capacity"],
    ) == ("watch", "Reading", "Alert", "Seen", True, True, 256)
    assert (echo["state"], echo["outbox"], echo["ordered"]) == (None, False, False)
    assert watch["sources"] == echo["sources"]


def test_files_are_listed_with_their_hashes(built):
    _, pkg, manifest = built
    names = [f["path"] for f in manifest["files"]]
    assert "manifest.json" not in names
    assert {"__init__.py", "serializers.py", f"{pkg.name}_types.h"} <= set(names)
    on_disk = {p.name for p in pkg.iterdir() if p.is_file()} - {"manifest.json"}
    assert set(names) == on_disk
    for f in manifest["files"]:
        assert hashlib.sha256((pkg / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    by_name = {f["path"]: f["target"] for f in manifest["files"]}
    assert by_name["serializers.py"] == "serializers" and by_name["__init__.py"] == "package"


def test_full_build_lists_every_target_and_its_sources(module_file, tmp_path):
    from ringgen.codegen.targets import emitters
    from ringgen.codegen.manifest import source_targets

    pkg = write_unit(collect(module_file(KERNELS_MODULE)), tmp_path / "out")
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert validate(manifest, load_schema()) == []
    targets = {f["target"]: f["path"] for f in manifest["files"]}
    assert set(targets) <= set(emitters()) - {"manifest"}
    assert {"header", "serializers", "package"} <= set(targets)
    expected = {t: p for t, p in targets.items() if t in source_targets()}
    assert manifest["kernels"][0]["sources"] == expected


def test_manifest_is_deterministic(module_file):
    path = module_file(KERNELS_MODULE)
    a = emit_unit(collect(path), ["header", "manifest"])["manifest.json"].text
    b = emit_unit(collect(path), ["header", "manifest"])["manifest.json"].text
    assert a == b
    assert "/tmp" not in a  # no absolute paths: generated/ must not depend on the checkout


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda m: m.pop("kernels"), "$: missing required property 'kernels'"),
        (lambda m: m.update(extra=1), "$: unexpected property 'extra'"),
        (
            lambda m: m["messages"][0].update(kind="sideways"),
            "$.messages[0].kind: 'sideways' is not one of ['direct', 'bridged']",
        ),
        (
            lambda m: m["messages"][0].update(size="16"),
            "$.messages[0].size: expected integer, got str",
        ),
        (
            lambda m: m["messages"][0]["fields"][0].update(offset=-1),
            "$.messages[0].fields[0].offset: -1 is below the minimum 0",
        ),
        (
            lambda m: m.update(fingerprint="xyz"),
            "$.fingerprint: 'xyz' does not match '^[0-9a-f]{64}$'",
        ),
        (
            lambda m: m["queues"][0].update(capacity=True),
            "$.queues[0].capacity: expected integer, got bool",
        ),
        (
            lambda m: m["kernels"][0].update(output=3),
            "$.kernels[0].output: expected string or null, got int",
        ),
        (lambda m: m.update(manifest_version=2), "$.manifest_version: expected 1, got 2"),
        (lambda m: m["messages"][0].update(fields=[]), "$.messages[0].fields: fewer than 1 items"),
    ],
)
def test_validator_reports_each_problem_with_its_path(built, mutate, problem):
    _, _, manifest = built
    bad = copy.deepcopy(manifest)
    mutate(bad)
    assert validate(bad, load_schema()) == [problem]


def test_compute_manifest_without_other_files(module_file):
    unit = collect(module_file(KERNELS_MODULE))
    manifest = compute_manifest(unit, {})
    assert manifest["files"] == [] and manifest["kernels"][0]["sources"] == {}
    assert validate(manifest, load_schema()) == []


def test_outbox_limit_is_recorded_per_kernel():
    """``rg.Outbox[Piece, 12]`` puts 12 into the manifest; a kernel without an Outbox has 1."""
    from pathlib import Path

    unit = collect(str(Path(__file__).parent / "language_kernels.py"))
    manifest = compute_manifest(unit, {})
    assert validate(manifest, load_schema()) == []
    limits = {k["name"]: k["outbox_limit"] for k in manifest["kernels"]}
    assert limits == {"summarize": 1, "pieces": 12}
