"""Kernels the device-strategy topic tests compose: an unstamped integer message (the fan-out
measured here carries no ``rg.HLC`` stamp, which would make the fused kernel ordered), a publisher, sixteen subscribers that each leave their mark, and a final
stage the subscribers fan in at (a device strategy fuses a graph with one exit)."""

from typing import Optional

import ringgen as rg
from ringgen.types import i32, i64


@rg.message
class Score:
    id: i64
    x: i32
    src: i32


@rg.ring_kernel
def publish(s: Score) -> Score:
    return Score(id=s.id, x=s.x % 1000 + 1, src=0)


@rg.ring_kernel
def gather(s: Score) -> Score:
    return Score(id=s.id, x=s.x - 5, src=s.src)


@rg.ring_kernel(ordered=True)
def gather_in_order(s: Score) -> Score:
    return Score(id=s.id, x=s.x - 5, src=s.src)


def _subscriber(k: int):
    def handle(s: Score) -> Score:
        return Score(id=s.id, x=s.x * 3 + k, src=k + 1)

    return handle


#: sixteen subscribers, each its own kernel (src = its number + 1, so the final stage's replies say
#: which subscriber each came through), bound to module variables so that the build collects them
SUBSCRIBERS = []
for _i in range(16):
    globals()[f"dsub{_i}"] = rg.ring_kernel(name=f"dsub{_i}")(_subscriber(_i))
    SUBSCRIBERS.append(globals()[f"dsub{_i}"])


def fan(n_subs: int, last=gather, **topic_options):
    """``publish`` >> topic ``scores`` >> ``n_subs`` subscribers >> ``last`` (named ``dfan<n>``)."""
    scores = rg.topic("scores", Score, **topic_options)
    subs = SUBSCRIBERS[:n_subs]
    return rg.graph(
        publish >> scores, scores >> subs, *[s >> last for s in subs], name=f"dfan{n_subs}"
    )


# ---- the fan-out bench's "kept on the device" series (bench/topics.py): every subscriber runs on
# every message the topic carries, and keeps for the host only its share of them, so the host takes
# one reply per message whatever the number of subscribers (the publisher passes the count in src).


@rg.ring_kernel
def share_publish(s: Score) -> Score:
    return Score(id=s.id, x=s.x % 1000 + 1, src=s.src)


def _sharing_subscriber(k: int):
    def handle(s: Score) -> Optional[Score]:
        if s.id % i64(s.src) == i64(k):
            return Score(id=s.id, x=s.x * 3 + k, src=k + 1)
        return None

    return handle


#: sixteen subscribers; ``share<k>`` of ``n`` keeps the messages whose id is k modulo n
SHARING = []
for _i in range(16):
    globals()[f"share{_i}"] = rg.ring_kernel(name=f"share{_i}")(_sharing_subscriber(_i))
    SHARING.append(globals()[f"share{_i}"])


def share_fan(n_subs: int):
    """``share_publish`` >> topic ``shared`` >> ``n_subs`` sharing subscribers >> ``gather``
    (named ``dshare<n>``); send messages with ``src = n_subs``."""
    shared = rg.topic("shared", Score)
    subs = SHARING[:n_subs]
    return rg.graph(
        share_publish >> shared,
        shared >> subs,
        *[s >> gather for s in subs],
        name=f"dshare{n_subs}",
    )


# ---- the host as a topic's subscriber and publisher under shared_memory
# (tests/test_topics_device_host.py)


def watched(n_subs: int, last=gather, **topic_options):
    """``fan(n_subs)`` with the host subscribed to ``scores`` too (named ``dwatch<n>``)."""
    scores = rg.topic("scores", Score, **topic_options)
    subs = SUBSCRIBERS[:n_subs]
    return rg.graph(
        publish >> scores,
        scores >> subs,
        scores >> rg.HOST,
        *[s >> last for s in subs],
        name=f"dwatch{n_subs}",
    )


def hosted(n_subs: int, last=gather, kernel_publishes: bool = True, host_subscribes=False):
    """The host publishes to ``scores`` (``rg.HOST >> scores``) beside ``publish`` (or alone:
    ``publish`` then feeds ``last`` directly), ``n_subs`` subscribers fan in at ``last``; the host
    subscribes too when asked (named ``dhost<n>`` / ``dhostonly<n>``, ``w`` when watched)."""
    scores = rg.topic("scores", Score)
    subs = SUBSCRIBERS[:n_subs]
    parts = [rg.HOST >> scores, scores >> subs, *[s >> last for s in subs]]
    parts.append(publish >> scores if kernel_publishes else publish >> last)
    if host_subscribes:
        parts.append(scores >> rg.HOST)
    name = ("dhost" if kernel_publishes else "dhostonly") + str(n_subs)
    return rg.graph(*parts, name=name + ("w" if host_subscribes else ""))
