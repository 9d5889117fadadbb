"""A graph running as one device kernel: ``FusedGraphHandle`` (docs/graphs.md, "Strategies").

Both device strategies make one ring kernel of a graph (``ringgen.graphs.fused_spec``): in
``shared_memory`` every thread runs a message's whole path through the stages; in
``atomic_queue`` (CUDA) the grid's blocks are split among the stages, with edges as rings in
device memory. Either way the host side is one ``KernelHandle`` of the backend: its queues,
spill, back-pressure, termination (drain, or stop now) and fault counting are the single kernel's.
This module gives it the ``GraphHandle`` API: ``receive(exit=)``, ``stage(name)``, ``stats()`` as
``GraphStats``, and, where the kernel has them (CUDA), its zero-copy calls ``reserve``/``commit``
and ``receive_view``/``release``. The backend halves that load a graph's source instead of a package kernel are
``graph_cuda.py`` and ``graph_opencl.py``. Where the entry's or the exit's message carries an
``rg.HLC`` stamp, the host's clock stamps what it sends and receives what it takes
(``ringgen.runtime.causal.HostStamps``); the device stamps every hop between.
"""

from __future__ import annotations

import threading
from typing import Any, AsyncIterator, Mapping, Optional

import attrs
import numpy as np

from ..graphs import Graph, counter_layout, stamp_fields
from ..protocol import N_REASONS, Lifecycle
from ..targets import by_name, resolve, with_capability
from .base import KernelHandle
from .causal import HostStamps
from .graph_edges import Chunk, EdgeStats, GraphStats
from .stats import KernelStats, _reason_name
from .topic_host import HOST

__all__ = ["DEVICE_STRATEGIES", "FusedGraphHandle", "check_strategy", "open_fused"]

#: The device strategies, and the backends each runs on (their rows in ``ringgen/targets.py``).
DEVICE_STRATEGIES = {
    "atomic_queue": tuple(t.name for t in with_capability("grid_graph")),
    "shared_memory": tuple(t.name for t in with_capability("fused_graph")),
}


def open_fused(
    backend: str, spec: Any, package_dir: str, *, source: str, abi: Any, **options: Any
) -> KernelHandle:
    """Launch the fused kernel ``spec`` from its ``source`` and ``abi`` on ``backend`` (the
    package at ``package_dir`` gives the stages' codecs), with that backend's launch options.

    Raises:
        ValueError: no backend by that name runs fused graphs.
    """
    opener = by_name(backend).graph_opener
    if opener is None:
        raise ValueError(f"kernel {spec.name}: backend {backend!r} runs no fused graph")
    return resolve(opener)(spec, package_dir, source=source, abi=abi, **options)


def check_strategy(graph: Graph, strategy: Any, backend: str) -> None:
    """Raise unless ``strategy`` is a device strategy that runs on ``backend``.

    Raises:
        ValueError: ``strategy`` is not one of ``DEVICE_STRATEGIES``, or ``backend`` cannot run it
            (the message lists where it runs).
    """
    if strategy not in DEVICE_STRATEGIES:
        raise ValueError(
            f"graph {graph.label}: {strategy!r} is not a device strategy (device strategies: "
            f"{', '.join(DEVICE_STRATEGIES)})"
        )
    if backend not in DEVICE_STRATEGIES[strategy]:
        raise ValueError(
            f"graph {graph.label}: strategy {strategy!r} runs on "
            f"{', '.join(DEVICE_STRATEGIES[strategy])}, not on backend {backend!r}",
        )


