"""A graph running as one device kernel: ``FusedGraphHandle`` (docs/graphs.md, "Strategies").

Both device strategies make one ring kernel of a graph (``ringgen.graph_fusion.fused_spec``): in
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

A graph with several exits sends every exit's replies through the kernel's one output queue,
each tagged with its exit (``ringgen.graph_fusion.FusedParts``); ``ExitDemux`` (graph_demux.py) splits them into one
spill per exit, which ``receive(exit=)`` and ``receive_batch(exit=)`` read, FIFO per exit. The
host's subscription to a topic is one more tagged outlet, split into the subscription's queue, and
the host's publishes are tagged rows of the input queue: ``publish``, ``publish_batch`` and
``subscribe`` come from ``graph_device_topics.HostTopicCalls``. A graph
with several ``@rg.state`` stages keeps them in one fused state; ``stage(name)`` is then a
``FusedStage``, whose ``state()`` is that stage's own.
"""

from __future__ import annotations

import threading
from typing import Any, AsyncIterator, Mapping, Optional

import attrs
import numpy as np

from ..errors import KernelTimeoutError, QueueClosedError, QueueFullError
from ..graphs import Graph
from ..graph_fusion import (
    FusedParts,
    counter_layout,
    fused_parts,
    made_by_fusing,
    stamp_fields,
)
from ..protocol import N_REASONS, Lifecycle
from ..targets import by_name, resolve, with_capability
from ..wire.direct_codec import direct_codec
from .base import KernelHandle
from .causal import HostStamps
from .graph_demux import ExitDemux
from .graph_device_topics import HostTopicCalls, HostTopics, fused_topic_stats
from .graph_edges import Chunk, EdgeStats, GraphStats
from .stats import KernelStats, _reason_name
from .topic_host import HOST
from .waiting import Backoff, check_timeout, deadline_after, expired

__all__ = [
    "DEVICE_STRATEGIES",
    "FusedGraphHandle",
    "FusedStage",
    "check_strategy",
    "open_fused",
]

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
    # The classes fusing adds (the tagged exit reply, the fused state: ringgen.graph_fusion.FusedParts)
    # are in no package: their codecs come from their layouts.
    made = [c for c in (spec.input, spec.output, spec.state) if c is not None]
    made = [c for c in made if made_by_fusing(c)]
    if made:
        codecs = dict(options.pop("codecs", None) or {})
        codecs.update((c.__name__, direct_codec(c)) for c in made)
        options["codecs"] = codecs
    return resolve(opener)(spec, package_dir, source=source, abi=abi, **options)


class FusedStage:
    """Stage ``name`` of a fused graph whose stages keep several states (``FusedParts
    .state_class``): the fused kernel's ``KernelHandle`` in every call but ``state()``, which is
    this stage's own ``@rg.state`` object (None for a stage without one), read out of the fused
    state, as the host strategy's ``stage(name).state()`` is the stage's kernel's."""

    def __init__(self, kernel: KernelHandle, stage: str, cls: Optional[type], pairs: Any) -> None:
        self._kernel = kernel
        self._stage = stage
        self._cls = cls
        self._pairs = tuple(pairs)

    def state(self) -> Any:
        """A copy of this stage's state now (after termination, as the kernel left it)."""
        if self._cls is None:
            return None
        whole = self._kernel.state()
        if whole is None:
            return None
        return self._cls(**{own: getattr(whole, fused) for own, fused in self._pairs})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kernel, name)

    def __repr__(self) -> str:
        return f"<FusedStage {self._stage} of {self._kernel!r}>"


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


