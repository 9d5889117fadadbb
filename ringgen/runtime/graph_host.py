"""A launched graph of ring kernels, forwarded by the host: ``GraphHandle`` (docs/graphs.md).

Each stage runs as its own resident ``KernelHandle`` on one backend; one host thread (the
*forwarder*) moves every stage's replies into its consumers' input queues. This is the ``host``
strategy, on every backend, and on ``cpu`` the reference composition of the stages' handlers.

Policy: an edge is a bounded FIFO (``edge_capacity``); the forwarder takes a producer's replies only
while every one of its edges has room, so a full edge stalls the producer and back-pressure reaches
the host's ``send``, never dropping. While a blocking send or a draining terminate waits, the exits'
replies move into a spill that ``receive`` reads first. ``terminate()`` drains producers first;
``drain=False`` stops every stage now. A stage whose kernel faults makes the graph faulted.
"""

from __future__ import annotations

import threading
import time
from typing import Any, AsyncIterator, Mapping, Optional

import numpy as np

from ..errors import KernelFaultError, KernelTimeoutError, QueueClosedError, QueueFullError
from ..graphs import Graph
from ..protocol import Lifecycle
from .base import KernelHandle
from .graph_edges import Chunk, EdgeStats, GraphStats, _Edge, _Spill
from .logs import kernel_logger
from .stats import KernelStats
from .topic_host import Flow, Subscription
from .waiting import Backoff, check_timeout, deadline_after, expired

__all__ = ["EdgeStats", "GraphHandle", "GraphStats", "STRATEGIES"]

log = kernel_logger(__name__)

#: The graph strategies this runtime has: ``host`` (each stage resident, edges forwarded by a host
#: thread) on every backend.
STRATEGIES = ("host",)
#: How often the forwarder also polls the stages whose output queue looked empty (to learn that
#: one terminated or faulted), in seconds.
FULL_PASS_S = 1e-3


