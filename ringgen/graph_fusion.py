"""Fusing a graph into one ring kernel: what the device strategies (``shared_memory``,
``atomic_queue``) run (docs/graphs.md, "Strategies").

A device strategy makes one kernel of a whole graph: ``fused_spec`` is its ``KernelSpec``, whose
input is the entry's message (tagged with a topic when the host publishes), whose output is every
exit's reply and every host subscription's copy in one tagged class (``FusedParts``), and whose
state holds every stateful stage's. Here too: what a device strategy can keep of a graph
(``check_device_keeps``, a ``BuildError`` naming the graph and the part it cannot keep), how many
messages each stage takes and gives per entry message (``stage_bounds``), the stamp fields of an
``rg.HLC`` graph, and the layout of the per-stage and per-edge counters (``counter_layout``).
The declaration of graphs is ``ringgen.graphs``.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

import attrs

from .causal import hlc_field
from .errors import BuildError
from .graphs import Edge, Graph
from .kernel import KernelSpec
from .layout import layout_of
from .protocol import N_REASONS
from .schema import message, spec_of
from .schema import state as state_class
from .types import ArrayType, MessageType, u8, u32, u64

__all__ = [
    "EXIT_PAYLOAD",
    "EXIT_TAG",
    "COUNTER_NAMES",
    "EDGE_COUNTERS",
    "FusedParts",
    "GraphCounters",
    "INPUT_TAG",
    "check_device_keeps",
    "counter_layout",
    "fused_name",
    "fused_parts",
    "fused_spec",
    "host_copy_bounds",
    "is_stamped",
    "made_by_fusing",
    "stage_bounds",
    "stamp_fields",
    "topic_outlet",
]


def fused_name(g: Graph) -> str:
    """The name of the one ring kernel a device strategy makes of ``g``: ``graph_<name>`` (an
    unnamed graph: ``graph_<stage>_<stage>...``), its entry point ``rg_graph_<name>_ring``."""
    return "graph_" + (g.name or "_".join(g.stages))


def stage_bounds(g: Graph) -> dict[str, tuple[int, int]]:
    """Per stage, ``(inputs, outputs)``: the most messages it takes and gives for one message sent
    into the entry (the entry takes 1; a stage takes what its producers give, summed over them; it
    gives its inputs times its Outbox bound, or times 1 with a return value, 0 without output)."""
    bounds: dict[str, tuple[int, int]] = {}
    # a message the host published (rg.HOST >> topic) is one call of its own, handed to each of
    # the topic's subscribers: counted on top of the entry's path (a bound, not the exact most)
    hosted = {
        c: sum(1 for t in g.topics if t.host_publishes and c in t.subscribers) for c in g.stages
    }
    for k in g.kernels:
        s = k.spec
        n_in = 1 if s.name == g.entry else sum(bounds[p][1] for p in g.producers(s.name))
        n_in += hosted[s.name]
        per = s.outbox_limit if s.uses_outbox else (1 if s.output is not None else 0)
        bounds[s.name] = (n_in, n_in * per)
    return bounds


def host_copy_bounds(g: Graph) -> dict[str, int]:
    """Per topic the host subscribes to (``topic >> rg.HOST``), the most copies one call of the
    fused kernel hands the host: its publishers' outputs (``stage_bounds``), plus one when the
    host publishes to it too."""
    bounds = stage_bounds(g)
    return {
        t.name: sum(bounds[p][1] for p in t.publishers) + (1 if t.host_publishes else 0)
        for t in g.topics
        if t.host_subscribes
    }


def stamp_fields(g: Graph) -> dict[str, tuple[Optional[str], Optional[str]]]:
    """Per stage, the ``rg.HLC`` field of its input class and of its output class (or None): where
    a device strategy reads and writes the stamps of ``g``'s messages (``ringgen.causal``)."""
    return {
        k.spec.name: (hlc_field(k.spec.input), hlc_field(k.spec.outbox or k.spec.output))
        for k in g.kernels
    }


