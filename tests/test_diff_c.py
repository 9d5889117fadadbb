"""Differential tests: the generated plain-C target (gcc, ctypes) against the reference backend.

Every example, and hypothesis-generated arithmetic handlers, run over random messages through both;
integers must agree exactly. Floats: the C target is built in *strict* mode (``-O2 -std=c99
-ffp-contract=off``: no FMA contraction, no fast-math), where + - * / and sqrt are correctly rounded
on both sides, so floats must agree bit for bit too. Other math functions (sin, exp, ...) come from
glibc in C and from numpy in the reference; their results may differ by a few ULP, so handlers that
use them are compared within ``MATH_ULPS`` (numpy's float32 SIMD kernels are accurate to < 4 ULP).
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ringgen.build import collect
from ringgen.reference.records import HandlerFault, new_state
from ringgen.reference.interpreter import reference_handler
from ringgen.layout import layout_of
from ringgen.protocol import Status
from ringgen.schema import spec_of
from ringgen.testing.compare import ulp_distance
from ringgen.testing.native import build_c as _build_c
from ringgen.testing.native import run_c, run_reference
from ringgen.types import ArrayType, ListType, MessageType, ScalarType, StrType

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

EXAMPLES = [
    "vector_add",
    "threshold_filter",
    "counters",
    "bank_account",
    "array_math",
    "device_helper",
]
MATH_ULPS = 4
#: Bound for the fast build (FMA contraction) on handlers without cancellation-prone sums.
FAST_ULPS = 4
ROOT = Path(__file__).resolve().parent.parent


def example_unit(name: str):
    """The BuildUnit of ``examples/<name>.py`` (importing it as ``examples.<name>``)."""
    return collect(str(ROOT / "examples" / f"{name}.py"))


# ---------------------------------------------------------------- the harness (ringgen.testing.native)


def build_c(unit, workdir: Path, strict: bool = True, werror: bool = True):
    """``ringgen.testing.native.build_c``, with gcc's complaints as the assertion message."""
    from ringgen.errors import ToolchainError

    try:
        return _build_c(unit, workdir, strict=strict, werror=werror)
    except ToolchainError as exc:
        raise AssertionError(exc.message) from None


def assert_same_value(c_val, ref_val, dtype: np.dtype, path: str, ulps: int) -> None:
    """Compare two values of ``dtype`` field by field: integers exactly, floats within ``ulps``."""
    if dtype.names in (("len", "data"), ("len", "items")):  # a Str/List view: bytes past len are
        n = int(c_val["len"])  # not part of the value
        assert n == int(ref_val["len"]), f"{path}.len: C {n} vs reference {int(ref_val['len'])}"
        key = dtype.names[1]
        sub = dtype.fields[key][0]
        base = sub.subdtype[0] if sub.subdtype is not None else sub
        for k in range(n):
            assert_same_value(c_val[key][k], ref_val[key][k], base, f"{path}.{key}[{k}]", ulps)
        return
    if dtype.names:
        for name in dtype.names:
            assert_same_value(
                c_val[name], ref_val[name], dtype.fields[name][0], f"{path}.{name}", ulps
            )
        return
    base = dtype.base if dtype.subdtype is None else dtype.subdtype[0]
    if base.names:
        for i in range(len(c_val)):
            assert_same_value(c_val[i], ref_val[i], base, f"{path}[{i}]", ulps)
        return
    if base.kind == "f":
        d = ulp_distance(np.asarray(c_val, dtype=base), np.asarray(ref_val, dtype=base))
        assert int(np.max(d, initial=0)) <= ulps, f"{path}: C {c_val!r} vs reference {ref_val!r}"
    else:
        assert np.array_equal(
            np.asarray(c_val), np.asarray(ref_val)
        ), f"{path}: C {c_val!r} vs reference {ref_val!r}"


def compare_runs(spec, inputs, c_run, ref_run, ulps: int = 0) -> None:
    (c_out, c_status), (r_out, r_status) = c_run, ref_run
    for i in range(len(inputs)):
        assert c_status[i] == r_status[i], (
            f"message {i} {inputs[i]!r}: C status {c_status[i]}, " f"reference {r_status[i]}"
        )
        assert len(c_out[i]) == len(r_out[i]), f"message {i}: output counts differ"
        dtype = layout_of(spec.output).dtype
        for j, (c_val, r_val) in enumerate(zip(c_out[i], r_out[i])):
            assert_same_value(c_val, r_val, dtype, f"message {i} output {j}", ulps)