class GraphHandle:
    """A launched graph (``rg.launch(graph)``): send into its entry, receive from its exits.

    The same calls, errors and lifecycle as a ``KernelHandle``, with ``exit=`` on the receiving
    calls when the graph has several exits, and ``stats()`` per stage and per edge. Use it as a
    context manager so every stage is terminated.
    """

    strategy = "host"

    def __init__(
        self,
        graph: Graph,
        handles: Mapping[str, KernelHandle],
        *,
        edge_capacity: Optional[int] = None,
    ) -> None:
        """Take over the running ``handles`` (one per stage of ``graph``) and start forwarding.

        Raises:
            ValueError: ``edge_capacity`` is not an integer >= 1, or a stage has no handle.
        """
        missing = [s for s in graph.stages if s not in handles]
        if missing:
            raise ValueError(f"graph {graph.label}: no running handle for stage(s) {missing}")
        if edge_capacity is not None and (
            isinstance(edge_capacity, bool)
            or not isinstance(edge_capacity, int)
            or edge_capacity < 1
        ):
            raise ValueError(
                f"graph {graph.label}: edge_capacity must be an integer >= 1, got {edge_capacity!r}"
            )
        self.graph = graph
        self.name = graph.label
        self.handles: Mapping[str, KernelHandle] = dict(handles)
        self.backend = self.handles[graph.entry].backend
        self._edges = [
            _Edge(
                e.producer,
                e.consumer,
                e.message.__name__,
                edge_capacity or self.handles[e.consumer].capacity,
            )
            for e in graph.edges
        ]
        # topics, stamps and causal merges (topic_host.py) decide each stage's outlets and inlets
        self._flow = Flow(graph, self.handles, self._edges, edge_capacity)
        self._edges, self._out_edges, self._in_edges = (
            self._flow.edges,
            self._flow.out_edges,
            self._flow.in_edges,
        )
        # the edges the forwarder pushes itself, per consumer (a topic's subscriber queues are
        # pushed by the Flow, which holds their lock)
        self._pushed_in = {s: [e for e in self._edges if e.consumer == s] for s in graph.stages}
        self._spills = {x: _Spill() for x in graph.exits}
        self._send_lock = threading.Lock()
        self._term_lock = threading.Lock()
        # stages whose replies are all forwarded (terminated and empty); written by the forwarder
        self._finished: set[str] = set()
        self._flow.finished = self._finished.__contains__
        self._fault: Optional[BaseException] = None
        self._terminating = False
        self._terminated = False
        self._stop = threading.Event()
        self._forwarder = threading.Thread(
            target=self._forward_loop, name=f"ringgen-graph-{self.name}", daemon=True
        )
        if self._flow.needs_forwarder:
            self._forwarder.start()

    # ------------------------------------------------------------------------------ forwarding

    def _forward_once(self, full: bool = True) -> int:
        """One pass over the stages, producers first: push each stage's waiting input edges into
        it, then take its replies into its output edges; returns how many messages moved.

        Without ``full``, a stage whose output queue is empty is skipped after one read of its
        queue depths (about 1 us; an empty ``receive_batch`` costs 20-45 us, which over 8 stages
        made each hop of a pipeline cost several passes of 150 us). A full pass also learns which
        stages have terminated (``QueueClosedError``) or faulted.
        """
        moved = 0
        for stage in self.graph.stages:
            handle = self.handles[stage]
            for e in self._pushed_in[stage]:
                if e.depth:
                    try:
                        moved += e.push_into(handle)
                    except QueueClosedError:
                        if not self._terminating:
                            raise
            outs = self._out_edges[stage]
            if not outs or stage in self._finished:
                continue
            room = min(e.room() for e in outs)
            if room <= 0:
                continue
            if not full and handle._queue_depths()[1] == 0:
                continue
            try:
                chunk = handle.receive_batch(max_n=room, timeout=0)
            except QueueClosedError:
                self._finished.add(stage)  # terminated, and every reply has been forwarded
                continue
            if len(chunk):
                chunk = self._flow.stamp(stage, chunk)
                for e in outs:
                    e.put(chunk)
                moved += len(chunk)
        moved += self._flow.push(self._terminating)
        return moved

    def _forward_loop(self) -> None:
        backoff = Backoff()
        last_full = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            full = self._terminating or now - last_full >= FULL_PASS_S
            if full:
                last_full = now
            try:
                moved = self._forward_once(full)
            except (KernelFaultError, QueueClosedError) as exc:
                self._fault = exc
                log.error("graph %s: forwarding stopped: %s", self.name, exc)
                return
            except Exception as exc:  # noqa: BLE001 - reported to the host's next call
                self._fault = exc
                log.exception("graph %s: forwarding failed", self.name)
                return
            if moved:
                backoff.reset()
            else:
                backoff.wait()

    def _raise_fault(self) -> None:
        if self._fault is not None:
            if isinstance(self._fault, KernelFaultError):
                raise self._fault
            raise KernelFaultError(
                f"graph {self.name}: forwarding between stages stopped: {self._fault}"
            ) from self._fault

    # --------------------------------------------------------------------------------- sending

    def send(self, message: Any, *, block: bool = True, timeout: Optional[float] = None) -> None:
        """Publish one message into the entry stage (as ``KernelHandle.send``).

        Raises:
            QueueFullError: the entry's queue stayed full (``block=False``, or ``timeout`` expired).
            QueueClosedError: the graph is terminating or terminated.
            KernelFaultError: a stage stopped on a fault.
            SchemaError: ``message`` is not the entry's input message class.
        """
        if self.send_batch([message], block=block, timeout=timeout) < 1:
            raise QueueFullError(
                f"graph {self.name}: the input queue of its entry {self.graph.entry} is full",
                hint="receive replies, or send with block=True",
            )

    def send_batch(
        self, messages: Any, *, block: bool = True, timeout: Optional[float] = None
    ) -> int:
        """Publish many messages into the entry stage; returns how many were accepted.

        With ``block`` it waits for room (moving the exits' replies into the spill meanwhile) until
        all are accepted; without, it takes what fits now.

        Raises:
            QueueFullError: ``timeout`` expired first; ``accepted`` says how many were published.
            QueueClosedError, KernelFaultError, SchemaError: as ``send``.
        """
        timeout = check_timeout(timeout, f"graph {self.name}.send_batch")
        if not isinstance(messages, (np.ndarray, list)):
            messages = list(messages)
        entry = self.handles[self.graph.entry]
        with self._send_lock:
            self._check_sendable()
            messages = self._flow.stamp_sent(messages)  # under the lock: stamps in send order
            done = entry.send_batch(messages, block=False)
            if done == len(messages) or not block:
                return done
            deadline = deadline_after(timeout)
            backoff = Backoff()
            while done < len(messages):
                if expired(deadline):
                    err = QueueFullError(
                        f"graph {self.name}: {done} of {len(messages)} messages accepted within "
                        f"{timeout:g} s (the entry {self.graph.entry} stayed full)",
                        hint="receive replies, or raise timeout",
                    )
                    err.accepted = done  # type: ignore[attr-defined]
                    raise err
                self._check_sendable()
                n = entry.send_batch(messages[done:], block=False)
                if n:
                    done += n
                    backoff.reset()
                elif not self._spill_exits():
                    backoff.wait(deadline)
            return done

    def _check_sendable(self) -> None:
        self._raise_fault()
        if self._terminating or self._terminated:
            raise QueueClosedError(f"graph {self.name} is terminating or terminated")

    def _spill_exits(self) -> int:
        """Move the exits' ready replies into the spill; returns how many."""
        moved = 0
        for stage, spill in self._spills.items():
            handle = self.handles[stage]
            if handle.out_codec is None:
                continue
            with spill.lock:
                try:
                    chunk = handle.receive_batch(timeout=0)
                except QueueClosedError:
                    continue
                if len(chunk):
                    spill.chunks.append(chunk)
                    spill.total += len(chunk)
                    moved += len(chunk)
        return moved + self._flow.relieve_host()

    # ------------------------------------------------------------------------------- receiving

    def _exit(self, exit: Optional[str]) -> str:
        if exit is None:
            if len(self.graph.exits) == 1:
                return self.graph.exits[0]
            raise ValueError(
                f"graph {self.name} has {len(self.graph.exits)} exits "
                f"({', '.join(self.graph.exits)}): pass exit=NAME to say which to receive from"
            )
        if exit not in self._spills:
            raise ValueError(
                f"graph {self.name}: {exit!r} is not an exit (exits: {', '.join(self.graph.exits)})"
            )
        return exit

    def _take(self, stage: str, max_n: int) -> Optional[Chunk]:
        """Up to ``max_n`` replies of exit ``stage`` ready now (the spill first), or None."""
        spill = self._spills[stage]
        with spill.lock:
            part = spill.take(max_n)
            if part is not None:
                return self._flow.received(stage, part)
            chunk = self.handles[stage].receive_batch(max_n=max_n, timeout=0)
            return self._flow.received(stage, chunk) if len(chunk) else None

    def _wait_take(self, stage: str, max_n: int, timeout: Optional[float]) -> Optional[Chunk]:
        deadline = deadline_after(timeout)
        backoff = Backoff()
        while True:
            part = self._take(stage, max_n)
            if part is not None:
                return part
            self._raise_fault()
            if expired(deadline):
                return None
            backoff.wait(deadline)

    def receive(self, timeout: Optional[float] = None, *, exit: Optional[str] = None) -> Any:
        """Take the next reply of an exit, waiting up to ``timeout`` seconds (None: no limit).

        Args:
            exit: the exit stage's name; needed only when the graph has several exits.

        Raises:
            ValueError: ``exit`` is missing (several exits) or not an exit.
            KernelTimeoutError: no reply within ``timeout``.
            QueueClosedError: the exit is terminated and every reply has been taken.
            KernelFaultError: a stage stopped on a fault.
        """
        stage = self._exit(exit)
        timeout = check_timeout(timeout, f"graph {self.name}.receive")
        part = self._wait_take(stage, 1, timeout)
        if part is None:
            raise KernelTimeoutError(
                f"graph {self.name}: no reply from {stage} within {timeout:g} s",
                hint="check stats(): a rejected or filtered message produces no reply",
            )
        return self._first_object(stage, part)

    def _first_object(self, stage: str, part: Chunk) -> Any:
        if isinstance(part, list):
            return part[0]
        return self.handles[stage].out_codec.from_array(part[:1])[0]

    def receive_batch(
        self,
        max_n: Optional[int] = None,
        timeout: Optional[float] = 0.0,
        *,
        exit: Optional[str] = None,
    ) -> Chunk:
        """Take up to ``max_n`` replies of an exit that are ready now (as
        ``KernelHandle.receive_batch``: a structured array, or a list for a bridged message).

        Raises:
            ValueError: ``exit`` is missing (several exits) or not an exit; ``max_n`` < 1.
            QueueClosedError: the exit is terminated and every reply has been taken.
            KernelFaultError: a stage stopped on a fault.
        """
        stage = self._exit(exit)
        timeout = check_timeout(timeout, f"graph {self.name}.receive_batch")
        handle = self.handles[stage]
        n = handle.capacity if max_n is None else int(max_n)
        if n < 1:
            raise ValueError(f"graph {self.name}: receive_batch max_n must be >= 1, got {max_n!r}")
        part = self._wait_take(stage, n, timeout)
        return handle.format.empty() if part is None else part

    async def send_async(self, message: Any, *, timeout: Optional[float] = None) -> None:
        """``send`` for asyncio: awaits room in the entry without blocking the event loop.

        Raises:
            QueueFullError: no room within ``timeout``; otherwise as ``send``.
        """
        deadline = deadline_after(timeout, f"graph {self.name}.send_async")
        backoff = Backoff()
        while self.send_batch([message], block=False) < 1:
            if expired(deadline):
                raise QueueFullError(
                    f"graph {self.name}: the entry {self.graph.entry} stayed full for {timeout:g} s",
                    hint="receive replies, or raise timeout",
                )
            if not self._spill_exits():
                await backoff.wait_async(deadline)

    async def receive_async(
        self, timeout: Optional[float] = None, *, exit: Optional[str] = None
    ) -> Any:
        """``receive`` for asyncio: awaits the next reply without blocking the event loop."""
        stage = self._exit(exit)
        deadline = deadline_after(timeout, f"graph {self.name}.receive_async")
        backoff = Backoff()
        while True:
            part = self._take(stage, 1)
            if part is not None:
                return self._first_object(stage, part)
            self._raise_fault()
            if expired(deadline):
                raise KernelTimeoutError(
                    f"graph {self.name}: no reply from {stage} within {timeout:g} s"
                )
            await backoff.wait_async(deadline)

    def __aiter__(self) -> AsyncIterator[Any]:
        """``async for reply in graph``: the replies of its only exit as they come, until that exit
        is terminated and every reply has been taken."""
        return self._replies()

    async def _replies(self) -> AsyncIterator[Any]:
        while True:
            try:
                reply = await self.receive_async()
            except QueueClosedError:
                return
            yield reply

    def publish(self, topic: str, message: Any, **kw: Any) -> None:
        """The host publishes one message to ``topic`` (``rg.HOST >> topic``); as ``publish_batch``."""
        if self.publish_batch(topic, [message], **kw) < 1:
            raise QueueFullError(f"graph {self.name}: topic {topic} has a full subscriber")

    def publish_batch(self, topic: str, messages: Any, **kw: Any) -> int:
        """The host publishes to ``topic`` (``block``, ``timeout`` as ``send_batch``); returns how
        many were accepted (``Flow.publish_batch`` in topic_host.py lists the errors)."""
        return self._flow.publish_batch(topic, messages, check=self._check_sendable, **kw)

    def subscribe(self, topic: str) -> Subscription:
        """The host's subscription to ``topic`` (``topic >> rg.HOST``): ``receive``,
        ``receive_batch``, iteration."""
        return self._flow.subscription(topic, self._raise_fault)

    def stage(self, name: str) -> KernelHandle:
        """The running ``KernelHandle`` of stage ``name`` (for its ``state()`` or ``stats()``).

        Raises:
            KeyError: the graph has no such stage.
        """
        try:
            return self.handles[name]
        except KeyError:
            raise KeyError(
                f"graph {self.name} has no stage {name!r} (stages: {', '.join(self.graph.stages)})"
            ) from None

    # ------------------------------------------------------------------------------ observing

    @property
    def lifecycle(self) -> Lifecycle:
        """FAULTED when a stage faulted, TERMINATED when all are, else the least advanced stage."""
        states = [h.lifecycle for h in self.handles.values()]
        return self._combined(states)

    def _combined(self, states: list[Lifecycle]) -> Lifecycle:
        if Lifecycle.FAULTED in states or isinstance(self._fault, KernelFaultError):
            return Lifecycle.FAULTED
        if Lifecycle.STALLED in states:  # one stage stuck stalls the graph (min() would hide it)
            return Lifecycle.STALLED
        if all(s is Lifecycle.TERMINATED for s in states):
            return Lifecycle.TERMINATED
        if self._terminating:
            return Lifecycle.TERMINATING
        return min(states)

    def stats(self) -> GraphStats:
        """Per-stage ``KernelStats`` and per-edge counts, with the graph's lifecycle."""
        stages = {s: self.handles[s].stats() for s in self.graph.stages}
        edges = tuple(
            EdgeStats(e.producer, e.consumer, e.message, e.capacity, e.depth, e.forwarded)
            for e in self._edges
        )
        return GraphStats(
            graph=self.name,
            backend=self.backend,
            strategy=self.strategy,
            lifecycle=self._combined([st.lifecycle for st in stages.values()]),
            stages=stages,
            edges=edges,
            spilled=sum(sp.total for sp in self._spills.values()),
            topics=self._flow.stats(),
        )

    # ----------------------------------------------------------------------------- terminating

    def terminate(self, timeout: Optional[float] = None, *, drain: bool = True) -> GraphStats:
        """Stop every stage; returns the final ``GraphStats``. Calling it again is harmless.

        Draining (the default), stages stop producers first: each once every producer feeding it
        has stopped and its edges are empty, so every message accepted by the entry goes through
        the graph; replies stay readable with ``receive``.

        Args:
            timeout: the longest wait in seconds for the whole graph (None: no limit).
            drain: False to stop every stage now (what each left is its ``stats().unprocessed``).

        Raises:
            KernelTimeoutError: a stage did not stop within ``timeout``; every stage was then
                stopped now.
            KernelFaultError: a stage had stopped on a fault (the others are terminated).
        """
        timeout = check_timeout(timeout, f"graph {self.name}.terminate")
        with self._term_lock:
            if self._terminated:
                return self.stats()
            with self._send_lock:
                self._terminating = True
            first_error: Optional[BaseException] = None
            if drain and self._fault is None:
                try:
                    self._drain(deadline_after(timeout))
                except (KernelTimeoutError, KernelFaultError) as exc:
                    first_error = exc
            self._stop.set()
            if self._forwarder.is_alive():
                self._forwarder.join()
            self._flow.close()
            for stage in self.graph.stages:
                try:
                    self.handles[stage].terminate(drain=False)
                except KernelFaultError as exc:
                    first_error = first_error or exc
            self._terminated = True
        if first_error is None and isinstance(self._fault, KernelFaultError):
            first_error = self._fault
        if first_error is not None:
            raise first_error
        return self.stats()

    def _drain(self, deadline: Optional[float]) -> None:
        """Terminate the stages producers first, each once its inputs are done."""
        for stage in self.graph.stages:
            producers = self.graph.producers(stage)
            backoff = Backoff()
            while not (
                all(p in self._finished for p in producers)
                and all(e.depth == 0 for e in self._in_edges[stage])
            ):
                self._raise_fault()
                if expired(deadline):
                    raise KernelTimeoutError(
                        f"graph {self.name}: stage {stage} still had input when the terminate "
                        "timeout expired; every stage was stopped now",
                    )
                if self._spill_exits():
                    backoff.reset()
                else:
                    backoff.wait(deadline)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.handles[stage].terminate(timeout=remaining)
            if not self._out_edges[stage]:
                self._finished.add(stage)

    def __enter__(self) -> "GraphHandle":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.terminate()
            return
        try:
            self.terminate(drain=False)
        except Exception:  # noqa: BLE001 - the caller's own exception is the one to see
            log.exception("graph %s: stopping after an exception failed", self.name)

    def __repr__(self) -> str:
        return f"<GraphHandle {self.name} on {self.backend}: {self.lifecycle.name}>"