def check_device_keeps(g: Graph, strategy: str = "shared_memory") -> None:
    """Raise unless device strategy ``strategy`` keeps what ``g``'s topics and orders promise
    (docs/graphs.md, "Topics under each strategy" and "Causal order").

    A device strategy carries a topic as fan-out edges, one from each publisher to each subscriber
    (``Graph.producers``/``consumers`` already list them): every subscriber gets every message,
    FIFO per publisher, with the back-pressure of ``Block``. ``shared_memory`` also keeps a drop
    policy (a kernel subscriber runs in its publisher's thread on every message, so its queue never
    fills and it never drops; the host's subscription drops on the host), the host subscribing
    (one more tagged outlet of the kernel's output queue) and publishing (a tagged slot of its
    input queue), causal order, and ``rg.HLC`` stamps (its kernel is then ordered:
    ``fused_spec``); ``atomic_queue`` keeps none of these. What a strategy cannot keep is refused.

    Raises:
        BuildError: naming the graph and the topic or stage: under ``shared_memory`` the host
            publishing or subscribing in a graph with ``rg.HLC`` stamps (the tagged slots carry
            no host clock), a stamped message behind an unstamped entry (the device has no
            physical clock: its stamps start from the entry's); under any other strategy a drop
            policy (a subscriber reads its publisher's edge ring: no queue of its own to drop
            from), the host publishing or subscribing (``rg.HOST``: the kernel's only host
            queues are the entry's and the exit's), several exits or several ``@rg.state``
            stages (its exit's blocks reply through one kernel's output protocol and state), a
            stage declared ``order="causal"`` or a message with an ``rg.HLC`` stamp (its stages
            run side by side on their own blocks).
    """
    for t in g.topics:
        where = {"file": t.file or g.file, "line": t.line if t.file else g.line}
        hosted = t.host_publishes or t.host_subscribes
        side = "publishes to" if t.host_publishes else "subscribes to"
        if strategy == "shared_memory":
            if hosted and is_stamped(g):
                stamped = next(
                    (k.spec, cls, f) for k in g.kernels for cls, f in _stamped_classes(k.spec)
                )
                raise BuildError(
                    f"graph {g.label}: the host {side} topic {t.name} (rg.HOST), and stage "
                    f"{stamped[0].name}'s message {stamped[1].__name__} has the rg.HLC stamp "
                    f"{stamped[2]}: the shared_memory strategy carries the host's topic messages "
                    "in tagged slots of the kernel's queues, which carry no host clock",
                    hint="launch it with strategy='host', or drop the rg.HLC field",
                    **where,
                )
            continue
        hint = "launch it with strategy='shared_memory' (CUDA, OpenCL) or strategy='host'"
        if t.policy.capacity is not None:
            raise BuildError(
                f"graph {g.label}: topic {t.name} has policy {t.policy.name}({t.policy.capacity}), "
                f"and the {strategy} strategy gives each subscriber its publisher's edge ring, "
                "with no per-subscriber queue to drop from",
                hint=hint + ", or give the topic the Block() policy",
                **where,
            )
        if hosted:
            raise BuildError(
                f"graph {g.label}: the host {side} topic {t.name} (rg.HOST), and the {strategy} "
                "strategy launches one kernel whose only host queues are its entry's input and "
                "its exit's output",
                hint=hint + ", or make a kernel the topic's publisher and subscriber",
                **where,
            )
    hint = "launch it with strategy='host'"
    where = {"file": g.file, "line": g.line}
    fields = stamp_fields(g)
    stamped = [(k.spec, cls, f) for k in g.kernels for cls, f in _stamped_classes(k.spec)]
    if strategy != "shared_memory":
        hint = "launch it with strategy='shared_memory' (CUDA, OpenCL) or strategy='host'"
        if len(g.exits) != 1:
            raise BuildError(
                f"graph {g.label}: the {strategy} strategy sends replies to the host from the "
                f"exit stage's blocks through one output queue, but the graph has {len(g.exits)} "
                f"exits ({', '.join(g.exits)})",
                hint=hint,
                **where,
            )
        stateful = [k.spec.name for k in g.kernels if k.spec.state is not None]
        if len(stateful) > 1:
            raise BuildError(
                f"graph {g.label}: the {strategy} strategy launches one kernel with one state "
                f"buffer, and stages {', '.join(stateful)} each have an @rg.state (their stages "
                "run on blocks of their own, which do not share a fused state)",
                hint=hint,
                **where,
            )
        causal = [s for s in g.stages if g.spec(s).order == "causal"]
        if causal:
            raise BuildError(
                f"graph {g.label}: stage(s) {', '.join(causal)} declare order='causal', and the "
                f"{strategy} strategy runs its stages side by side on their own blocks, so nothing "
                "orders what a stage takes from one producer against what it takes from another "
                "(it keeps FIFO per producer only)",
                hint=hint,
                **where,
            )
        if stamped:
            spec, cls, field = stamped[0]
            raise BuildError(
                f"graph {g.label}: stage {spec.name}'s message {cls.__name__} has the rg.HLC "
                f"stamp {field}, and the {strategy} strategy runs its stages side by side on their "
                "own blocks, so a stage's clock would be written by many threads at once (no "
                "device clock rule is kept there)",
                hint=hint + ", or drop the rg.HLC field",
                **where,
            )
        return
    if stamped and fields[g.entry][0] is None:
        spec, cls, field = stamped[0]
        raise BuildError(
            f"graph {g.label}: stage {spec.name}'s message {cls.__name__} has the rg.HLC stamp "
            f"{field}, but the entry {g.entry}'s input {g.spec(g.entry).input.__name__} has none: "
            "a device strategy has no physical clock, so its stamps start from the stamp the "
            "host writes into the entry's message",
            hint=hint + f", or give {g.spec(g.entry).input.__name__} an rg.HLC field",
            **where,
        )