# ---------------------------------------------------------------- random messages


def _fill(arr: np.ndarray, t, rng: np.random.Generator) -> None:
    """Fill ``arr`` (any shape, elements of type ``t``) with random valid values."""
    if isinstance(t, ScalarType):
        shape = arr.shape
        if t.kind == "bool":
            arr[...] = rng.integers(0, 2, size=shape).astype(bool)
        elif t.is_float:
            vals = rng.standard_normal(size=shape) * rng.choice([1.0, 100.0, 1e6], size=shape)
            special = rng.random(size=shape) < 0.05
            vals = np.where(special, rng.choice([0.0, -0.0, 1.0, -1.0, 1e30], size=shape), vals)
            arr[...] = vals.astype(t.np_type)
        else:
            info = np.iinfo(t.np_type)
            small = rng.integers(-20 if t.is_signed else 0, 21, size=shape)
            big = rng.integers(info.min, info.max, size=shape, dtype=t.np_type, endpoint=True)
            arr[...] = np.where(rng.random(size=shape) < 0.5, small, big).astype(t.np_type)
    elif isinstance(t, ArrayType):
        _fill(arr, t.elem, rng)
    elif isinstance(t, MessageType):
        for f in spec_of(t.cls).fields:
            _fill(arr[f.name], f.type, rng)
    elif isinstance(t, StrType):
        flat = arr.reshape(-1)
        for k in range(flat.shape[0]):
            n = int(rng.integers(0, t.max_bytes + 1))
            data = rng.integers(97, 100, size=n).astype(np.uint8)  # 'a'..'c': collisions likely
            flat[k]["len"] = n
            flat[k]["data"][:n] = data
    elif isinstance(t, ListType):
        flat = arr.reshape(-1)
        for k in range(flat.shape[0]):
            n = int(rng.integers(0, t.max_len + 1))
            flat[k]["len"] = n
            _fill(flat[k : k + 1]["items"][:, :n], t.elem, rng)


