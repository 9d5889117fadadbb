"""Recorded message histories and a causal-order checker for them (docs/graphs.md, "Ordering
guarantees").

A ``History`` is, per node (a stage, or ``"host"``), the sequence of its events in that node's order:

- ``send(node, stamp)``: the node emits the message ``(node, stamp)`` (a stamp names a message:
  each node's stamps are unique);
- ``recv(node, sender, stamp)``: the node receives message ``(sender, stamp)``; what it sends
  afterwards may depend on it;
- ``deliver(node, sender, stamp)``: the order in which a consumer was handed its messages, when
  that differs from where its receives were recorded (a causal merge); without any, the receives'
  order is the delivery order.

Happens-before is the transitive closure of each node's order and send -> receive of each message.
``check_history`` replays the history with vector clocks (as Porcupine replays a history against a
model, but causal delivery needs no search: vector clocks decide it in one pass) and returns every
violation it finds:

- *integrity*: a receive of a message never sent, a message received twice by one node, a
  history whose receives cannot be ordered after their sends (a cycle);
- *clock condition*: a node's stamp not above every stamp it sent or received before (so that
  happens-before implies stamp order);
- *causal delivery* (for the nodes named in ``causal``): message ``m2`` delivered before ``m1``
  although ``send(m1)`` happens before ``send(m2)``.

``record(handle)`` makes a running graph's host strategy record into a ``History``.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, Optional

import attrs

__all__ = ["Event", "History", "assert_causal", "check_history", "record"]


@attrs.frozen
class Event:
    """One event: ``kind`` is ``send``, ``recv`` or ``deliver``; ``sender`` the message's sender
    (the node itself for a send)."""

    kind: str
    node: str
    sender: str
    stamp: int


class History:
    """Events per node, each node's in its order (append them as they happen)."""

    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = collections.defaultdict(list)
        self.deliveries: dict[str, list[Event]] = collections.defaultdict(list)

    def send(self, node: str, stamp: int) -> None:
        self.events[node].append(Event("send", node, node, int(stamp)))

    def recv(self, node: str, sender: str, stamp: int) -> None:
        self.events[node].append(Event("recv", node, sender, int(stamp)))

    def deliver(self, node: str, sender: str, stamp: int) -> None:
        self.deliveries[node].append(Event("deliver", node, sender, int(stamp)))

    def __len__(self) -> int:
        return sum(len(v) for v in self.events.values())


def _vector_clocks(h: History, out: list[str]) -> dict[tuple[str, int], dict[str, int]]:
    """The vector clock of every send, replaying nodes so that each receive follows its send."""
    sends: dict[tuple[str, int], dict[str, int]] = {}
    pos = {n: 0 for n in h.events}
    vc = {n: {} for n in h.events}
    sent_by = collections.defaultdict(set)
    for n, evs in h.events.items():
        for e in evs:
            if e.kind == "send":
                if e.stamp in sent_by[n]:
                    out.append(f"integrity: {n} sent stamp {e.stamp} twice")
                sent_by[n].add(e.stamp)
    progress = True
    while progress:
        progress = False
        for n, evs in h.events.items():
            clock = vc[n]
            while pos[n] < len(evs):
                e = evs[pos[n]]
                if e.kind == "recv":
                    key = (e.sender, e.stamp)
                    if key not in sends:
                        if e.stamp not in sent_by.get(e.sender, ()):
                            out.append(f"integrity: {n} received {key}, which was never sent")
                        else:
                            break  # its send is not replayed yet: come back to this node
                    else:
                        for k, v in sends[key].items():
                            if clock.get(k, 0) < v:
                                clock[k] = v
                clock[n] = clock.get(n, 0) + 1
                if e.kind == "send":
                    sends[(n, e.stamp)] = dict(clock)
                pos[n] += 1
                progress = True
    for n, evs in h.events.items():
        if pos[n] < len(evs):
            e = evs[pos[n]]
            out.append(
                f"integrity: {n} receives ({e.sender}, {e.stamp}) before it can have been sent "
                "(the history has a cycle)"
            )
    return sends


def _check_clocks(h: History, out: list[str]) -> None:
    for n, evs in h.events.items():
        last_sent: Optional[int] = None
        seen = -1
        for e in evs:
            if e.kind == "recv":
                seen = max(seen, e.stamp)
            else:
                if e.stamp <= seen or (last_sent is not None and e.stamp <= last_sent):
                    out.append(
                        f"clock: {n} sent stamp {e.stamp}, not above {max(seen, last_sent or -1)} "
                        "that it sent or received before"
                    )
                last_sent = e.stamp


def _check_delivery(
    h: History, node: str, sends: dict[tuple[str, int], dict[str, int]], out: list[str]
) -> None:
    order = h.deliveries.get(node) or [e for e in h.events.get(node, []) if e.kind == "recv"]
    seen: set = set()
    # per sender: the local send counters of the messages delivered here, and a pointer to the
    # first not yet delivered (every earlier one must be delivered before anything after it)
    counters: dict[str, list[int]] = collections.defaultdict(list)
    for e in order:
        key = (e.sender, e.stamp)
        if key in seen:
            out.append(f"integrity: {node} was delivered {key} twice")
            continue
        seen.add(key)
        if key in sends:
            counters[e.sender].append(sends[key][e.sender])
    pending = {s: sorted(c) for s, c in counters.items()}
    done = {s: [False] * len(c) for s, c in pending.items()}
    first = dict.fromkeys(pending, 0)
    index = {s: {c: i for i, c in enumerate(cs)} for s, cs in pending.items()}
    seen.clear()
    for e in order:
        key = (e.sender, e.stamp)
        if key in seen or key not in sends:
            continue
        seen.add(key)
        vc = sends[key]
        for s in pending:
            i = first[s]
            if (
                i < len(pending[s])
                and pending[s][i] <= vc.get(s, 0)
                and (s, i)
                != (
                    e.sender,
                    index[e.sender][vc[e.sender]],
                )
            ):
                out.append(
                    f"causal: {node} was delivered ({e.sender}, {e.stamp}) before an earlier "
                    f"message of {s} (its send number {pending[s][i]}) that happens before it"
                )
                break
        s, i = e.sender, index[e.sender][vc[e.sender]]
        done[s][i] = True
        while first[s] < len(done[s]) and done[s][first[s]]:
            first[s] += 1


def check_history(h: History, causal: Iterable[str] = ()) -> list[str]:
    """Every violation in ``h`` (integrity, clock condition, and causal delivery at the nodes in
    ``causal``), as sentences; an empty list means the history is causally consistent."""
    out: list[str] = []
    sends = _vector_clocks(h, out)
    _check_clocks(h, out)
    for node in causal:
        _check_delivery(h, node, sends, out)
    return out


def assert_causal(h: History, causal: Iterable[str] = ()) -> None:
    """``check_history`` as an assertion: raises ``AssertionError`` listing the first violations."""
    problems = check_history(h, causal)
    if problems:
        more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise AssertionError("history violates causal order:\n" + "\n".join(problems[:10]) + more)


def record(handle: Any) -> History:
    """Make a running graph (host strategy) record its sends, receives and causal deliveries.

    Every stamped hop from now on is appended to the returned ``History``: the host's sends and
    publishes, each stage's replies as the forwarder takes them, the receive rule at each consumer,
    and each causal merge's deliveries. Recording costs a Python call per message: for tests.
    """
    h = History()
    handle._flow.history = h
    return h
