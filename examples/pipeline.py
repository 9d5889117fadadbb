"""A graph of three kernels: readings are scaled, numbered in arrival order, then filtered.

``rg.pipeline`` checks at declaration that each stage's output type is the next stage's input type;
``ringgen build`` records the graph in the manifest and ``ringgen inspect`` shows its stages and
edges. ``rg.launch(readings, backend=...)`` runs it (docs/graphs.md).
"""

from typing import Optional

import ringgen as rg
from ringgen.types import f32, i32, i64


@rg.message
class Sample:
    id: i64
    raw: i32


@rg.message
class Scaled:
    id: i64
    value: f32


@rg.message
class Numbered:
    id: i64
    value: f32
    seq: i64


@rg.state
class Arrivals:
    count: i64


@rg.ring_kernel
def scale(s: Sample) -> Scaled:
    return Scaled(id=s.id, value=f32(s.raw) * 0.25)


@rg.ring_kernel(ordered=True)
def arrival(s: Scaled, st: Arrivals) -> Numbered:
    st.count = st.count + 1
    return Numbered(id=s.id, value=s.value, seq=st.count)


@rg.ring_kernel
def over_limit(n: Numbered) -> Optional[Numbered]:
    if n.value > 100.0:
        return n
    return None


readings = rg.pipeline(scale, arrival, over_limit)