def random_messages(cls: type, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.zeros(n, dtype=layout_of(cls).dtype)
    for f in spec_of(cls).fields:
        _fill(arr[f.name], f.type, rng)
    return arr


def differential(
    unit,
    tmp_path: Path,
    n: int = 300,
    seed: int = 0,
    ulps: int = 0,
    werror: bool = True,
    strict: bool = True,
) -> None:
    """Run every kernel of ``unit`` through C and the reference and compare, state included."""
    lib = build_c(unit, tmp_path, werror=werror, strict=strict)
    for spec in unit.kernels:
        inputs = random_messages(spec.input, n, seed)
        c_state = new_state(spec.state) if spec.state is not None else None
        r_state = new_state(spec.state) if spec.state is not None else None
        c_run = run_c(lib, spec, inputs, c_state)
        r_run = run_reference(spec, inputs, r_state)
        compare_runs(spec, inputs, c_run, r_run, ulps)
        if c_state is not None:
            assert_same_value(
                c_state.array[0], r_state.array[0], c_state.array.dtype, "state", ulps
            )


# ---------------------------------------------------------------- the examples


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_matches_reference(example, tmp_path):
    unit = example_unit(example)
    differential(unit, tmp_path, n=400, seed=hash(example) % 1000)


@pytest.mark.parametrize("example", ["vector_add", "device_helper"])
def test_fast_build_within_ulps(example, tmp_path):
    """The FMA-contracting build: integers still exact, floats within FAST_ULPS."""
    differential(example_unit(example), tmp_path, n=400, seed=1, ulps=FAST_ULPS, strict=False)


def test_bank_account_rejects_overdrafts_in_both(tmp_path):
    unit = example_unit("bank_account")
    ba = sys.modules[unit.module]
    lib = build_c(unit, tmp_path)
    spec = unit.kernels[0]
    amounts = np.array([100, -30, -100, 50, -120, -1], dtype=np.int64)
    inputs = np.zeros(len(amounts), dtype=layout_of(ba.Transaction).dtype)
    inputs["id"] = np.arange(len(amounts))
    inputs["amount"] = amounts
    state = new_state(ba.Account)
    outs, status = run_c(lib, spec, inputs, state)
    assert [bool(o[0]["accepted"]) for o in outs] == [True, True, False, True, True, False]
    assert int(state.balance) == 0 and int(state.transactions) == 4
    r_state = new_state(ba.Account)
    compare_runs(spec, inputs, (outs, status), run_reference(spec, inputs, r_state))


def test_counters_histogram_agrees_and_counts(tmp_path):
    unit = example_unit("counters")
    ex = sys.modules[unit.module]
    lib = build_c(unit, tmp_path)
    spec = unit.kernels[0]
    inputs = random_messages(ex.Sample, 500, seed=7)
    state = new_state(ex.Totals)
    run_c(lib, spec, inputs, state)
    values = inputs["value"].astype(np.int64)
    assert int(state.count) == 500
    assert int(state.total) == int(values.sum())
    assert np.array_equal(state.hist, np.bincount(values % 16, minlength=16))


# ---------------------------------------------------------------- faults


FAULTS_SRC = """
import ringgen as rg
from ringgen.types import Array, f32, i32, i64


@rg.message
class Req:
    i: i32
    d: i32
    x: f32
    v: Array[i32, 4]


@rg.message
class Res:
    q: i32
    e: i32
    f: i64


@rg.ring_kernel
def faults(r: Req) -> Res:
    q = r.v[r.i] // r.d
    return Res(q=q, e=r.v[0] % r.d, f=i64(r.x))
"""


def _unit_from_source(tmp_path: Path, name: str, src: str):
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir(exist_ok=True)
    path = mod_dir / f"{name}.py"
    path.write_text(textwrap.dedent(src))
    return collect(str(path))


def test_faults_agree(tmp_path):
    unit = _unit_from_source(tmp_path, "faults_mod", FAULTS_SRC)
    spec = unit.kernels[0]
    inputs = np.zeros(6, dtype=layout_of(spec.input).dtype)
    inputs["i"] = [0, 4, -4, 1, 2, 3]
    inputs["d"] = [2, 1, 3, 0, -1, 5]
    inputs["x"] = [1.5, 2.0, -3.5, 1.0, np.nan, np.inf]
    inputs["v"] = np.arange(24, dtype=np.int32).reshape(6, 4) - 10
    lib = build_c(unit, tmp_path / "c")
    c_run = run_c(lib, spec, inputs, None)
    assert c_run[1] == [
        1,
        int(Status.FAULT_INDEX),
        1,
        int(Status.FAULT_DIV_ZERO),
        int(Status.FAULT_RANGE),
        int(Status.FAULT_RANGE),
    ]
    compare_runs(spec, inputs, c_run, run_reference(spec, inputs, None))


# ---------------------------------------------------------------- generated handlers

from hypothesis import HealthCheck, given, note, reject, settings  # noqa: E402

from ringgen.errors import HandlerError  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

INT_FIELDS = {
    "a": "i8",
    "b": "i16",
    "c": "i32",
    "d": "i64",
    "e": "u8",
    "f": "u16",
    "g": "u32",
    "h": "u64",
}
FLOAT_FIELDS = {"x": "f32", "y": "f64"}
ALL = {**INT_FIELDS, **FLOAT_FIELDS}
BITS = {"i8": 8, "i16": 16, "i32": 32, "i64": 64, "u8": 8, "u16": 16, "u32": 32, "u64": 64}


def _literal(t: str, draw) -> str:
    if t in FLOAT_FIELDS.values():
        return repr(draw(st.sampled_from([0.0, 0.5, 1.0, -2.25, 3.0, 1e-3, 100.0])))
    signed = t.startswith("i")
    hi = min(2 ** (BITS[t] - 1) - 1, 1000) if signed else min(2 ** BITS[t] - 1, 1000)
    return str(draw(st.integers(-hi if signed else 0, hi)))


@st.composite
def expr_of(draw, t: str, depth: int = 0):
    """Source text of an expression of type ``t`` the compiler accepts."""
    is_float = t in ("f32", "f64")
    choices = (
        ["field", "lit"]
        if depth >= 3
        else ["field", "lit", "bin", "bin", "cast", "minmax", "select", "unary"]
    )
    kind = draw(st.sampled_from(choices))
    if kind == "field":
        names = [n for n, ft in ALL.items() if ft == t]
        return f"m.{draw(st.sampled_from(names))}"
    if kind == "lit":
        return f"{t}({_literal(t, draw)})"
    if kind == "cast":
        src = draw(st.sampled_from(sorted(set(ALL.values()))))
        return f"{t}({draw(expr_of(src, depth + 1))})"
    if kind == "minmax":
        fn = draw(st.sampled_from(["min", "max"]))
        return f"{fn}({draw(expr_of(t, depth + 1))}, {draw(expr_of(t, depth + 1))})"
    if kind == "unary":
        if is_float or t.startswith("i"):
            op = draw(st.sampled_from(["-", "abs"]))
        else:
            op = "~"
        inner = draw(expr_of(t, depth + 1))
        return f"abs({inner})" if op == "abs" else f"({op}{inner})"
    if kind == "select":
        ct = draw(st.sampled_from(sorted(set(ALL.values()))))
        cmp = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        a, b = draw(expr_of(ct, depth + 1)), draw(expr_of(ct, depth + 1))
        return (
            f"({draw(expr_of(t, depth + 1))} if {a} {cmp} {b} else {draw(expr_of(t, depth + 1))})"
        )
    ops = ["+", "-", "*", "//", "%"] + (["/"] if is_float else ["&", "|", "^", "<<", ">>"])
    op = draw(st.sampled_from(ops))
    left = draw(expr_of(t, depth + 1))
    if op in ("<<", ">>"):
        return f"({left} {op} {t}({draw(st.integers(0, BITS[t] + 2))}))"
    right = draw(expr_of(t, depth + 1))
    if op in ("+", "-", "*") and draw(st.booleans()):
        right = _literal(t, draw)  # a weak Python literal takes the other side's type
    return f"({left} {op} {right})"


@st.composite
def bool_expr(draw, depth: int = 0):
    """Source text of a bool_ expression: comparisons joined by and/or/not."""
    kind = draw(st.sampled_from(["cmp", "cmp", "and", "or", "not"] if depth < 2 else ["cmp"]))
    if kind == "cmp":
        t = draw(st.sampled_from(sorted(set(ALL.values()))))
        cmp = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        return f"({draw(expr_of(t, 2))} {cmp} {draw(expr_of(t, 2))})"
    if kind == "not":
        return f"(not {draw(bool_expr(depth + 1))})"
    return f"({draw(bool_expr(depth + 1))} {kind} {draw(bool_expr(depth + 1))})"


@st.composite
def loop_statements(draw):
    """A loop over a Python-int range variable feeding a local, as users write accumulators."""
    t = draw(st.sampled_from(["i32", "i64", "u32", "f32"]))
    n = draw(st.integers(0, 6))
    step = draw(expr_of(t, 2))
    op = draw(st.sampled_from(["+", "-", "*"]))
    body = f"        acc = acc {op} {step}"
    if t != "f32" and draw(st.booleans()):
        body += f"\n        acc = acc + {t}(i)"
    return t, f"    acc = {t}(1)\n    for i in range({n}):\n{body}\n"


@st.composite
def handler_source(draw):
    results = {t: draw(expr_of(t)) for t in ("i8", "i32", "i64", "u16", "u64", "f32", "f64")}
    results["bool_"] = draw(bool_expr())
    acc_type, loop = draw(loop_statements())
    results["acc"] = "acc"
    out_types = {**{t: t for t in results if t != "acc"}, "acc": acc_type}
    fields_in = "\n".join(f"    {n}: {t}" for n, t in ALL.items())
    fields_out = "\n".join(f"    r_{k}: {t}" for k, t in out_types.items())
    args = ", ".join(f"r_{k}={e}" for k, e in results.items())
    types = ", ".join(sorted(set(ALL.values()) | {"bool_"}))
    return f"""
import ringgen as rg
from ringgen.types import {types}


@rg.message
class In:
{fields_in}


@rg.message
class Out:
{fields_out}


@rg.ring_kernel
def arith(m: In) -> Out:
{loop}    return Out({args})
"""


_COUNTER = iter(range(10**9))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(src=handler_source(), seed=st.integers(0, 2**16))
def test_generated_arithmetic_matches_reference(src, seed, tmp_path):
    name = f"gen_arith_{next(_COUNTER)}"
    note(src)
    try:
        unit = _unit_from_source(tmp_path, name, src)
        from ringgen.dsl import compile_program

        compile_program(unit.kernels)
    except HandlerError as exc:
        if "by zero" in exc.message:  # a constant zero divisor is rejected at compile time
            reject()
        raise
    try:
        differential(unit, tmp_path / name, n=64, seed=seed, werror=False)
    finally:
        sys.modules.pop(name, None)


# ---------------------------------------------------------------- Str and List (bridged views)

BRIDGED_SRC = """
import ringgen as rg
from ringgen.types import List, Str, Array, bool_, f32, i32, i64, u32


@rg.message
class Item:
    qty: i32
    price: f32


@rg.message
class Order:
    id: i64
    name: Str[12]
    tag: Str[4]
    counts: List[i32, 8]
    items: List[Item, 4]


@rg.message
class Summary:
    id: i64
    name: Str[12]
    brief: Str[12]
    counts: List[i32, 8]
    n_counts: i32
    total: i64
    third: i32
    last: i32
    cost: f32
    is_abc: bool_
    starts_ab: bool_
    same: bool_


@rg.ring_kernel
def summarize(o: Order) -> Summary:
    total = 0
    for c in o.counts:
        total += c
    cost = f32(0.0)
    for it in o.items:
        cost += f32(it.qty) * it.price
    third = i32(-1)
    if len(o.counts) > 2:
        third = o.counts[2]
    n = len(o.counts)
    return Summary(id=o.id, name=o.name, brief=o.tag, counts=o.counts, n_counts=i32(n),
                   total=i64(total), third=third, last=o.counts[-1], cost=cost,
                   is_abc=o.name == "abc", starts_ab=o.name.startswith("ab"),
                   same=o.tag != o.name)
"""


def test_str_and_list_match_reference(tmp_path):
    unit = _unit_from_source(tmp_path, "bridged_mod", BRIDGED_SRC)
    differential(unit, tmp_path / "c", n=400, seed=11)


def test_str_and_list_semantics(tmp_path):
    unit = _unit_from_source(tmp_path, "bridged_mod2", BRIDGED_SRC)
    spec = unit.kernels[0]
    mod = sys.modules[unit.module]
    order = mod.Order(
        id=5, name="abcd", tag="ab", counts=[1, 2, 3], items=[mod.Item(qty=2, price=1.5)]
    )
    (out,) = reference_handler(spec)(order)
    assert (out.name, out.brief, list(out.counts)) == ("abcd", "ab", [1, 2, 3])
    assert (out.total, out.third, out.last, out.cost) == (6, 3, 3, 3.0)
    assert (bool(out.is_abc), bool(out.starts_ab), bool(out.same)) == (False, True, True)
    empty = mod.Order(id=6, name="abc", tag="abc", counts=[], items=[])
    with pytest.raises(HandlerFault) as info:
        reference_handler(spec)(empty)  # o.counts[-1] on an empty List
    assert info.value.reason.name == "INDEX_OUT_OF_RANGE"


# ---------------------------------------------------------------- a tour of the language

TOUR_SRC = """
import math

import ringgen as rg
from ringgen.types import Array, bool_, f32, f64, i16, i32, i64, u8, u32, u64

LIMIT = 40


@rg.state
class Stats:
    low: i32 = 1000
    high: i64 = -1000
    hits: u32 = 0
    weight: f32 = 0.0
    slot: u64 = 0
    bins: Array[u32, 8] = 0


@rg.message
class Job:
    id: i64
    n: i32
    k: i16
    x: f32
    y: f64
    v: Array[f32, 8]
    flags: u8


@rg.message
class Point:
    px: f32
    py: f32


@rg.message
class Result:
    id: i64
    steps: i32
    found: i32
    acc: f32
    wave: f32
    dist: f64
    kind: i32
    odd: bool_
    tid: u32
    old_hits: u32
    mid: Point
    v: Array[f32, 8]


@rg.device
def norm2(p: Point) -> f32:
    return math.sqrt(p.px * p.px + p.py * p.py)


@rg.device
def collatz_steps(n: i64, limit: i32) -> i32:
    steps = i32(0)
    while n != 1 and steps < limit:
        if n % 2 == 0:
            n2 = n // 2
        else:
            n2 = 3 * n + 1
        n = n2
        steps += 1
    return steps


@rg.ring_kernel
def tour(j: Job, st: Stats) -> Result:
    found = i32(-1)
    acc = f32(0)
    for i in range(8):
        if j.v[i] < 0:
            continue
        acc += j.v[i]
        if acc > 10.0:
            found = i32(i)
            break
    i = 7
    while i >= 0:
        i -= 1
        if i == 3:
            break
    kind: i32 = 0  # declared: the literals below would otherwise widen it to i64
    if j.n < -100:
        kind = 1
    elif j.n < 0:
        kind = 2
    elif j.n == 0:
        kind = 3
    else:
        kind = 4 if j.flags & 1 == 1 else 5
    if rg.now() == u64(0):  # a clock reading: compiled and run, never zero
        kind = 9
    rg.atomic_min(st.low, j.n)
    rg.atomic_max(st.high, i64(j.k))
    old = rg.atomic_add(st.hits, 1)
    rg.atomic_add(st.weight, f32(1.5))
    rg.atomic_cas(st.slot, 0, u64(j.id))
    rg.atomic_add(st.bins[j.flags % 8], 1)
    mid = Point(px=j.x, py=f32(j.y))
    res = Result(id=j.id, steps=collatz_steps(i64(abs(j.k)) + 1, LIMIT), found=found, acc=acc,
                 wave=math.sin(j.x) * math.exp(-abs(j.x)), dist=f64(norm2(mid)) + j.y * 0.5,
                 kind=kind, odd=j.n % 2 == 1, tid=rg.thread_id(), old_hits=old, mid=mid, v=j.v)
    for i in range(0, 8, 2):
        res.v[i] = -res.v[i]
    return res
"""


def test_language_tour_matches_reference(tmp_path):
    """Loops, break/continue, elif, ternaries, device calls with message arguments, local messages,
    every atomic, thread ids and math functions (compared within MATH_ULPS)."""
    unit = _unit_from_source(tmp_path, "tour_mod", TOUR_SRC)
    differential(unit, tmp_path / "c", n=400, seed=3, ulps=MATH_ULPS)


LOCAL_MSG_SRC = """
import ringgen as rg
from ringgen.types import Str, i32


@rg.message
class Tagged:
    n: i32
    name: Str[8]


@rg.ring_kernel
def relabel(a: Tagged) -> Tagged:
    res = Tagged(n=a.n, name="small")
    if a.n > 3:
        res.name = "big"
    elif a.name == "abc":
        res.name = a.name
    res.n = res.n * 2
    return res
"""


def test_local_message_with_string_literals(tmp_path):
    unit = _unit_from_source(tmp_path, "local_msg_mod", LOCAL_MSG_SRC)
    differential(unit, tmp_path / "c", n=300, seed=5)


WEAK_SRC = """
import ringgen as rg
from ringgen.types import Array, i8, i32, i64, u8, u64


@rg.message
class W:
    a: i8
    n: u8
    big: u64
    v: Array[i32, 6]


@rg.message
class WOut:
    s: i8
    t: i64
    c: i32
    lt: i32


@rg.ring_kernel
def weak(w: W) -> WOut:
    s = w.a
    t = 0
    c = i32(0)
    lt = i32(0)
    for i in range(w.n % 8):
        t = t * 3 + i
        s = s + i * 30          # a Python int operand must fit i8, or the message faults
        if w.big > i - 3:       # u64 against a (possibly negative) Python int, compared exactly
            lt += 1
    k = len(w.v) - 1
    while k >= 0:
        c = c + w.v[k] // (k + 1)
        k -= 2
    return WOut(s=s, t=t, c=c, lt=lt)
"""


def test_python_int_semantics_match(tmp_path):
    unit = _unit_from_source(tmp_path, "weak_mod", WEAK_SRC)
    differential(unit, tmp_path / "c", n=400, seed=9)
    spec = unit.kernels[0]
    inputs = random_messages(spec.input, 400, 9)
    statuses = set(run_reference(spec, inputs, None)[1])
    assert {1, int(Status.FAULT_RANGE)} <= statuses  # both paths were exercised


LIST_BUILD_SRC = """
import ringgen as rg
from ringgen.types import Array, List, i32, u8


@rg.message
class Batch:
    n: u8
    v: Array[i32, 10]


@rg.message
class Picked:
    evens: List[i32, 4]
    count: i32


@rg.ring_kernel
def pick(b: Batch) -> Picked:
    res = Picked(evens=[], count=0)
    for i in range(b.n % 11):
        if b.v[i] % 2 == 0:
            res.evens.append(b.v[i] // 2)   # a fifth even number overflows the List: a fault
            res.count += 1
    return res
"""


def test_building_a_list_by_appending(tmp_path):
    unit = _unit_from_source(tmp_path, "list_build_mod", LIST_BUILD_SRC)
    differential(unit, tmp_path / "c", n=400, seed=21)
    spec = unit.kernels[0]
    statuses = set(run_reference(spec, random_messages(spec.input, 400, 21), None)[1])
    assert {1, int(Status.FAULT_RANGE)} <= statuses


ATOMIC_WRAP_SRC = """
import ringgen as rg
from ringgen.types import i8, i32, u32, u64


@rg.state
class Counters:
    down: u32 = 5
    total: u64 = 0
    seen: i32 = 0


@rg.message
class Tick:
    k: i8


@rg.ring_kernel
def tick(t: Tick, c: Counters) -> Tick:
    for i in range(3):
        rg.atomic_add(c.down, i - 2)      # a negative Python int wraps into the u32, as in C
    rg.atomic_add(c.total, u64(t.k))      # an explicit cast wraps, as in C
    rg.atomic_cas(c.seen, 0, i32(t.k))
    return Tick(k=t.k)
"""


def test_atomic_operands_convert_like_c_stores(tmp_path):
    unit = _unit_from_source(tmp_path, "atomic_wrap_mod", ATOMIC_WRAP_SRC)
    differential(unit, tmp_path / "c", n=50, seed=2)


DEVICE_FAULT_SRC = """
import ringgen as rg
from ringgen.types import Array, i32


@rg.message
class Q:
    a: i32
    d: i32
    i: i32
    v: Array[i32, 3]


@rg.device
def ratio(a: i32, d: i32) -> i32:
    q = a // d
    return q + 1


@rg.device
def pick(q: Q) -> i32:
    return q.v[q.i] + ratio(q.a, q.d)


@rg.ring_kernel
def device_faults(q: Q, out: rg.Outbox[Q]) -> None:
    out.emit(Q(a=pick(q), d=q.d, i=q.i, v=q.v))
"""


def test_faults_inside_device_functions_reach_the_handler(tmp_path):
    unit = _unit_from_source(tmp_path, "device_fault_mod", DEVICE_FAULT_SRC)
    spec = unit.kernels[0]
    inputs = np.zeros(4, dtype=layout_of(spec.input).dtype)
    inputs["a"], inputs["d"], inputs["i"] = [7, 7, 7, 7], [2, 0, 2, 2], [0, 0, 3, -3]
    lib = build_c(unit, tmp_path / "c")
    c_run = run_c(lib, spec, inputs, None)
    assert c_run[1] == [0, int(Status.FAULT_DIV_ZERO), int(Status.FAULT_INDEX), 0]
    assert [len(o) for o in c_run[0]] == [1, 0, 0, 1]
    compare_runs(spec, inputs, c_run, run_reference(spec, inputs, None))
    differential(unit, tmp_path / "c2", n=200, seed=4)


U64_INDEX_SRC = """
import ringgen as rg
from ringgen.types import Array, i32, u64


@rg.message
class U:
    i: u64
    v: Array[i32, 3]


@rg.ring_kernel
def u64_index(u: U) -> U:
    x = u.v[u.i]
    return U(i=u.i, v=u.v)
"""


def test_u64_index_never_wraps_to_negative(tmp_path):
    unit = _unit_from_source(tmp_path, "u64_index_mod", U64_INDEX_SRC)
    spec = unit.kernels[0]
    inputs = np.zeros(3, dtype=layout_of(spec.input).dtype)
    # the last would be -1 (the last element) if it wrapped; numpy cannot index with it at all
    inputs["i"] = [2, 3, 2**64 - 1]
    lib = build_c(unit, tmp_path / "c", werror=False)  # x is set and never read
    c_run = run_c(lib, spec, inputs, None)
    assert c_run[1] == [1, int(Status.FAULT_INDEX), int(Status.FAULT_RANGE)]
    compare_runs(spec, inputs, c_run, run_reference(spec, inputs, None))


NESTED_SRC = """
import ringgen as rg
from ringgen.types import Array, f32, i32


@rg.message
class Pt:
    x: f32
    y: f32


@rg.message
class Shape:
    id: i32
    pts: Array[Pt, 3]
    grid: Array[Array[i32, 3], 2]
    center: Pt


@rg.ring_kernel
def nested(s: Shape) -> Shape:
    res = Shape(id=s.id, pts=s.pts, grid=s.grid, center=s.center)
    cx = f32(0)
    for p in s.pts:
        cx += p.x
    res.center = Pt(x=cx / 3.0, y=s.pts[-1].y)
    res.pts[s.id % 3] = Pt(x=s.center.y, y=s.center.x)
    res.grid[1][2] = s.grid[0][0] + s.grid[1][s.id % 3]
    return res
"""


def test_nested_messages_and_2d_arrays(tmp_path):
    unit = _unit_from_source(tmp_path, "nested_mod", NESTED_SRC)
    differential(unit, tmp_path / "c", n=300, seed=8)


DEFAULTS_SRC = """
import ringgen as rg
from ringgen.types import Array, Str, f32, i32


@rg.message
class In:
    k: i32


@rg.message
class WithDefaults:
    k: i32
    scale: f32 = 1.5
    grid: Array[Array[i32, 3], 2] = 7
    label: Str[6] = "none"


@rg.ring_kernel
def defaults(m: In) -> WithDefaults:
    return WithDefaults(k=m.k)
"""


def test_field_defaults_fill_outputs(tmp_path):
    unit = _unit_from_source(tmp_path, "defaults_mod", DEFAULTS_SRC)
    differential(unit, tmp_path / "c", n=20, seed=1)
    (out,) = reference_handler(unit.kernels[0])(sys.modules[unit.module].In(k=3))
    assert out.scale == np.float32(1.5) and out.label == "none" and (out.grid == 7).all()


# ---------------------------------------------------------------- the language as Python writes it


def test_language_forms_match_reference(tmp_path):
    """tests/language_kernels.py: unified locals, tuples, enumerate, **, in, list literals, device
    helpers taking Array/List/Str and returning tuples, endswith, Outbox[Msg, 12]."""
    unit = collect(str(ROOT / "tests" / "language_kernels.py"))
    differential(unit, tmp_path, n=400, seed=12)
    pieces = next(k for k in unit.kernels if k.name == "pieces")
    assert pieces.outbox_limit == 12
    inputs = random_messages(pieces.input, 400, 12)
    outs, statuses = run_reference(pieces, inputs, None)
    assert max(len(o) for o in outs) == 12  # the limit was reached...
    assert int(Status.FAULT_OUTBOX) in statuses  # ...and passed, which faults


NARROW_SRC = """
import ringgen as rg
from ringgen.types import Array, i16, i64


@rg.message
class B:
    hist: Array[i16, 4]


@rg.message
class Total:
    total: i64


@rg.ring_kernel
def acc(b: B) -> Total:
    total = 0
    for i in range(4):
        total += b.hist[i]
    return Total(total=total)
"""


def test_accumulator_does_not_narrow(tmp_path):
    """Issue 12's example: 20000 * 3 + 14484 over an Array[i16, 4] is 74,484 on both sides, not the
    i16 wrap-around 8,948."""
    unit = _unit_from_source(tmp_path, "narrow_mod", NARROW_SRC)
    spec = unit.kernels[0]
    inputs = np.zeros(1, dtype=layout_of(spec.input).dtype)
    inputs["hist"] = [[20000, 20000, 20000, 14484]]
    lib = build_c(unit, tmp_path / "c")
    (c_out,), _ = run_c(lib, spec, inputs, None)
    (r_out,), _ = run_reference(spec, inputs, None)
    assert int(c_out[0]["total"]) == int(r_out[0]["total"]) == 74484