def _stamped_classes(spec: KernelSpec) -> list[tuple[type, str]]:
    """The message classes of ``spec`` (input, then output) that have an ``rg.HLC`` field."""
    out = []
    for cls in (spec.input, spec.outbox or spec.output):
        field = hlc_field(cls)
        if field is not None:
            out.append((cls, field))
    return out


def is_stamped(g: Graph) -> bool:
    """True when a message of ``g`` carries an ``rg.HLC`` stamp (a device strategy then stamps
    every hop, one message at a time)."""
    return any(_stamped_classes(k.spec) for k in g.kernels)


#: The fields of the tagged reply a fused graph with several exits sends to the host
#: (``FusedParts.exit_class``): the exit's index in ``Graph.exits``, then the exit's message as
#: 64-bit words (every scalar is at most 8 bytes, so the payload is aligned for any message).
EXIT_TAG, EXIT_PAYLOAD = "exit_index", "payload"
#: The tag of the input a fused graph whose host publishes to a topic takes
#: (``FusedParts.input_class``): 0 for a message sent into the entry, ``i + 1`` for one the host
#: published to ``FusedParts.host_published[i]``; its payload (``EXIT_PAYLOAD``) is the message's
#: bytes as 64-bit words.
INPUT_TAG = "topic_index"


@attrs.frozen(eq=False)
class FusedParts:
    """What fusing ``g`` into one kernel adds besides its stages (``fused_parts``), shared by the
    fused source (``ringgen.codegen.graph_kernel``) and its host side
    (``ringgen.runtime.graph_device``).

    ``exit_class``: with several exits, the one message class the fused kernel outputs: the exit's
    index in ``g.exits`` (``EXIT_TAG``) and its reply's bytes (``EXIT_PAYLOAD``, ``payload_words``
    64-bit words, the largest exit message's size rounded up); None with one exit (the exit's own
    class goes out, untagged). ``state_class``: with several ``@rg.state`` stages, one state class
    holding each stage's fields in turn (``s<i>_<field>``, padded so that stage ``i``'s fields sit
    at ``state_at[stage]`` exactly as in its own struct: its handler gets a pointer there); None
    with at most one (that stage's class is the kernel's state). ``state_fields[stage]`` pairs
    each field of the stage's state with its field in ``state_class``.

    The host as a topic's subscriber or publisher (docs/graphs.md, "Topics under each strategy"):
    ``outlets`` are what the tag of ``exit_class`` names, ``g.exits`` then, for each topic in
    ``host_subscribed`` (``topic >> rg.HOST``), ``"topic:<name>"`` (the host's copies of every
    message published to it: an output slot tagged for the subscription); with a host
    subscription the output is tagged even with one exit. ``input_class``: when the host
    publishes to a topic (``host_published``, ``rg.HOST >> topic``), the kernel's input: the tag
    ``INPUT_TAG`` (0: the entry's message; ``i + 1``: a message for ``host_published[i]``) and
    ``input_words`` 64-bit words of payload (the largest of the entry's and those topics'
    messages); None otherwise (the entry's class is the input).
    """

    exit_class: Optional[type]
    payload_words: int
    state_class: Optional[type]
    state_at: dict[str, int]
    state_fields: dict[str, tuple[tuple[str, str], ...]]
    outlets: tuple[str, ...] = ()
    host_subscribed: tuple[str, ...] = ()
    input_class: Optional[type] = None
    input_words: int = 0
    host_published: tuple[str, ...] = ()


