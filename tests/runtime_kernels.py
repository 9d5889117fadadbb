"""Small ring kernels for the runtime tests (handlers must live in a file: the compiler reads them)."""

import ringgen as rg
from ringgen.types import Array, List, Str, i32, i64, u64


@rg.message
class Seq:
    seq: i64
    value: i32


@rg.message
class Work:
    seq: i64
    iterations: i32


@rg.message
class Done:
    seq: i64
    total: i64


@rg.message
class Div:
    seq: i64
    a: i32
    b: i32
    index: i32
    values: Array[i32, 4]


@rg.message
class Quot:
    seq: i64
    q: i32
    picked: i32


@rg.state
class Tally:
    count: u64 = 0
    total: i64 = 0


@rg.state
class Last:
    last_seq: i64 = -1
    out_of_order: i64 = 0


@rg.ring_kernel(capacity=1024)
def echo(m: Seq) -> Seq:
    return Seq(seq=m.seq, value=m.value + 1)


@rg.ring_kernel(capacity=64)
def echo_small(m: Seq) -> Seq:
    return Seq(seq=m.seq, value=m.value)


@rg.ring_kernel(capacity=256)
def busy(w: Work) -> Done:
    total = i64(0)
    for i in range(w.iterations):
        total += i
    return Done(seq=w.seq, total=total)


@rg.ring_kernel
def divide(d: Div) -> Quot:
    return Quot(seq=d.seq, q=d.a // d.b, picked=d.values[d.index])


@rg.ring_kernel
def evens(m: Seq) -> Seq | None:
    if m.seq % 2 == 0:
        return Seq(seq=m.seq, value=m.value)
    return None


@rg.ring_kernel
def tally(m: Seq, st: Tally) -> None:
    rg.atomic_add(st.count, 1)
    rg.atomic_add(st.total, m.value)


@rg.ring_kernel(ordered=True)
def in_order(m: Seq, st: Last) -> Seq:
    if m.seq != st.last_seq + 1:
        st.out_of_order += 1
    st.last_seq = m.seq
    return Seq(seq=m.seq, value=i32(st.out_of_order))


@rg.message
class Named:
    id: i64
    name: Str[16]
    scores: List[i32, 8]


@rg.message
class Summary:
    id: i64
    name: Str[16]
    total: i32
    count: i32


@rg.ring_kernel
def summarize(n: Named) -> Summary:
    total = i32(0)
    for s in n.scores:
        total += s
    return Summary(id=n.id, name=n.name, total=total, count=i32(len(n.scores)))
