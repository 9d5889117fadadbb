"""Run a graph's Metal on CPU threads: the shim-compiled stages behind the emitted graph driver.

``build_graph_executor`` compiles ``<name>.metal`` with the shim and the graph driver of
``ringgen.codegen.metal_graph`` into a shared library; ``MetalGraphExecutor.run`` hands it a batch
of entry messages and gets back what each exit published, each stage's control block (its counters,
faults by reason) and final state, and for an ordered graph (a causal stage or an ``rg.HLC`` stamp)
the entry messages as the host's clock stamped them and that clock's final value. The graph tests
compare that with the reference composition.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional

import attrs
import numpy as np

from ..codegen.metal_graph import emit_graph_driver, skipped_graphs
from ..errors import KernelTimeoutError, ToolchainError
from ..layout import layout_of
from ..protocol import CONTROL_DTYPE
from ..reference import records
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
    the host's clock, in send order) and the host's clock after the run (0 unless ordered)."""

    exits: Mapping[str, np.ndarray]
    controls: Mapping[str, np.void]
    states: Mapping[str, np.ndarray]
    passes: int
    sent: np.ndarray
    clock: int


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


def _out_bound(graph: "Graph", n: int) -> dict[str, int]:
    """The most messages each stage can emit for ``n`` entry messages (an Outbox: its bound per
    message taken; a return or an Optional: one; no output: none)."""
    bound: dict[str, int] = {}
    for stage in graph.stages:
        spec = graph.spec(stage)
        taken = n if stage == graph.entry else sum(bound[p] for p in graph.producers(stage))
        per = spec.outbox_limit if spec.uses_outbox else (1 if spec.output is not None else 0)
        bound[stage] = taken * per
    return bound


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
        workers: int = 1,
        max_idle: int = 4,
    ) -> MetalGraphRun:
        """Send ``messages`` (entry view records) through graph ``graph`` until nothing is queued.

        Args:
            workers: CPU threads per dispatch (1: each batch in message order).
            max_idle: passes in a row that move nothing before the run counts as stuck.

        Raises:
            KeyError: the unit has no such graph, or the driver left it out (``skipped``).
            KernelTimeoutError: the graph stopped moving with messages still queued.
        """
        g = self.graphs[graph]
        entry = g.spec(g.entry)
        # a copy: an ordered graph's host clock stamps the messages in place as it sends them
        messages = np.array(messages, dtype=slot_dtype(entry.input), order="C", copy=True)
        bound = _out_bound(g, len(messages))
        exits = [np.zeros(max(1, bound[x]), slot_dtype(g.spec(x).output)) for x in g.exits]
        caps = (ctypes.c_uint * len(exits))(*[bound[x] for x in g.exits])
        counts = (ctypes.c_uint * len(exits))()
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

        exit_ptrs = (ctypes.c_void_p * len(exits))(*[ptr(a) for a in exits])
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
        )
        if passes < 0:
            why = "an exit's buffer overflowed" if passes == -2 else "it stopped moving"
            raise KernelTimeoutError(
                f"Metal graph {graph}: {why} with messages queued ({len(messages)} sent)"
            )
        return MetalGraphRun(
            exits={x: exits[i][: counts[i]].copy() for i, x in enumerate(g.exits)},
            controls={s: controls[i][0] for i, s in enumerate(g.stages)},
            states=states,
            passes=passes,
            sent=messages,
            clock=int(clock.value),
        )
