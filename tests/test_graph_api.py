"""Declaring graphs: rg.pipeline, rg.graph, a >> b, and every check made at declaration."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import ringgen as rg
from ringgen.errors import BuildError
from ringgen.graphs import Graph

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_kernels as gk  # noqa: E402

KERNELS_FILE = str(Path(gk.__file__).resolve())


def _line(kernel) -> int:
    return kernel.spec.pos.line


def test_pipeline_and_rshift_build_the_same_graph():
    a = rg.pipeline(gk.parse, gk.twice, gk.finish)
    b = gk.parse >> gk.twice >> gk.finish
    c = gk.parse >> (gk.twice >> gk.finish)
    for g in (a, b, c):
        assert isinstance(g, Graph)
        assert g.stages == ("parse", "twice", "finish")
        assert [(e.producer, e.consumer) for e in g.edges] == [
            ("parse", "twice"),
            ("twice", "finish"),
        ]
        assert g.entry == "parse" and g.exits == ("finish",)
        assert g.edges[0].message is gk.Mid


def test_graph_with_fan_out_and_fan_in():
    g = gk.fanned
    assert g.entry == "parse" and g.exits == ("finish",)
    assert g.consumers("parse") == ("twice", "negate")
    assert g.producers("finish") == ("twice", "negate")
    assert g.stages.index("finish") > max(g.stages.index("twice"), g.stages.index("negate"))


def test_several_exits_and_a_stage_without_output_at_the_end():
    g = rg.graph(gk.parse >> gk.twice >> gk.finish, gk.parse >> gk.sink)
    assert g.exits == ("finish", "sink")


def test_declaration_site_is_recorded():
    g = rg.pipeline(gk.parse, gk.twice)
    assert g.module == __name__ and g.file == __file__
    assert g.name is None and rg.graph(g, name="pair").name == "pair"


def test_type_mismatch_names_both_kernels_types_and_places():
    with pytest.raises(BuildError) as info:
        gk.twice >> gk.parse
    msg = info.value.message
    assert "kernel twice" in msg and "kernel parse" in msg
    assert "graph_kernels.Mid" in msg and "graph_kernels.Raw" in msg
    assert f"{KERNELS_FILE}:{_line(gk.twice)}" in msg
    assert f"{KERNELS_FILE}:{_line(gk.parse)}" in msg
    assert info.value.file == __file__  # the line that composes them


def test_type_mismatch_through_an_outbox_and_an_optional():
    with pytest.raises(BuildError, match="kernel repeat .* outputs graph_kernels.Mid"):
        rg.pipeline(gk.parse, gk.repeat, gk.parse)
    with pytest.raises(BuildError, match="kernel odd_only .* takes graph_kernels.Raw"):
        rg.graph(gk.parse >> gk.odd_only, gk.odd_only >> gk.parse)


def test_a_kernel_without_output_cannot_feed_a_stage():
    with pytest.raises(BuildError, match="kernel sink .* has no output .* cannot feed kernel"):
        gk.parse >> gk.sink >> gk.finish


def test_cycles_are_refused_and_named():
    with pytest.raises(BuildError, match="cycles: twice >> negate >> twice"):
        rg.graph(gk.parse >> gk.twice, gk.twice >> gk.negate, gk.negate >> gk.twice)
    with pytest.raises(BuildError, match="cycles: twice >> twice"):
        gk.twice >> gk.twice


def test_one_entry():
    with pytest.raises(BuildError, match="one entry .* parse, twice"):
        rg.graph(gk.parse, gk.twice >> gk.finish)


def test_two_kernels_of_one_name():
    other = rg.ring_kernel(name="twice")(gk.negate.__wrapped__)
    with pytest.raises(BuildError, match="two different kernels named 'twice'"):
        rg.graph(gk.parse >> gk.twice, gk.parse >> other)


def test_only_kernels_and_graphs_compose():
    with pytest.raises(TypeError):
        gk.parse >> 3
    with pytest.raises(TypeError, match="not a @rg.ring_kernel or a graph"):
        rg.pipeline(gk.parse, "twice")
    with pytest.raises(BuildError, match="at least one stage"):
        rg.graph()
    with pytest.raises(BuildError, match="graph name"):
        rg.graph(gk.parse, name="not a name")