class FusedGraphHandle:
    """A launched graph fused into one device kernel: send into its entry, receive from its exit.

    The calls, errors and lifecycle of ``GraphHandle``; each delegates to the one kernel
    (``kernel``). ``stats()`` is the host strategy's shape, read from the counters the kernel keeps
    per stage and per edge (``ringgen.graphs.GraphCounters``; ``kernel.graph_counts()``) while it
    runs: see ``stats``. ``edge_capacity`` gives each edge's bound, ``(producer, consumer) ->
    messages`` (what the strategy's source holds; 0 when not given). ``_flow`` is the host's end
    of the stamps (``HostStamps``; what ``ringgen.testing.history.record`` records into).
    """

    def __init__(
        self,
        graph: Graph,
        kernel: KernelHandle,
        *,
        strategy: str,
        edge_capacity: Optional[Mapping[tuple[str, str], int]] = None,
    ) -> None:
        self.graph = graph
        self.name = graph.label
        self.kernel = kernel
        self.strategy = strategy
        self.backend = kernel.backend
        self.handles = {s: kernel for s in graph.stages}
        self.counters = counter_layout(graph)
        self.edge_capacity = dict(edge_capacity or {})
        exit_ = graph.exits[0] if len(graph.exits) == 1 else graph.entry
        fields = stamp_fields(graph)
        self._flow = HostStamps(fields[graph.entry][0], fields[exit_][1], exit_, HOST)
        # stamps are taken and sent under one lock, so they reach the entry in stamp order
        self._send_lock = threading.Lock()
        self._reserved: Optional[np.ndarray] = None

    # ---- sending and receiving: the kernel's own

    def send(self, message: Any, *, block: bool = True, timeout: Optional[float] = None) -> None:
        """Publish one message into the entry (``KernelHandle.send``), stamped by the host's
        clock when its class has an ``rg.HLC`` field."""
        if self._flow.entry_field is None:
            self.kernel.send(message, block=block, timeout=timeout)
            return
        with self._send_lock:
            self._flow.stamp_sent([message])
            self.kernel.send(message, block=block, timeout=timeout)

    def send_batch(
        self, messages: Any, *, block: bool = True, timeout: Optional[float] = None
    ) -> int:
        """Publish many messages into the entry; returns how many were accepted
        (``KernelHandle.send_batch``). Stamped messages get the host clock's next stamps (an
        array is copied; objects are stamped in place)."""
        if self._flow.entry_field is None:
            return self.kernel.send_batch(messages, block=block, timeout=timeout)
        if not isinstance(messages, (np.ndarray, list)):
            messages = list(messages)
        with self._send_lock:
            messages = self._flow.stamp_sent(messages)
            return self.kernel.send_batch(messages, block=block, timeout=timeout)

    async def send_async(self, message: Any, *, timeout: Optional[float] = None) -> None:
        """``send`` for asyncio (``KernelHandle.send_async``), stamped as ``send``."""
        self._flow.stamp_sent([message])
        await self.kernel.send_async(message, timeout=timeout)

    def _exit(self, exit: Optional[str]) -> None:
        if exit is not None and exit not in self.graph.exits:
            raise ValueError(
                f"graph {self.name}: {exit!r} is not an exit (exits: {', '.join(self.graph.exits)})"
            )

    def receive(self, timeout: Optional[float] = None, *, exit: Optional[str] = None) -> Any:
        """Take the next reply of the exit (``KernelHandle.receive``; ``exit`` may name it).

        Raises:
            ValueError: ``exit`` is not the exit.
        """
        self._exit(exit)
        reply = self.kernel.receive(timeout=timeout)
        self._flow.received([reply])
        return reply

    def receive_batch(
        self,
        max_n: Optional[int] = None,
        timeout: Optional[float] = 0.0,
        *,
        exit: Optional[str] = None,
    ) -> Chunk:
        """Take up to ``max_n`` replies of the exit (``KernelHandle.receive_batch``).

        Raises:
            ValueError: ``exit`` is not the exit.
        """
        self._exit(exit)
        return self._flow.received(self.kernel.receive_batch(max_n=max_n, timeout=timeout))

    async def receive_async(
        self, timeout: Optional[float] = None, *, exit: Optional[str] = None
    ) -> Any:
        """``receive`` for asyncio (``KernelHandle.receive_async``)."""
        self._exit(exit)
        reply = await self.kernel.receive_async(timeout=timeout)
        self._flow.received([reply])
        return reply

    def __aiter__(self) -> AsyncIterator[Any]:
        """``async for reply in graph``: the exit's replies until it is terminated and drained."""
        if self._flow.exit_field is None:
            return self.kernel.__aiter__()
        return self._stamped_replies()

    async def _stamped_replies(self) -> AsyncIterator[Any]:
        async for reply in self.kernel.__aiter__():
            self._flow.received([reply])
            yield reply

    # ---- zero copy: the kernel's own, where its backend offers it (CUDA)

    def _zero_copy(self, call: str) -> Any:
        """The kernel's zero-copy method ``call``.

        Raises:
            TypeError: the kernel's backend has no zero-copy API.
        """
        method = getattr(self.kernel, call, None)
        if method is None:
            raise TypeError(
                f"graph {self.name}: {call}() is the zero-copy API of CUDA kernels; this graph "
                f"runs on {self.backend!r} ({self.strategy}), whose send_batch and receive_batch "
                "copy"
            )
        return method

    def reserve(self, n: int) -> np.ndarray:
        """A writable view of up to ``n`` free slots of the entry's input ring (contiguous,
        possibly fewer, possibly empty): fill it, then ``commit(k)`` the first k
        (``CudaKernelHandle.reserve``; direct entry messages only).

        Raises:
            TypeError: the backend has no zero-copy API, or the entry's message is bridged.
        """
        self._reserved = self._zero_copy("reserve")(n)
        return self._reserved

    def commit(self, n: int) -> None:
        """Publish the first ``n`` slots of the last ``reserve`` view into the entry (stamped in
        place first, when the entry's message has an ``rg.HLC`` field)."""
        commit = self._zero_copy("commit")
        if self._flow.entry_field is None or self._reserved is None or n <= 0:
            commit(n)
            return
        with self._send_lock:
            self._flow.stamp_sent(self._reserved[:n], in_place=True)
            commit(n)

    def receive_view(
        self,
        max_n: Optional[int] = None,
        timeout: Optional[float] = 0.0,
        *,
        min_n: int = 1,
        exit: Optional[str] = None,
    ) -> np.ndarray:
        """A read-only view of up to ``max_n`` of the exit's replies in its output ring (in order),
        valid until ``release(len(view))``; waits until ``min_n`` are ready or ``timeout`` passes
        (``CudaKernelHandle.receive_view``).

        Raises:
            TypeError: the backend has no zero-copy API, or the exit returns no direct message.
            ValueError: ``exit`` is not the exit.
        """
        self._exit(exit)
        return self._flow.received(self._zero_copy("receive_view")(max_n, timeout, min_n=min_n))

    def release(self, n: int) -> None:
        """Hand the first ``n`` replies of the last ``receive_view`` back to the kernel."""
        self._zero_copy("release")(n)

    def stage(self, name: str) -> KernelHandle:
        """The fused kernel, which runs stage ``name`` (its ``state()`` is the stateful stage's).

        Raises:
            KeyError: the graph has no such stage.
        """
        if name not in self.handles:
            raise KeyError(
                f"graph {self.name} has no stage {name!r} (stages: {', '.join(self.graph.stages)})"
            )
        return self.kernel

    # ---- observing and stopping

    @property
    def lifecycle(self) -> Lifecycle:
        """The fused kernel's lifecycle."""
        return self.kernel.lifecycle

    def stats(self) -> GraphStats:
        """The graph's ``GraphStats``: per stage a ``KernelStats``, per edge an ``EdgeStats``.

        A stage's ``processed`` (its handler's calls, faulted ones included), ``emitted`` (outputs
        it handed on) and ``rejected`` (its faults by reason) are its own, counted on the device.
        Where the host is at one end, a field is the kernel's: the entry's ``input_depth``,
        ``sent``, ``unprocessed`` and ``dead_letters_dropped``; the exit's ``output_depth``,
        ``output_stalls``, ``received``, ``spilled`` and ``latency``. An inner stage's
        ``input_depth`` is what its input edges hold, its ``output_depth`` and ``received`` the
        most any output edge holds and has forwarded, its ``output_stalls`` its edges' stalls, its
        ``sent`` what its input edges passed. Lifecycle, heartbeat, idle polls, launches, capacity
        and fault are the one kernel's, in every stage.

        An edge's ``forwarded`` is what its consumer took, ``depth`` what its producer put on it
        and the consumer has not taken yet, ``stalls`` the producer's waits for room in it
        (``atomic_queue``). Under ``shared_memory`` an edge is a buffer inside one call that every
        output of its producer goes through: it forwards exactly its producer's ``emitted`` and
        holds nothing between calls.
        """
        st = self.kernel.stats()
        raw = self.kernel.graph_counts()
        c = self.counters
        messages = {(e.producer, e.consumer): e.message.__name__ for e in self.graph.all_edges}
        edges = []
        for p, q in c.edges:
            passed = int(raw[c.stage_at(p) + 1])
            if self.strategy == "shared_memory":
                taken, stalls = passed, 0
            else:
                at = c.edge_at(p, q)
                taken, stalls = (int(v) for v in raw[at : at + c.EDGE_WORDS])
            edges.append(
                EdgeStats(
                    producer=p,
                    consumer=q,
                    message=messages[(p, q)],
                    capacity=self.edge_capacity.get((p, q), 0),
                    depth=max(0, passed - taken),
                    forwarded=taken,
                    stalls=stalls,
                )
            )
        stages = {s: self._stage_stats(s, st, raw, edges) for s in c.stages}
        return GraphStats(
            graph=self.name,
            backend=self.backend,
            strategy=self.strategy,
            lifecycle=st.lifecycle,
            stages=stages,
            edges=tuple(edges),
            spilled=st.spilled,
        )

    def _stage_stats(
        self, stage: str, st: KernelStats, raw: np.ndarray, edges: list[EdgeStats]
    ) -> KernelStats:
        """Stage ``stage``'s ``KernelStats`` from the kernel's ``st`` and the counters ``raw``
        (which fields are whose: ``stats``)."""
        at = self.counters.stage_at(stage)
        rejected = {
            _reason_name(r): int(n) for r, n in enumerate(raw[at + 2 : at + 2 + N_REASONS]) if n
        }
        ins = [e for e in edges if e.consumer == stage]
        outs = [e for e in edges if e.producer == stage]
        is_entry = stage == self.graph.entry
        is_exit = stage in self.graph.exits
        return attrs.evolve(
            st,
            kernel=stage,
            processed=int(raw[at]),
            emitted=int(raw[at + 1]),
            rejected=rejected,
            input_depth=st.input_depth if is_entry else sum(e.depth for e in ins),
            output_depth=(st.output_depth if is_exit else max((e.depth for e in outs), default=0)),
            output_stalls=st.output_stalls if is_exit else sum(e.stalls for e in outs),
            sent=st.sent if is_entry else sum(e.forwarded + e.depth for e in ins),
            received=st.received if is_exit else max((e.forwarded for e in outs), default=0),
            dead_letters_dropped=st.dead_letters_dropped if is_entry else 0,
            spilled=st.spilled if is_exit else 0,
            unprocessed=st.unprocessed if is_entry else 0,
            latency=st.latency if is_exit else None,
        )

    def terminate(self, timeout: Optional[float] = None, *, drain: bool = True) -> GraphStats:
        """Stop the fused kernel (``KernelHandle.terminate``: drain, or ``drain=False`` now);
        returns the final ``GraphStats``."""
        self.kernel.terminate(timeout=timeout, drain=drain)
        return self.stats()

    def __enter__(self) -> "FusedGraphHandle":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.kernel.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return (
            f"<FusedGraphHandle {self.name} ({self.strategy}) on {self.backend}: "
            f"{self.lifecycle.name}>"
        )