_PARTS: "weakref.WeakKeyDictionary[Graph, FusedParts]" = weakref.WeakKeyDictionary()
_PARTS_LOCK = threading.Lock()  # one set of classes per graph, also when two threads launch it


def _annotation(t: Any) -> Any:
    """A resolved field type written back as the annotation that declares it."""
    if isinstance(t, MessageType):
        return t.cls
    if isinstance(t, ArrayType):
        return ArrayType(_annotation(t.elem), t.length)
    return t


def _declare_class(name: str, fields: dict[str, tuple[Any, Any]], kind: Any) -> type:
    """A ``@rg.message``/``@rg.state`` class named ``name`` of ``fields`` (name -> (annotation,
    default)), in that order (codecs build objects positionally, so every field has a default)."""
    ns: dict[str, Any] = {"__annotations__": {}, "__module__": __name__, "__qualname__": name}
    for fname, (ann, default) in fields.items():
        ns["__annotations__"][fname] = ann
        ns[fname] = attrs.field(default=default)
    return kind(type(name, (), ns))


def _zero_default(g: Graph, stage: str, field: Any) -> Any:
    """``field``'s default, or the zero a state field without one starts from (as device memory
    does), so that every field of the fused state has a default.

    Raises:
        BuildError: a nested message field without a default (its zero is no scalar).
    """
    if field.default is not attrs.NOTHING:
        return field.default
    t = field.type
    if isinstance(t, ArrayType):
        t = t.elem
    if isinstance(t, MessageType):
        raise BuildError(
            f"graph {g.label}: stage {stage}'s state field {field.name} holds a message "
            f"{t.cls.__name__} without a default, and the fused state of several stateful stages "
            "gives every field of each stage's state its default",
            hint=f"give {field.name} a default, or launch the graph with strategy='host'",
            file=g.file,
            line=g.line,
        )
    return False if t.name == "bool_" else 0


def topic_outlet(topic: str) -> str:
    """The outlet of a fused graph's output that carries the host's copies of ``topic``."""
    return f"topic:{topic}"


