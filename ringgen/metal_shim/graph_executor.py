"""Run a graph's Metal on CPU threads: the shim-compiled stages behind the emitted graph driver.

``build_graph_executor`` compiles ``<name>.metal`` with the shim and the graph driver of
``ringgen.codegen.metal_graph`` into a shared library; ``MetalGraphExecutor.run`` hands it a batch
of entry messages (and of messages the host publishes to each topic it publishes to) and gets back
what each exit published, each host subscription's copies, the topics' counts (``TopicStats``, as
``stats().topics`` has them on the other strategies), each stage's control block (its counters,
faults by reason) and final state, and for an ordered graph (a causal stage or an ``rg.HLC`` stamp)
the entry and published messages as the host's clock stamped them and that clock's final value.
The graph tests compare that with the reference composition and the host strategy.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional

import attrs
import numpy as np

from ..codegen.metal_graph import emit_graph_driver, skipped_graphs, topic_context
from ..errors import KernelTimeoutError, ToolchainError
from ..layout import layout_of
from ..protocol import CONTROL_DTYPE
from ..reference import records
from ..runtime.topic_host import SubscriberStats, TopicStats
from . import available_compilers
from .executor import build_driver, slot_dtype

if TYPE_CHECKING:
    from ..build import BuildUnit
    from ..graphs import Graph

__all__ = ["MetalGraphExecutor", "MetalGraphRun", "build_graph_executor"]


@attrs.frozen
class MetalGraphRun:
    """What one graph run produced: exit name -> its output slots in publication order; stage name
    -> its final control block (a ``CONTROL_DTYPE`` record) and final state (stateful stages);
    the passes over the stages it took; the entry messages as sent (an ordered graph's stamped by
    the host's clock, in send order) and the host's clock after the run (0 unless ordered); topic
    name -> the host subscription's copies, oldest first (``subscriptions``), the messages the host
    published, as sent (``published``), and the topic's counts (``topics``: ``published``, and per
    subscriber, ``"host"`` for the host, ``delivered``, ``dropped``, ``depth``, ``capacity``)."""

    exits: Mapping[str, np.ndarray]
    controls: Mapping[str, np.void]
    states: Mapping[str, np.ndarray]
    passes: int
    sent: np.ndarray
    clock: int
    subscriptions: Mapping[str, np.ndarray] = attrs.field(factory=dict)
    published: Mapping[str, np.ndarray] = attrs.field(factory=dict)
    topics: Mapping[str, TopicStats] = attrs.field(factory=dict)


def build_graph_executor(
    metal_path, unit: "BuildUnit", workdir, compiler: Optional[str] = None, werror: bool = False
) -> "MetalGraphExecutor":
    """Compile ``metal_path`` (``unit``'s emitted Metal) with the shim and the graph driver.

    Raises:
        ToolchainError: no C++ compiler, or it rejected the source (its stderr attached).
    """
    metal_path = Path(metal_path).resolve()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    present = available_compilers()
    exe = compiler or (present[0] if present else None)
    if exe is None:
        raise ToolchainError("no C++ compiler (g++ or clang++) to build the Metal graph driver")
    driver = emit_graph_driver(unit, str(metal_path), metal_path.name)
    text = metal_path.read_text()
    lib = build_driver(driver, text, metal_path, exe, werror, workdir, "the graph driver")
    return MetalGraphExecutor(lib, unit)


def _out_bound(graph: "Graph", n: int, published: Mapping[str, int]) -> dict[str, int]:
    """The most messages each stage can emit for ``n`` entry messages and ``published[topic]``
    messages the host publishes (an Outbox: its bound per message taken; a return or an Optional:
    one; no output: none), and per topic (``topic:<name>``) the most messages published to it."""
    bound: dict[str, int] = {}
    for stage in graph.stages:
        spec = graph.spec(stage)
        taken = n if stage == graph.entry else sum(bound[p] for p in graph.producers(stage))
        taken += sum(published.get(t.name, 0) for t in graph.topics if stage in t.subscribers)
        per = spec.outbox_limit if spec.uses_outbox else (1 if spec.output is not None else 0)
        bound[stage] = taken * per
    for t in graph.topics:
        bound[f"topic:{t.name}"] = published.get(t.name, 0) + sum(bound[p] for p in t.publishers)
    return bound


def _topic_stats(graph: "Graph", layout: dict, words: np.ndarray, caps: Mapping) -> dict:
    """``TopicStats`` per topic from the driver's ``topic_counts`` words (``topic_context``)."""
    out = {}
    for t, tc in zip(graph.topics, layout["topics"]):
        subs = {}
        for c in tc["subscribers"]:
            at = c["counts"]
            subs[c["name"]] = SubscriberStats(
                delivered=int(words[at]),
                dropped=int(words[at + 1]),
                depth=int(words[at + 2]),
                capacity=int(caps[t.name] if c["name"] == "host" else caps[c["name"], t.name]),
            )
        out[t.name] = TopicStats(
            name=t.name,
            message=t.message.__name__,
            policy=t.policy.name,
            published=int(words[tc["published"]]),
            subscribers=subs,
        )
    return out


class MetalGraphExecutor:
    """A compiled graph driver: ``run`` pushes a batch through one of the unit's graphs."""

    def __init__(self, lib_path, unit: "BuildUnit") -> None:
        self.lib_path = Path(lib_path)
        self._lib = ctypes.CDLL(str(self.lib_path))
        self.skipped = skipped_graphs(unit)
        self.graphs = {g.name: g for g in unit.graphs if g.name not in self.skipped}

    def run(
        self,
        graph: str,
        messages: np.ndarray,
        *,
        publish: Optional[Mapping[str, np.ndarray]] = None,
        limits: Optional[Mapping[str, int]] = None,
        workers: int = 1,
        max_idle: int = 4,
    ) -> MetalGraphRun:
        """Send ``messages`` (entry view records) through graph ``graph``, and publish
        ``publish[topic]`` (view records of the topic's class) to each topic the host publishes
        to, until nothing is queued.

        Args:
            publish: topic name -> the messages the host publishes to it (``rg.HOST >> topic``),
                handed to its subscribers in order, as a publisher's replies are.
            limits: stage name -> the most messages it takes per command buffer (a slow stage;
                default: its queue's capacity).
            workers: CPU threads per dispatch (1: each batch in message order).
            max_idle: passes in a row that move nothing before the run counts as stuck.

        Raises:
            KeyError: the unit has no such graph, or the driver left it out (``skipped``).
            ValueError: ``publish`` names a topic the host does not publish to in ``graph``, or
                ``limits`` a stage it does not have, or a limit below 1.
            KernelTimeoutError: the graph stopped moving with messages still queued.
        """
        g = self.graphs[graph]
        entry = g.spec(g.entry)
        layout = topic_context(g)
        hosted = {t.name: t for t in g.topics if t.host_publishes}
        publish = dict(publish or {})
        for name in publish:
            if name not in hosted:
                raise ValueError(
                    f"Metal graph {graph}: the host does not publish to topic {name!r} "
                    f"(it publishes to: {sorted(hosted) or 'none'})"
                )
        limits = dict(limits or {})
        for stage, most in limits.items():
            if stage not in g.stages or int(most) < 1:
                raise ValueError(
                    f"Metal graph {graph}: limit {stage}={most!r} must name a stage of "
                    f"{g.stages} and be at least 1"
                )
        # copies: an ordered graph's host clock stamps the messages in place as it sends them
        messages = np.array(messages, dtype=slot_dtype(entry.input), order="C", copy=True)
        pubs = {
            h["topic"]: np.array(
                publish.get(h["topic"], np.zeros(0, slot_dtype(hosted[h["topic"]].message))),
                dtype=slot_dtype(hosted[h["topic"]].message),
                order="C",
                copy=True,
            )
            for h in layout["host_pubs"]
        }
        bound = _out_bound(g, len(messages), {t: len(m) for t, m in pubs.items()})
        exits = [np.zeros(max(1, bound[x]), slot_dtype(g.spec(x).output)) for x in g.exits]
        caps = (ctypes.c_uint * len(exits))(*[bound[x] for x in g.exits])
        counts = (ctypes.c_uint * len(exits))()
        by_topic = {t.name: t for t in g.topics}
        sub_caps = {}
        for h in layout["host_subs"]:
            t = by_topic[h["topic"]]
            sub_caps[t.name] = (
                t.capacity if t.capacity is not None else max(1, bound[f"topic:{t.name}"])
            )
        subs = [
            np.zeros(sub_caps[h["topic"]], slot_dtype(by_topic[h["topic"]].message))
            for h in layout["host_subs"]
        ]
        sub_counts = (ctypes.c_uint * max(1, len(subs)))()
        words = np.zeros(max(1, layout["n_counts"]), np.uint64)
        capacity = dict(sub_caps)
        for t in g.topics:
            for c in t.subscribers:
                capacity[c, t.name] = t.capacity if t.capacity is not None else g.spec(c).capacity
        controls = [np.zeros(1, CONTROL_DTYPE) for _ in g.stages]
        states = {}
        for stage in g.stages:
            spec = g.spec(stage)
            if spec.state is not None:  # the state class's defaults, as the reference starts
                initial = records.new_state(spec.state).array
                states[stage] = np.array(initial, dtype=layout_of(spec.state).dtype).reshape(1)
        state_of = {s: states.get(s) for s in g.stages}
        voids = ctypes.c_void_p * len(g.stages)

        def ptr(a: Optional[np.ndarray]) -> Optional[int]:
            return None if a is None else a.ctypes.data

        def ptrs(arrays: list) -> ctypes.Array:
            return (ctypes.c_void_p * max(1, len(arrays)))(*[ptr(a) for a in arrays])

        def uints(values: list) -> ctypes.Array:
            return (ctypes.c_uint * max(1, len(values)))(*values)

        exit_ptrs = (ctypes.c_void_p * len(exits))(*[ptr(a) for a in exits])
        pub_list = list(pubs.values())
        clock = ctypes.c_uint64(0)
        fn = getattr(self._lib, f"rg_metal_graph_{graph}")
        fn.restype = ctypes.c_int
        passes = fn(
            ctypes.c_void_p(messages.ctypes.data),
            ctypes.c_uint(len(messages)),
            exit_ptrs,
            caps,
            counts,
            voids(*[ptr(state_of[s]) for s in g.stages]),
            voids(*[ptr(c) for c in controls]),
            ctypes.c_uint(workers),
            ctypes.c_uint(max_idle),
            ctypes.byref(clock),
            ptrs(pub_list),
            uints([len(m) for m in pub_list]),
            ptrs(subs),
            uints([len(a) for a in subs]),
            sub_counts,
            uints([int(limits.get(s, 0)) for s in g.stages]),
            ctypes.c_void_p(words.ctypes.data),
        )
        if passes < 0:
            why = {
                -2: "an exit's buffer overflowed",
                -3: "a host subscription's buffer overflowed",
            }.get(passes, "it stopped moving")
            raise KernelTimeoutError(
                f"Metal graph {graph}: {why} with messages queued ({len(messages)} sent, "
                f"{sum(len(m) for m in pub_list)} published by the host)"
            )
        return MetalGraphRun(
            exits={x: exits[i][: counts[i]].copy() for i, x in enumerate(g.exits)},
            controls={s: controls[i][0] for i, s in enumerate(g.stages)},
            states=states,
            passes=passes,
            sent=messages,
            clock=int(clock.value),
            subscriptions={
                h["topic"]: subs[j][: sub_counts[j]].copy()
                for j, h in enumerate(layout["host_subs"])
            },
            published=pubs,
            topics=_topic_stats(g, layout, words, capacity),
        )
