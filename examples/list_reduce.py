"""A reduction over a bridged ``List[f32, 64]``: sum, minimum, maximum and mean of each sample set.

``Samples`` carries up to 64 floats; only the ones present travel (MemoryPack: an int32 count, then the
elements), and the handler iterates over them with ``for x in msg.values``.
"""

import ringgen as rg
from ringgen.types import List, f32, i64, u32


@rg.message
class Samples:
    id: i64
    values: List[f32, 64]


@rg.message
class Summary:
    id: i64
    count: u32
    total: f32
    lowest: f32
    highest: f32
    mean: f32


@rg.ring_kernel
def list_reduce(s: Samples) -> Summary:
    n = len(s.values)
    total = f32(0.0)
    lowest = f32(0.0)
    highest = f32(0.0)
    if n > 0:
        lowest = s.values[0]
        highest = s.values[0]
    for x in s.values:
        total += x
        lowest = min(lowest, x)
        highest = max(highest, x)
    mean = f32(0.0)
    if n > 0:
        mean = total / f32(n)
    return Summary(id=s.id, count=u32(n), total=total, lowest=lowest, highest=highest, mean=mean)