def _direct_words(g: Graph, cls: type, what: str, queue: str) -> int:
    """The 64-bit words of ``cls`` in a tagged slot of the fused kernel's ``queue``.

    Raises:
        BuildError: ``cls`` is bridged (a tagged slot has a fixed size); ``what`` names its role.
    """
    lay = layout_of(cls)
    if lay.is_bridged:
        raise BuildError(
            f"graph {g.label}: {what} {cls.__name__}, which is bridged (it has Str or List "
            f"fields), and the fused kernel carries it in a fixed-size tagged slot of its {queue}",
            hint="launch it with strategy='host', or give it a direct message",
            file=g.file,
            line=g.line,
        )
    return max(1, -(-lay.size // 8))


def _input_class(g: Graph) -> tuple[Optional[type], int, tuple[str, ...]]:
    hosted = tuple(t.name for t in g.topics if t.host_publishes)
    if not hosted:
        return None, 0, ()
    entry = g.spec(g.entry).input
    words = _direct_words(g, entry, f"the entry {g.entry} takes", "input queue")
    for t in g.topics:
        if t.host_publishes:
            what = f"the host publishes to topic {t.name}, which carries"
            words = max(words, _direct_words(g, t.message, what, "input queue"))
    cls = _declare_class(
        f"{fused_name(g)}_in",
        {INPUT_TAG: (u32, 0), EXIT_PAYLOAD: (ArrayType(u64, words), 0)},
        message,
    )
    return cls, words, hosted


def _exit_class(g: Graph) -> tuple[Optional[type], int]:
    where = {"file": g.file, "line": g.line}
    subscribed = [t for t in g.topics if t.host_subscribes]
    if len(g.exits) == 1 and not subscribed:
        return None, 0
    size = 0
    for t in subscribed:
        what = f"the host subscribes to topic {t.name}, which carries"
        size = max(size, 8 * _direct_words(g, t.message, what, "output queue"))
    for x in g.exits:
        spec = g.spec(x)
        cls = spec.outbox or spec.output
        if cls is None:
            continue
        lay = layout_of(cls)
        if lay.is_bridged:
            raise BuildError(
                f"graph {g.label}: exit {x} replies {cls.__name__}, which is bridged (it has Str "
                "or List fields), and a fused graph with several exits (or a host subscription) "
                "sends every exit's replies through one queue of fixed-size slots tagged with "
                "their exit",
                hint="launch it with strategy='host', or give the exit a direct message",
                **where,
            )
        if hlc_field(cls) is not None:
            raise BuildError(
                f"graph {g.label}: exit {x}'s reply {cls.__name__} carries the rg.HLC stamp "
                f"{hlc_field(cls)}, and the host side of a fused graph stamps the replies of one "
                "exit only",
                hint="launch it with strategy='host', or keep the stamps off the exits' replies",
                **where,
            )
        size = max(size, lay.size)
    words = max(1, -(-size // 8))
    cls = _declare_class(
        f"{fused_name(g)}_exits",
        {EXIT_TAG: (u32, 0), EXIT_PAYLOAD: (ArrayType(u64, words), 0)},
        message,
    )
    return cls, words


def _state_class(g: Graph) -> tuple[Optional[type], dict, dict]:
    stateful = [k.spec for k in g.kernels if k.spec.state is not None]
    if len(stateful) <= 1:
        return None, {s.name: 0 for s in stateful}, {}
    fields: dict[str, tuple[Any, Any]] = {}
    at: dict[str, int] = {}
    pairs: dict[str, tuple[tuple[str, str], ...]] = {}
    offset = 0
    for i, spec in enumerate(stateful):
        lay = layout_of(spec.state)
        pad = -offset % lay.align
        if pad:
            fields[f"s{i}_pad"] = (ArrayType(u8, pad), 0)
        offset += pad
        at[spec.name] = offset
        for f in spec_of(spec.state).fields:
            fields[f"s{i}_{f.name}"] = (_annotation(f.type), _zero_default(g, spec.name, f))
        end = max(fl.offset + fl.size for fl in lay.fields)
        if lay.size > end:  # the struct's tail padding, so the next stage's offset is the C one
            fields[f"s{i}_tail"] = (ArrayType(u8, lay.size - end), 0)
        offset += lay.size
        pairs[spec.name] = tuple((f.name, f"s{i}_{f.name}") for f in spec_of(spec.state).fields)
    cls = _declare_class(f"{fused_name(g)}_state", fields, state_class)
    placed = {f.name: f.offset for f in layout_of(cls).fields}
    for spec in stateful:
        own = {f.name: f.offset for f in layout_of(spec.state).fields}
        moved = [s for s, f in pairs[spec.name] if placed[f] - at[spec.name] != own[s]]
        if moved:
            raise BuildError(
                f"graph {g.label}: stage {spec.name}'s state {spec.state.__name__} does not keep "
                f"its layout inside the fused state (fields {', '.join(moved)})",
                hint="launch it with strategy='host'",
                file=g.file,
                line=g.line,
            )
    return cls, at, pairs


def made_by_fusing(cls: type) -> bool:
    """True when ``cls`` is a class ``fused_parts`` declared (a tagged exit reply or a fused
    state): it is in no generated package, so its codec comes from its layout."""
    return cls.__module__ == __name__


def fused_parts(g: Graph) -> FusedParts:
    """The tagged exit class and the fused state class of ``g`` (``FusedParts``), made once per
    graph object, so that every caller (emitter, loader, host handle) sees the same classes.

    Raises:
        BuildError: with several exits, an exit's reply is bridged or carries an ``rg.HLC`` stamp
            (naming the graph, the exit and why).
    """
    with _PARTS_LOCK:
        parts = _PARTS.get(g)
        if parts is None:
            exit_class, words = _exit_class(g)
            state_cls, at, pairs = _state_class(g)
            in_cls, in_words, published = _input_class(g)
            subscribed = tuple(t.name for t in g.topics if t.host_subscribes)
            parts = FusedParts(
                exit_class,
                words,
                state_cls,
                at,
                pairs,
                outlets=g.exits + tuple(topic_outlet(t) for t in subscribed),
                host_subscribed=subscribed,
                input_class=in_cls,
                input_words=in_words,
                host_published=published,
            )
            _PARTS[g] = parts
        return parts


def fused_spec(g: Graph) -> KernelSpec:
    """``g`` as one ring kernel: the composition of its stages' handlers, what a device strategy
    launches (``shared_memory`` runs a message's whole path in one thread, ``atomic_queue`` each
    stage on its own blocks; docs/graphs.md, "Strategies").

    Its input is the entry's; its output the exit's (with several exits, ``FusedParts.exit_class``:
    each reply tagged with its exit), through an Outbox of the exits' bound per entry message when
    that exceeds 1 (an Outbox or a fan-in on the way, or several exits), else a return value; its
    state the one stateful stage's (with several, ``FusedParts.state_class``: each stage's state
    in turn); ordered (every message goes through the whole graph in order, one at a time) when
    any stage is ordered or declared ``order="causal"``, or a message carries an ``rg.HLC`` stamp
    (each stage's clock is then one word that one thread at a time advances: docs/graphs.md,
    "Causal order"). The handler function and source are the entry's, so errors point at a stage
    the user wrote.

    A topic is its fan-out edges, one from each publisher to each subscriber; what a device
    strategy cannot keep of topics and orders is refused first (``check_device_keeps``).

    Raises:
        BuildError: ``check_device_keeps`` or ``fused_parts`` refuses the graph.
    """
    check_device_keeps(g)
    parts = fused_parts(g)
    entry = g.spec(g.entry)
    bounds = stage_bounds(g)
    if parts.exit_class is not None:
        out_cls: Optional[type] = parts.exit_class
        n_out = sum(bounds[x][1] for x in g.exits) + sum(host_copy_bounds(g).values())
    else:
        exit_spec = g.spec(g.exits[0])
        out_cls = exit_spec.outbox or exit_spec.output
        n_out = bounds[exit_spec.name][1]
    outbox = out_cls if out_cls is not None and n_out > 1 else None
    if parts.state_class is not None:
        state = parts.state_class
    else:
        state = next((k.spec.state for k in g.kernels if k.spec.state is not None), None)
    params = {"input": entry.param_names.get("input", "msg")}
    if state is not None:
        params["state"] = "state"
    if outbox is not None:
        params["outbox"] = "out"
    return KernelSpec(
        name=fused_name(g),
        func=entry.func,
        input=parts.input_class or entry.input,
        output=out_cls,
        may_skip=(out_cls is not None and n_out != 1)
        or any(k.spec.may_skip for k in g.kernels)
        or bool(parts.host_published),
        state=state,
        outbox=outbox,
        param_names=params,
        capacity=entry.capacity,
        ordered=any(k.spec.ordered or k.spec.order == "causal" for k in g.kernels) or is_stamped(g),
        source=entry.source,
        pos=entry.pos,
        outbox_limit=n_out if outbox is not None else 1,
    )


#: A stage's counters in a device strategy's counter array, in order; ``rejected`` is followed by
#: one word per ``Reason`` (``protocol.N_REASONS`` in all, ``rejected[r]`` at ``rejected + r``).
COUNTER_NAMES = ("processed", "emitted", "rejected")
#: An edge's counters, in order: messages its consumer took off it, times its producer waited for
#: room in it. What its producer put on it is the producer's ``emitted`` (every output of a stage
#: goes on each of its edges), so an edge's depth is that minus ``taken``.
EDGE_COUNTERS = ("taken", "stalls")


@attrs.frozen
class GraphCounters:
    """Where a device strategy counts, per stage and per edge, in one array of 64-bit words that the
    host reads while the kernel runs (docs/graphs.md, "Stats"). Shared by the emitters
    (``ringgen.codegen``) and the runtime, which must agree on it.

    Stage ``i`` (``stages[i]``) owns ``STAGE_WORDS`` words from ``i * STAGE_WORDS``: ``processed``
    (handler calls, faulted ones included), ``emitted`` (outputs it handed on), then ``rejected``
    by ``Reason``. Edge ``j`` (``edges[j]``, ``(producer, consumer)``) owns ``EDGE_WORDS`` words
    from ``len(stages) * STAGE_WORDS + j * EDGE_WORDS``: ``EDGE_COUNTERS``. Then one word per stage
    of ``clocks``: that stage's hybrid logical clock (``shared_memory`` with ``rg.HLC`` stamps:
    the stages whose output is stamped), which the fused kernel keeps there because the host
    already allocates, zeroes and keeps this array for the kernel's lifetime on every backend
    (relaunches included). Then one word per topic of ``topics`` (the topics the host publishes
    to, ``shared_memory``): the host's messages to it that the kernel handed to its subscribers.
    """

    stages: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    clocks: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()

    STAGE_WORDS = 2 + N_REASONS
    EDGE_WORDS = len(EDGE_COUNTERS)

    def stage_at(self, stage: str) -> int:
        """The first word of ``stage``'s counters."""
        return self.stages.index(stage) * self.STAGE_WORDS

    def edge_at(self, producer: str, consumer: str) -> int:
        """The first word of the edge ``producer -> consumer``'s counters."""
        j = self.edges.index((producer, consumer))
        return len(self.stages) * self.STAGE_WORDS + j * self.EDGE_WORDS

    def clock_at(self, stage: str) -> int:
        """The word of ``stage``'s clock."""
        return (
            len(self.stages) * self.STAGE_WORDS
            + len(self.edges) * self.EDGE_WORDS
            + self.clocks.index(stage)
        )

    def topic_at(self, topic: str) -> int:
        """The word counting the messages the host published to ``topic`` that the kernel
        handed to its subscribers."""
        return (
            len(self.stages) * self.STAGE_WORDS
            + len(self.edges) * self.EDGE_WORDS
            + len(self.clocks)
            + self.topics.index(topic)
        )

    @property
    def total(self) -> int:
        """Words in the array."""
        return (
            len(self.stages) * self.STAGE_WORDS
            + len(self.edges) * self.EDGE_WORDS
            + len(self.clocks)
            + len(self.topics)
        )


def counter_layout(g: Graph) -> GraphCounters:
    """The counter array of ``g`` under a device strategy: its stages producers first, its edges
    in ``g.all_edges`` order (a topic's fan-out edges after the direct ones), then the clocks of
    the stages whose output carries an ``rg.HLC`` stamp."""
    fields = stamp_fields(g)
    return GraphCounters(
        stages=tuple(g.stages),
        edges=tuple((e.producer, e.consumer) for e in g.all_edges),
        clocks=tuple(s for s in g.stages if fields[s][1] is not None),
        topics=tuple(t.name for t in g.topics if t.host_publishes),
    )
