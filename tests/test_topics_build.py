"""Topics in builds: manifest.json records a graph's topics, causal stages and stamp fields (and
the schema checks them), ``ringgen inspect`` shows them, and a graph without them writes none."""

from __future__ import annotations

import json

from ringgen.build import collect
from ringgen.cli import main
from ringgen.codegen.manifest import load_schema, validate
from ringgen.codegen.writer import write_unit

TOPICS = """
import ringgen as rg
from ringgen.types import i32, i64

@rg.message
class Tick:
    id: i64
    x: i32
    stamp: rg.HLC

@rg.ring_kernel
def source(t: Tick) -> Tick:
    return Tick(id=t.id, x=t.x + 1, stamp=t.stamp)

@rg.ring_kernel
def rank(t: Tick) -> Tick:
    return Tick(id=t.id, x=t.x * 2, stamp=t.stamp)

@rg.ring_kernel(order="causal")
def audit(t: Tick) -> Tick:
    return Tick(id=t.id, x=t.x, stamp=t.stamp)

scores = rg.topic("scores", Tick)
alerts = rg.topic("alerts", Tick, policy=rg.DropOldest(64))
fan = rg.graph(source >> scores, scores >> [rank, audit, rg.HOST], rg.HOST >> scores,
               rank >> alerts, alerts >> rg.HOST)
chain = source >> rank
"""


def test_manifest_records_topics_causal_stages_and_stamps(module_file, tmp_path):
    unit = collect(module_file(TOPICS))
    pkg = tmp_path / "out"
    write_unit(unit, pkg, ("header", "serializers", "manifest"))
    manifest = json.loads((pkg / unit.name / "manifest.json").read_text())
    assert validate(manifest, load_schema()) == []
    graphs = {g["name"]: g for g in manifest["graphs"]}
    fan = graphs["fan"]
    assert fan["topics"] == [
        {
            "name": "scores",
            "message": "Tick",
            "policy": "block",
            "capacity": None,
            "publishers": ["source"],
            "subscribers": ["rank", "audit"],
            "host_publishes": True,
            "host_subscribes": True,
        },
        {
            "name": "alerts",
            "message": "Tick",
            "policy": "drop_oldest",
            "capacity": 64,
            "publishers": ["rank"],
            "subscribers": [],
            "host_publishes": False,
            "host_subscribes": True,
        },
    ]
    assert fan["causal"] == ["audit"] and fan["stamps"] == {"Tick": "stamp"}
    assert fan["exits"] == ["audit"]  # rank publishes to alerts
    assert "topics" not in graphs["chain"] and "causal" not in graphs["chain"]
    broken = json.loads(json.dumps(manifest))
    broken["graphs"][0]["topics"][0]["policy"] = "sometimes"
    assert validate(broken, load_schema())


def test_inspect_shows_topics(module_file, tmp_path, capsys):
    path = module_file(TOPICS, name="pubsub")
    assert main(["build", str(path), "-o", str(tmp_path / "gen")]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "gen" / "pubsub")]) == 0
    out = capsys.readouterr().out
    fan = out.split("graph fan:", 1)[1].split("\nfiles", 1)[0]
    rows = [line.split() for line in fan.splitlines() if line.strip()]
    assert ["topic", "message", "policy", "publishers", "subscribers"] in rows
    assert ["scores", "Tick", "block", "source,", "host", "rank,", "audit,", "host"] in rows
    assert ["alerts", "Tick", "drop_oldest(64)", "rank", "host"] in rows
    assert ["causal", "order:", "audit"] in rows
    assert ["stamps", "(rg.HLC):", "Tick.stamp"] in rows


DEVICE_TOPICS = """
import ringgen as rg
from ringgen.types import i32, i64

@rg.message
class Score:
    id: i64
    x: i32

@rg.ring_kernel
def publish(s: Score) -> Score:
    return Score(id=s.id, x=s.x + 1)

@rg.ring_kernel
def a(s: Score) -> Score:
    return Score(id=s.id, x=s.x * 2)

@rg.ring_kernel
def b(s: Score) -> Score:
    return Score(id=s.id, x=s.x * 3)

@rg.ring_kernel
def gather(s: Score) -> Score:
    return s

kept_topic = rg.topic("scores", Score)
kept = rg.graph(publish >> kept_topic, kept_topic >> [a, b], a >> gather, b >> gather)
dropping_topic = rg.topic("scores", Score, policy=rg.DropNewest(8))
dropping = rg.graph(
    publish >> dropping_topic, dropping_topic >> [a, b], a >> gather, b >> gather
)
"""


def test_a_block_topic_graph_gets_device_sources_and_atomic_queue_refuses_a_drop_policy(
    module_file, tmp_path
):
    unit = collect(module_file(DEVICE_TOPICS))
    pkg = tmp_path / "out"
    write_unit(unit, pkg, ("header", "serializers", "cuda", "opencl", "manifest"))
    manifest = json.loads((pkg / unit.name / "manifest.json").read_text())
    assert validate(manifest, load_schema()) == []
    graphs = {g["name"]: g for g in manifest["graphs"]}
    kept = graphs["kept"]["strategies"]
    assert kept["shared_memory"]["kernel"] == kept["atomic_queue"]["kernel"] == "graph_kept"
    for source in [
        *kept["shared_memory"]["sources"].values(),
        kept["atomic_queue"]["sources"]["cuda"],
    ]:
        assert "rg_handle_graph_kept" in (pkg / unit.name / source).read_text()
    dropping = graphs["dropping"]["strategies"]
    # shared_memory keeps a drop policy (a kernel subscriber never drops there); atomic_queue not
    assert dropping["shared_memory"]["kernel"] == "graph_dropping"
    assert set(dropping["atomic_queue"]) == {"refused"}
    assert "graph dropping: topic scores has policy drop_newest(8)" in (
        dropping["atomic_queue"]["refused"]
    )
    assert not list((pkg / unit.name / "graphs").glob("dropping.atomic_queue.*"))
