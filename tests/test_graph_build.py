"""Graphs in builds: ``collect`` finds them, manifest.json records them, ``ringgen inspect`` shows
them, and a module without graphs writes no ``graphs`` key."""

from __future__ import annotations

import json

import pytest

from ringgen.build import collect
from ringgen.cli import main
from ringgen.codegen.manifest import load_schema, validate
from ringgen.codegen.writer import write_unit
from ringgen.errors import BuildError

KERNELS = """
from typing import Optional
import ringgen as rg
from ringgen.types import i32, i64

@rg.message
class A:
    id: i64
    x: i32

@rg.message
class B:
    id: i64
    y: i32

@rg.ring_kernel
def first(a: A) -> B:
    return B(id=a.id, y=a.x + 1)

@rg.ring_kernel
def left(b: B) -> B:
    return B(id=b.id, y=b.y * 2)

@rg.ring_kernel
def right(b: B) -> Optional[B]:
    if b.y > 0:
        return b
    return None

@rg.ring_kernel
def last(b: B) -> A:
    return A(id=b.id, x=b.y)
"""

GRAPHS = KERNELS + """
chain = first >> left >> last
diamond = rg.graph(first >> left, first >> right, left >> last, right >> last, name="dag")
same_chain = chain
"""


def test_collect_names_graphs_after_their_variables(module_file):
    unit = collect(module_file(GRAPHS))
    assert [g.name for g in unit.graphs] == ["chain", "dag"]
    assert [k.name for k in unit.kernels] == ["first", "left", "right", "last"]


def test_graph_stages_from_another_module_join_the_build(module_file):
    kernels = module_file(KERNELS)
    user = module_file(f"import {kernels.stem} as k\nflow = k.first >> k.last\n")
    unit = collect(user)
    assert [k.name for k in unit.kernels] == ["first", "last"]
    assert [g.name for g in unit.graphs] == ["flow"]


def test_two_graphs_of_one_name_are_refused(module_file):
    source = (
        KERNELS
        + 'g1 = rg.pipeline(first, last, name="g")\ng2 = rg.pipeline(first, left, name="g")\n'
    )
    with pytest.raises(BuildError, match="duplicate graph name 'g'"):
        collect(module_file(source))


def test_manifest_records_graphs(module_file, tmp_path):
    unit = collect(module_file(GRAPHS))
    pkg = tmp_path / "out"
    write_unit(unit, pkg, ("header", "serializers", "manifest"))
    manifest = json.loads((pkg / unit.name / "manifest.json").read_text())
    assert validate(manifest, load_schema()) == []
    assert manifest["graphs"] == [
        {
            "name": "chain",
            "entry": "first",
            "exits": ["last"],
            "stages": ["first", "left", "last"],
            "edges": [
                {"producer": "first", "consumer": "left", "message": "B"},
                {"producer": "left", "consumer": "last", "message": "B"},
            ],
        },
        {
            "name": "dag",
            "entry": "first",
            "exits": ["last"],
            "stages": ["first", "left", "right", "last"],
            "edges": [
                {"producer": "first", "consumer": "left", "message": "B"},
                {"producer": "first", "consumer": "right", "message": "B"},
                {"producer": "left", "consumer": "last", "message": "B"},
                {"producer": "right", "consumer": "last", "message": "B"},
            ],
        },
    ]


def test_no_graphs_no_key(module_file, tmp_path):
    unit = collect(module_file(KERNELS))
    assert unit.graphs == ()
    write_unit(unit, tmp_path / "out", ("header", "serializers", "manifest"))
    manifest = json.loads((tmp_path / "out" / unit.name / "manifest.json").read_text())
    assert "graphs" not in manifest


def test_schema_refuses_a_malformed_graph(module_file, tmp_path):
    unit = collect(module_file(GRAPHS))
    write_unit(unit, tmp_path / "out", ("header", "serializers", "manifest"))
    manifest = json.loads((tmp_path / "out" / unit.name / "manifest.json").read_text())
    manifest["graphs"][0]["exits"] = []
    del manifest["graphs"][1]["edges"][0]["message"]
    assert validate(manifest, load_schema()) == [
        "$.graphs[0].exits: fewer than 1 items",
        "$.graphs[1].edges[0]: missing required property 'message'",
    ]


def test_build_and_inspect_show_stages_and_edges(module_file, tmp_path, capsys):
    path = module_file(GRAPHS, name="flows")
    assert main(["build", str(path), "-o", str(tmp_path / "gen")]) == 0
    assert "4 kernels, 2 graphs)" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "gen" / "flows")]) == 0
    out = capsys.readouterr().out
    assert "graph chain: entry first, exit last\n" in out
    assert "graph dag: entry first, exit last\n" in out
    dag = out.split("graph dag:", 1)[1].split("\nfiles", 1)[0]
    assert [line.split() for line in dag.splitlines()[1:] if line.strip()] == [
        ["stage", "role", "input", "output", "ordered"],
        ["-----", "-----", "-----", "------", "-------"],
        ["first", "entry", "A", "B", "no"],
        ["left", "-", "B", "B", "no"],
        ["right", "-", "B", "B", "no"],
        ["last", "exit", "B", "A", "no"],
        ["producer", "consumer", "message"],
        ["--------", "--------", "-------"],
        ["first", "left", "B"],
        ["first", "right", "B"],
        ["left", "last", "B"],
        ["right", "last", "B"],
        ["strategy", "kernel", "sources,", "or", "why", "it", "refuses", "the", "graph"],
        ["-" * 13, "-" * 9, "-" * 70],
        ["atomic_queue", "graph_dag", "cuda:", "graphs/dag.atomic_queue.cu"],
        ["shared_memory", "graph_dag", "cuda:", "graphs/dag.shared_memory.cu,"]
        + ["opencl:", "graphs/dag.shared_memory.cl"],
    ]