class FusedGraphHandle(HostTopicCalls):
    """A launched graph fused into one device kernel: send into its entry, receive from its exit.

    The calls, errors and lifecycle of ``GraphHandle``; each delegates to the one kernel
    (``kernel``). ``stats()`` is the host strategy's shape, read from the counters the kernel keeps
    per stage and per edge (``ringgen.graph_fusion.GraphCounters``; ``kernel.graph_counts()``) while it
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
        self.counters = counter_layout(graph)
        self.edge_capacity = dict(edge_capacity or {})
        parts = fused_parts(graph)
        if parts.state_class is None:
            self.handles: dict[str, Any] = {s: kernel for s in graph.stages}
        else:
            self.handles = {
                s: FusedStage(kernel, s, graph.spec(s).state, parts.state_fields.get(s, ()))
                for s in graph.stages
            }
        # the host's topics (graph_device_topics.py) and the exits share the demux's lock
        lock = threading.RLock()
        self._topics = (
            HostTopics(graph, parts, kernel.codecs, kernel.capacity, lock)
            if parts.host_subscribed or parts.host_published
            else None
        )
        # several exits or a host subscription: one tagged output queue, split on the host
        self._demux = (
            ExitDemux(graph, parts, kernel.codecs, lock, self._topics)
            if parts.exit_class is not None
            else None
        )
        # the host publishes to a topic: the input queue takes tagged rows (0: the entry's)
        self._tagged_input = parts.input_class is not None
        self._host_published = 0  # rows publish_batch put into the input queue (not the entry's)
        exit_ = graph.exits[0] if len(graph.exits) == 1 else graph.entry
        fields = stamp_fields(graph)
        # replies of several exits carry no stamp (fused_parts refuses it)
        exit_field = fields[exit_][1] if self._demux is None else None
        self._flow = HostStamps(fields[graph.entry][0], exit_field, exit_, HOST)
        # stamps are taken and sent under one lock, so they reach the entry in stamp order
        self._send_lock = threading.Lock()
        self._reserved: Optional[np.ndarray] = None

    # ---- sending and receiving: the kernel's own

    def send(self, message: Any, *, block: bool = True, timeout: Optional[float] = None) -> None:
        """Publish one message into the entry (``KernelHandle.send``), stamped by the host's
        clock when its class has an ``rg.HLC`` field.

        Raises:
            QueueFullError: ``block=False`` and the input queue is full, or ``timeout`` expired.
        """
        if self._tagged_input:
            rows = self._topics.tagged(None, [message])
            if self.kernel.send_batch(rows, block=block, timeout=timeout) < 1:
                err = QueueFullError(
                    f"graph {self.name}: the fused kernel's input queue is full (capacity "
                    f"{self.kernel.capacity}); 0 of 1 message(s) accepted without waiting",
                    hint="send with block=True (the default) to wait for room",
                )
                err.accepted = 0  # type: ignore[attr-defined]
                raise err
            return
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
        array is copied; objects are stamped in place). Where the host publishes to a topic the
        messages go in as rows tagged for the entry (``HostTopics.tagged``)."""
        if self._tagged_input:
            rows = self._topics.tagged(None, messages)
            return self.kernel.send_batch(rows, block=block, timeout=timeout)
        if self._flow.entry_field is None:
            return self.kernel.send_batch(messages, block=block, timeout=timeout)
        if not isinstance(messages, (np.ndarray, list)):
            messages = list(messages)
        with self._send_lock:
            messages = self._flow.stamp_sent(messages)
            return self.kernel.send_batch(messages, block=block, timeout=timeout)

    async def send_async(self, message: Any, *, timeout: Optional[float] = None) -> None:
        """``send`` for asyncio (``KernelHandle.send_async``), stamped as ``send``."""
        if self._tagged_input:
            rows = self._topics.tagged(None, [message])
            tagged = self.kernel.codecs[fused_parts(self.graph).input_class.__name__]
            await self.kernel.send_async(tagged.from_array(rows)[0], timeout=timeout)
            return
        self._flow.stamp_sent([message])
        await self.kernel.send_async(message, timeout=timeout)

    def _pump(self, asked: Optional[str]) -> None:
        """Split what the kernel's output queue (its spill first) holds into the exits' spills
        and the host's subscriptions, as much as the ``Block`` subscriptions have room for (none
        while one is full: the back-pressure). Call with the demux's lock held.

        Raises:
            QueueClosedError: the kernel is terminated and every reply has been taken.
        """
        room = self._topics.room() if self._topics is not None else None
        if room == 0:
            return
        try:
            rows = self.kernel.receive_batch(max_n=room, timeout=0)
        except QueueClosedError:
            if self._topics is not None:
                self._topics.closed = True
            raise
        self._demux.split(rows, asked)

    def _exit(self, exit: Optional[str]) -> Optional[str]:
        """The exit ``exit`` names: with one exit it may be None; with several it must be given
        (the host strategy's rule: a ``ValueError`` listing them)."""
        if exit is not None and exit not in self.graph.exits:
            raise ValueError(
                f"graph {self.name}: {exit!r} is not an exit (exits: {', '.join(self.graph.exits)})"
            )
        if exit is None and not self.graph.exits:
            raise ValueError(
                f"graph {self.name} has no exit (its last stages publish to topics the host "
                "subscribes to): receive from subscribe(topic)"
            )
        if exit is None and self._demux is not None:
            if len(self.graph.exits) == 1:
                return self.graph.exits[0]
            raise ValueError(
                f"graph {self.name} has {len(self.graph.exits)} exits "
                f"({', '.join(self.graph.exits)}): pass exit=NAME to say which to receive from"
            )
        return exit

    def _take_exit(self, exit: str, max_n: int) -> Optional[np.ndarray]:
        """Up to ``max_n`` replies of ``exit`` ready now (its spill first, then whatever the
        kernel's output queue holds, split per exit), or None.

        Raises:
            QueueClosedError: ``exit`` has no output, or the kernel is terminated and every
                reply of ``exit`` has been taken.
            KernelFaultError: the kernel stopped on a fault and no reply is left.
        """
        demux = self._demux
        if demux.dtypes[exit] is None:
            raise QueueClosedError(
                f"graph {self.name}: exit {exit} has no output (its handler returns None and "
                "takes no Outbox); there is nothing to receive",
                hint="read its effect with stage(name).state() or stats()",
            )
        with demux.lock:
            part = demux.take(exit, max_n)
            if part is not None:
                return part
            try:
                self._pump(exit)
            except QueueClosedError:
                raise QueueClosedError(
                    f"graph {self.name}: exit {exit} is terminated and every reply has been taken",
                ) from None
            return demux.take(exit, max_n)

    def _wait_exit(self, exit: str, max_n: int, timeout: Optional[float]) -> Optional[np.ndarray]:
        deadline = deadline_after(timeout)
        backoff = Backoff()
        while True:
            part = self._take_exit(exit, max_n)
            if part is not None or expired(deadline):
                return part
            backoff.wait(deadline)

    def _first(self, exit: str, part: np.ndarray) -> Any:
        spec = self.graph.spec(exit)
        return self.kernel.codecs[(spec.outbox or spec.output).__name__].from_array(part[:1])[0]

    def receive(self, timeout: Optional[float] = None, *, exit: Optional[str] = None) -> Any:
        """Take the next reply of the exit (``KernelHandle.receive``; ``exit`` names it, and must
        when the graph has several: their replies are split per exit, FIFO per exit).

        Raises:
            ValueError: ``exit`` is not an exit, or is missing with several exits.
            KernelTimeoutError: no reply of ``exit`` within ``timeout`` (several exits).
            QueueClosedError: the exit is terminated and every reply has been taken.
        """
        exit = self._exit(exit)
        if self._demux is not None:
            timeout = check_timeout(timeout, f"graph {self.name}.receive")
            part = self._wait_exit(exit, 1, timeout)
            if part is None:
                raise KernelTimeoutError(
                    f"graph {self.name}: no reply from {exit} within {timeout:g} s",
                    hint="check stats(): a rejected or filtered message produces no reply",
                )
            return self._first(exit, part)
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
        """Take up to ``max_n`` replies of the exit (``KernelHandle.receive_batch``; with several
        exits, ``exit`` names which: a structured array of its message's dtype, empty when none
        came within ``timeout``).

        Raises:
            ValueError: ``exit`` is not an exit, or is missing with several exits; ``max_n`` < 1.
        """
        exit = self._exit(exit)
        if self._demux is not None:
            timeout = check_timeout(timeout, f"graph {self.name}.receive_batch")
            n = self.kernel.capacity if max_n is None else int(max_n)
            if n < 1:
                raise ValueError(
                    f"graph {self.name}: receive_batch max_n must be >= 1, got {max_n!r}"
                )
            part = self._wait_exit(exit, n, timeout)
            return np.zeros(0, self._demux.dtypes[exit]) if part is None else part
        return self._flow.received(self.kernel.receive_batch(max_n=max_n, timeout=timeout))

    async def receive_async(
        self, timeout: Optional[float] = None, *, exit: Optional[str] = None
    ) -> Any:
        """``receive`` for asyncio (``KernelHandle.receive_async``; with several exits it polls
        the exit's spill and the output queue without blocking the event loop)."""
        exit = self._exit(exit)
        if self._demux is not None:
            deadline = deadline_after(timeout, f"graph {self.name}.receive_async")
            backoff = Backoff()
            while True:
                part = self._take_exit(exit, 1)
                if part is not None:
                    return self._first(exit, part)
                if expired(deadline):
                    raise KernelTimeoutError(
                        f"graph {self.name}: no reply from {exit} within {timeout:g} s"
                    )
                await backoff.wait_async(deadline)
        reply = await self.kernel.receive_async(timeout=timeout)
        self._flow.received([reply])
        return reply

    def __aiter__(self) -> AsyncIterator[Any]:
        """``async for reply in graph``: the exit's replies until it is terminated and drained.

        Raises:
            ValueError: the graph has several exits (as on the host strategy: receive_async(exit=)).
        """
        exit = self._exit(None)
        if self._demux is not None:  # one exit beside the host's subscriptions: its share
            return self._exit_replies(exit)
        if self._flow.exit_field is None:
            return self.kernel.__aiter__()
        return self._stamped_replies()

    async def _exit_replies(self, exit: str) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.receive_async(exit=exit)
            except QueueClosedError:
                return

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
            TypeError: the backend has no zero-copy API, the entry's message is bridged, or the
                host publishes to a topic (the input slots are tagged).
        """
        self._untagged_input("reserve")
        self._reserved = self._zero_copy("reserve")(n)
        return self._reserved

    def commit(self, n: int) -> None:
        """Publish the first ``n`` slots of the last ``reserve`` view into the entry (stamped in
        place first, when the entry's message has an ``rg.HLC`` field)."""
        self._untagged_input("commit")
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
            TypeError: the backend has no zero-copy API, the exit returns no direct message, or
                the graph has several exits (their replies share one ring, tagged).
            ValueError: ``exit`` is not the exit.
        """
        self._exit(exit)
        if self._demux is not None and self._topics is not None:
            topics = ", ".join(fused_parts(self.graph).host_subscribed)
            raise TypeError(
                f"graph {self.name}: receive_view() reads one exit's replies in place, and this "
                f"graph's exits share one output ring with the host's copies of topic(s) {topics}, "
                "tagged per outlet; use receive_batch(exit=...)"
            )
        if self._demux is not None:
            raise TypeError(
                f"graph {self.name}: receive_view() reads one exit's replies in place, and this "
                f"graph's {len(self.graph.exits)} exits share one output ring, tagged per exit; "
                "use receive_batch(exit=...)"
            )
        return self._flow.received(self._zero_copy("receive_view")(max_n, timeout, min_n=min_n))

    def release(self, n: int) -> None:
        """Hand the first ``n`` replies of the last ``receive_view`` back to the kernel."""
        self._zero_copy("release")(n)

    def stage(self, name: str) -> Any:
        """The fused kernel, which runs stage ``name`` (its ``state()`` is the stateful stage's;
        with several stateful stages a ``FusedStage``, whose ``state()`` is stage ``name``'s).

        Raises:
            KeyError: the graph has no such stage.
        """
        if name not in self.handles:
            raise KeyError(
                f"graph {self.name} has no stage {name!r} (stages: {', '.join(self.graph.stages)})"
            )
        return self.handles[name]

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
        and fault are the one kernel's, in every stage. With several exits each exit's
        ``received`` and ``spilled`` are its own (``ExitDemux``: its replies handed out, and those
        split off while another exit was received from), its ``output_depth``, ``output_stalls``
        and ``latency`` the shared output queue's; ``GraphStats.spilled`` is the kernel's own
        spill (tagged replies moved aside during a blocking send) plus every exit's.

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
        spilled = st.spilled
        if self._demux is not None:
            with self._demux.lock:
                spilled += sum(self._demux.spilled.values())
        by_pair = {(e.producer, e.consumer): e for e in edges}
        topics = fused_topic_stats(self.graph, raw, c, by_pair, self._topics)
        return GraphStats(
            graph=self.name,
            backend=self.backend,
            strategy=self.strategy,
            lifecycle=st.lifecycle,
            stages=stages,
            edges=tuple(edges),
            spilled=spilled,
            topics=topics,
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
        if is_exit and self._demux is not None:
            # several exits: what the host took and holds of this exit's replies is counted per
            # exit as they are split; the output queue, its stalls and latency are shared
            with self._demux.lock:
                st = attrs.evolve(
                    st, received=self._demux.received[stage], spilled=self._demux.spilled[stage]
                )
        return attrs.evolve(
            st,
            kernel=stage,
            processed=int(raw[at]),
            emitted=int(raw[at + 1]),
            rejected=rejected,
            input_depth=st.input_depth if is_entry else sum(e.depth for e in ins),
            output_depth=(st.output_depth if is_exit else max((e.depth for e in outs), default=0)),
            output_stalls=st.output_stalls if is_exit else sum(e.stalls for e in outs),
            # the input queue also carries what the host published to topics: not the entry's
            sent=(
                st.sent - self._host_published
                if is_entry
                else sum(e.forwarded + e.depth for e in ins)
            ),
            received=st.received if is_exit else max((e.forwarded for e in outs), default=0),
            dead_letters_dropped=st.dead_letters_dropped if is_entry else 0,
            spilled=st.spilled if is_exit else 0,
            unprocessed=st.unprocessed if is_entry else 0,
            latency=st.latency if is_exit else None,
        )

    def terminate(self, timeout: Optional[float] = None, *, drain: bool = True) -> GraphStats:
        """Stop the fused kernel (``KernelHandle.terminate``: drain, or ``drain=False`` now);
        returns the final ``GraphStats``. The host's subscriptions take every copy from now on
        (the spill rule), so the kernel drains however little the host reads."""
        if self._topics is not None:
            self._topics.relieve()
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
