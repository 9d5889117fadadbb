"""Host-side throughput of bridged messages: ringgen's object and columnar encoders vs msgpack/pickle.

Object API: each message is encoded and copied into a preallocated ring of slots (what ``send`` does
on the host), for three shapes from the examples (a short string, a 16-float list, an order with a
nested customer and three bridged lines). The same objects go through ``msgpack.packb`` (with a
``default`` hook returning each object's fields as a tuple, the fastest fair spelling) and
``pickle.dumps`` (protocol 5), copied into the same ring. ``codec.pack_into`` writes each message
straight into its slot, in one call to the native per-message encoder (``ringgen/wire/_encoder.c``)
when it could be built (``RINGGEN_NO_NATIVE=1`` measures the Python path). The batch form, ``encode_batch`` over lists
of 1,024 objects written straight into a block of slots, is reported beside them.

Columnar API: ``encode_batch`` builds the slots of a whole batch (256-byte header + 64-byte payload
each, CRC-32 included) from numpy columns, into a preallocated slot array, for batch sizes
1 ... 1,048,576. Reported as the median and p99 time per batch and messages per second.

End to end on CUDA (when a CUDA device is present): the columnar view rows of a batch go through
``send_batch`` (columnar encode into the mapped input ring), the resident kernel (validate, decode,
handler, reply) and one ``receive_batch(n, min_n=n)``, for ``examples/list_reduce`` (``Samples``: 16
floats of a ``List[f32, 64]`` in, a direct ``Summary`` out, received into a reused array) and
``examples/word_stats`` (``Str[32]`` in, a bridged ``WordStat`` out, decoded columnar into view
rows by ``receive_batch(out=)``, and at the smallest batch also into objects) at batches 4,096 and
65,536; reported as the median time per round trip and messages per second.

Columnar decode: ``codec.unpack_array`` of ``WordStat`` slots into view rows (one native call per batch),
beside the per-object decoder's rate.

Object decode: one message per call for ``WordStat`` (word_stats' reply) and the encoder's
``Samples`` and ``Order`` objects: the native per-message decoder (``decode_at`` in
``ringgen/wire/_encoder.c``, from the message's bytes and in place from a ring slot), the generated
Python decoder it falls back to, and ``msgpack.unpackb`` of the same fields packed as a dict.

The columnar encoder runs natively (``ringgen/wire/_native.c``) when a C compiler is present; set
``RINGGEN_NO_NATIVE=1`` to measure the numpy fallback. The JSON records which one ran
(``columnar_backend``).

Run: ``.venv/bin/python bench/bridged.py [--quick] [--cuda-only]``. Prints a table; writes
``bench/results/bridged-<date>.json`` and ``bench/results/bridged-<date>.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import operator
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ringgen as rg  # noqa: E402
from ringgen.layout import layout_of  # noqa: E402
from ringgen.types import Str, f64, i32, i64, u8  # noqa: E402
from ringgen.wire import codec_for, encode_batch, native  # noqa: E402
from ringgen.wire.columnar import columns_to_view  # noqa: E402

from examples.list_reduce import Samples  # noqa: E402
from examples.orders import Customer, Order, OrderLine  # noqa: E402
from examples.word_stats import Word  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_commit  # noqa: E402


@rg.message
class Tick:
    """64-byte payload with a 34-byte symbol: 1 + 8 + 8 + 4 + 1 + (8 + 34)."""

    id: i64
    price: f64
    qty: i32
    side: u8
    symbol: Str[40]


BATCHES = [1, 64, 4096, 65536, 1048576]


def _gpu_name() -> str:
    """The CUDA device the end-to-end series ran on (the JSON's ``device`` names the host CPU)."""
    import pycuda.driver as drv

    drv.init()
    return drv.Device(0).name()


def _device() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return (
                    line.split(":", 1)[1].strip()
                    + f" ({platform.machine()}, Python {platform.python_version()})"
                )
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _objects(n: int) -> dict[str, list]:
    rng = np.random.default_rng(0)
    words = ["the", "unhappy", "nonsense", "ringbuffer", "kernel", "é", "actor"]
    return {
        "Word (Str[32])": [Word(i, words[i % len(words)]) for i in range(n)],
        "Samples (List[f32, 64], 16 items)": [
            Samples(i, [float(np.float32(x)) for x in rng.normal(size=16)]) for i in range(n)
        ],
        "Order (nested Customer + 3 lines)": [
            Order(
                i,
                Customer(i, "Ada Lovelace", "gold"),
                [OrderLine("GIFT-1", 2, 9.5), OrderLine("SKU-77", 1, 3.25), OrderLine("X", 5, 0.5)],
            )
            for i in range(n)
        ],
    }


def _msgpack_default():
    getters: dict[type, operator.attrgetter] = {}

    def default(obj):
        g = getters.get(type(obj))
        if g is None:
            g = getters[type(obj)] = operator.attrgetter(
                *[f.name for f in rg.spec_of(type(obj)).fields]
            )
        return g(obj)

    return default


def _rate(fn, objs, ring: np.ndarray, slot: int, repeats: int) -> float:
    """Messages per second of ``fn`` + a copy of its bytes into the ring (best of ``repeats``)."""
    view = memoryview(ring)
    cap = len(ring) // slot
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i, o in enumerate(objs):
            data = fn(o)
            at = (i % cap) * slot
            view[at : at + len(data)] = data
        best = min(best, time.perf_counter() - t0)
    return len(objs) / best


def _rate_into(pack_into, objs, ring: np.ndarray, slot: int, repeats: int) -> float:
    """Messages per second of ``codec.pack_into``: the message is written straight into its ring
    slot (natively when ``ringgen/wire/_encoder.c`` could be built), best of ``repeats``."""
    cap = len(ring) // slot
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i, o in enumerate(objs):
            pack_into(ring, (i % cap) * slot, o)
        best = min(best, time.perf_counter() - t0)
    return len(objs) / best


def _batch_rate(cls, objs, repeats: int, chunk: int = 1024) -> float:
    """Messages per second of ``encode_batch`` over lists of ``chunk`` objects, straight into a
    preallocated block of slots (the batch form of encode + send)."""
    out = np.zeros((chunk, layout_of(cls).slot_size), dtype=np.uint8)
    parts = [objs[i : i + chunk] for i in range(0, len(objs) - chunk + 1, chunk)]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for part in parts:
            encode_batch(cls, part, out=out)
        best = min(best, time.perf_counter() - t0)
    return len(parts) * chunk / best


def bench_objects(n: int, repeats: int) -> list[dict]:
    import msgpack  # only the host series needs it (the GPU machine's Python may lack it)

    rows = []
    default = _msgpack_default()
    for shape, objs in _objects(n).items():
        cls = type(objs[0])
        codec = codec_for(cls)
        slot = max(codec.slot_size, 4096)
        ring = np.zeros(1024 * slot, dtype=np.uint8)
        enc = codec.encode
        codec.pack_into(ring, 0, objs[0])  # the first pack builds (or loads) the native encoder
        rates = {
            "ringgen rg.encode": _rate(rg.encode, objs, ring, slot, repeats),
            "ringgen codec.encode": _rate(enc, objs, ring, slot, repeats),
            "ringgen codec.pack_into": _rate_into(codec.pack_into, objs, ring, slot, repeats),
            "msgpack.packb": _rate(
                lambda o: msgpack.packb(o, default=default), objs, ring, slot, repeats
            ),
            "pickle.dumps": _rate(lambda o: pickle.dumps(o, protocol=5), objs, ring, slot, repeats),
            "ringgen encode_batch(objects)": _batch_rate(cls, objs, repeats),
        }
        sizes = {
            "ringgen": len(rg.encode(objs[0])),
            "msgpack": len(msgpack.packb(objs[0], default=default)),
            "pickle": len(pickle.dumps(objs[0], protocol=5)),
        }
        rows.append(
            {
                "shape": shape,
                "messages": n,
                "rates": rates,
                "bytes": sizes,
                "speedup_vs_msgpack": rates["ringgen codec.encode"] / rates["msgpack.packb"],
                "speedup_vs_pickle": rates["ringgen codec.encode"] / rates["pickle.dumps"],
                "pack_into_speedup_vs_msgpack": rates["ringgen codec.pack_into"]
                / rates["msgpack.packb"],
                "pack_into_native": bool(getattr(codec, "_fast", None)),
                "batch_speedup_vs_msgpack": rates["ringgen encode_batch(objects)"]
                / rates["msgpack.packb"],
            }
        )
    return rows


def _tick_columns(n: int) -> dict:
    rng = np.random.default_rng(1)
    symbols = np.array([f"SYM{k:031d}".encode() for k in range(64)], dtype="S34")  # 34 bytes each
    return {
        "id": np.arange(n, dtype=np.int64),
        "price": rng.normal(100, 5, n),
        "qty": rng.integers(1, 1000, n, dtype=np.int32),
        "side": rng.integers(0, 2, n, dtype=np.uint8),
        "symbol": symbols[rng.integers(0, 64, n)],
    }


def bench_columnar(sizes: list[int], budget_s: float) -> list[dict]:
    lay = layout_of(Tick)
    rows = []
    for n in sizes:
        view = columns_to_view(Tick, _tick_columns(n))
        out = np.zeros((n, lay.slot_size), dtype=np.uint8)
        first = encode_batch(Tick, view, timestamp=0, out=out)
        assert (
            int.from_bytes(first[0, 4:12].tobytes(), "little") == 256 + 64
        ), "payload is not 64 bytes"
        assert rg.decode(Tick, first[n - 1]) is not None
        times = []
        deadline = time.perf_counter() + budget_s
        while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 200):
            t0 = time.perf_counter()
            encode_batch(Tick, view, timestamp=0, out=out)
            times.append(time.perf_counter() - t0)
        times_arr = np.array(times)
        med, p99 = float(np.median(times_arr)), float(np.percentile(times_arr, 99))
        # the same messages through the object API, for comparison (capped: it is a Python loop)
        k = min(n, 20000)
        objs = [
            Tick(int(i), float(p), int(q), int(s), sym.decode())
            for i, p, q, s, sym in zip(
                view["id"][:k],
                view["price"][:k],
                view["qty"][:k],
                view["side"][:k],
                _tick_columns(k)["symbol"],
            )
        ]
        enc = codec_for(Tick).encode
        t0 = time.perf_counter()
        for o in objs:
            enc(o)
        obj_rate = k / (time.perf_counter() - t0)
        rows.append(
            {
                "batch": n,
                "median_s": med,
                "p99_s": p99,
                "msgs_per_s": n / med,
                "payload_gb_per_s": n * 64 / med / 1e9,
                "slot_bytes": lay.slot_size,
                "object_api_msgs_per_s": obj_rate,
                "runs": len(times),
            }
        )
    return rows


CUDA_BATCHES = [4096, 65536]


def cuda_present() -> bool:
    """Whether a CUDA device can run ring kernels here (PyCUDA importable, a device that maps host
    memory)."""
    try:
        from ringgen.runtime import cuda as cuda_runtime

        cuda_runtime.probe()
        return True
    except Exception as exc:  # no PyCUDA, no driver, no device: the series is skipped
        print(f"no CUDA series: {exc}")
        return False


def _samples_view(codec, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` Samples view rows of 16 floats each (the shape of the object series)."""
    view = np.zeros(n, dtype=codec.dtype)
    view["id"] = np.arange(n)
    view["values"]["len"] = 16
    view["values"]["items"][:, :16] = rng.normal(size=(n, 16)).astype(np.float32)
    return view


def _words_view(codec, n: int) -> np.ndarray:
    words = [w.encode() for w in ("the", "unhappy", "nonsense", "ringbuffer", "kernel", "actor")]
    view = np.zeros(n, dtype=codec.dtype)
    view["id"] = np.arange(n)
    pick = np.arange(n) % len(words)
    view["text"]["len"] = np.array([len(w) for w in words])[pick]
    data = np.zeros((len(words), view["text"]["data"].shape[1]), dtype=np.uint8)
    for k, w in enumerate(words):
        data[k, : len(w)] = np.frombuffer(w, np.uint8)
    view["text"]["data"] = data[pick]
    return view


def _round_trip(k, view: np.ndarray, out=None, split=None):
    """send_batch the rows, then one receive_batch(min_n=n) for every reply: the replies (view rows
    in ``out`` when given: a direct message's rows, or a bridged one's decoded columnar; else
    objects for a bridged reply). ``split``, a list, gets (send_batch, receive_batch) seconds."""
    n = len(view)
    t0 = time.perf_counter()
    k.send_batch(view, timeout=10.0)
    t1 = time.perf_counter()
    got = k.receive_batch(n, timeout=10.0, min_n=n, out=out)
    if split is not None:
        split.append((t1 - t0, time.perf_counter() - t1))
    if len(got) != n:
        raise RuntimeError(f"{k.name}: {len(got)} of {n} replies after 10 s")
    return got


def bench_cuda(sizes: list[int], budget_s: float) -> list[dict]:
    """End-to-end bridged throughput on CUDA (see the module docstring): one row per kernel, reply
    form and batch size, each checked against numpy before it is timed."""
    from examples.list_reduce import list_reduce
    from examples.word_stats import word_stats

    rows = []
    rng = np.random.default_rng(7)
    # (kernel, replies as, batches): word_stats's bridged replies as view rows decoded columnar
    # (receive_batch(out=)) at every size, and as objects (one Python object per reply) at the
    # smallest, for comparison.
    cases = (
        (list_reduce, "rows", sizes),
        (word_stats, "rows", sizes),
        (word_stats, "objects", sizes[:1]),
    )
    for kernel, form, batches in cases:
        with rg.launch(kernel, backend="cuda", capacity=1 << 17) as k:
            for n in batches:
                out = np.zeros(n, dtype=k.out_codec.dtype) if form == "rows" else None
                if kernel is list_reduce:
                    view = _samples_view(k.in_codec, n, rng)
                    got = _round_trip(k, view, out)
                    vals = view["values"]["items"][:, :16]
                    assert (got["id"] == view["id"]).all() and (got["count"] == 16).all()
                    assert np.allclose(got["total"], vals.sum(axis=1, dtype=np.float32), atol=1e-4)
                    assert (got["highest"] == vals.max(axis=1)).all()
                    shape = "Samples (List[f32, 64], 16 items) -> Summary (direct)"
                else:
                    view = _words_view(k.in_codec, n)
                    got = _round_trip(k, view, out)
                    objs = k.out_codec.from_array(got[:100]) if form == "rows" else got
                    assert list(got["id"] if form == "rows" else [r.id for r in got]) == list(
                        range(n)
                    )
                    assert all(r.length == len(r.text) for r in objs[:100])
                    shape = f"Word (Str[32]) -> WordStat (Str[32], decoded to {form})"
                times, split = [], []
                deadline = time.perf_counter() + budget_s
                while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 100):
                    t0 = time.perf_counter()
                    _round_trip(k, view, out, split)
                    times.append(time.perf_counter() - t0)
                arr = np.array(times)
                med, p99 = float(np.median(arr)), float(np.percentile(arr, 99))
                send_s, receive_s = np.median(np.array(split), axis=0)
                rows.append(
                    {
                        "kernel": kernel.spec.name + ("" if form == "rows" else " (objects)"),
                        "shape": shape,
                        "batch": n,
                        "median_s": med,
                        "p99_s": p99,
                        "msgs_per_s": n / med,
                        "send_batch_p50_s": float(send_s),
                        "receive_batch_p50_s": float(receive_s),
                        "in_slot_bytes": int(k.in_codec.slot_size),
                        "runs": len(times),
                        "rejected": dict(k.stats().rejected),
                    }
                )
        print(f"cuda {kernel.spec.name} ({form}): done")
    return rows


def _decode_objects(n: int) -> dict[str, list]:
    """The decoder's shapes: ``WordStat`` (word_stats' reply), then the encoder's ``Samples`` and
    ``Order`` objects."""
    from examples.word_stats import WordStat

    words = ["the", "unhappy", "nonsense", "ringbuffer", "kernel", "é", "actor"]
    objs = _objects(n)
    return {
        "WordStat (Str[32], u32, 2 bools)": [
            WordStat(i, words[i % 7], len(words[i % 7].encode()), i % 3 == 0, i % 7 == 1)
            for i in range(n)
        ],
        "Samples (List[f32, 64], 16 items)": objs["Samples (List[f32, 64], 16 items)"],
        "Order (nested Customer + 3 lines)": objs["Order (nested Customer + 3 lines)"],
    }


def _as_dict(obj):
    """``obj`` as plain dicts and lists (what msgpack carries for it)."""
    if hasattr(type(obj), "__attrs_attrs__"):
        return {f.name: _as_dict(getattr(obj, f.name)) for f in rg.spec_of(type(obj)).fields}
    if isinstance(obj, list):
        return [_as_dict(x) for x in obj]
    return obj


def _decode_rate(fn, args: list, repeats: int) -> float:
    """Messages per second of ``fn(*a)`` over ``args``, best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for a in args:
            fn(*a)
        best = min(best, time.perf_counter() - t0)
    return len(args) / best


def bench_decode_objects(n: int, repeats: int) -> list[dict]:
    """One message per call: the native decoder (``ringgen/wire/_encoder.c``'s ``decode_at``, from
    the message's bytes and in place from its ring slot), the generated Python decoder, and
    ``msgpack.unpackb`` of the same fields as a dict (a dict back, no object built; when msgpack is
    installed)."""
    try:
        import msgpack
    except ImportError:  # the GPU machine's Python may lack it
        msgpack = None
    rows = []
    for shape, objs in _decode_objects(n).items():
        cls = type(objs[0])
        codec = codec_for(cls)
        fast = codec.decoder()  # builds (or loads) the native extension
        native_ok = fast is not codec._python_decode
        wires = [rg.encode(o, timestamp=0) for o in objs]
        slot = codec.slot_size
        cap = 1024
        ring = np.zeros(cap * slot, dtype=np.uint8)
        for i, w in enumerate(wires[:cap]):
            ring[i * slot : i * slot + len(w)] = np.frombuffer(w, np.uint8)
        view = memoryview(ring)
        assert all(fast(w) == o for w, o in zip(wires[:100], objs)), "native decode differs"
        rates = {
            "generated Python decoder": _decode_rate(
                codec._python_decode, [(w,) for w in wires], repeats
            ),
        }
        if native_ok:
            rates["native decode(bytes)"] = _decode_rate(fast, [(w,) for w in wires], repeats)
            rates["native decode(slot in place)"] = _decode_rate(
                fast, [(view, (i % cap) * slot, slot) for i in range(n)], repeats
            )
        if msgpack is not None:
            packed = [msgpack.packb(_as_dict(o)) for o in objs]
            rates["msgpack.unpackb(dict)"] = _decode_rate(
                msgpack.unpackb, [(p,) for p in packed], repeats
            )
        rows.append({"shape": shape, "messages": n, "native": native_ok, "rates": rates})
    return rows


def bench_decode(sizes: list[int], budget_s: float) -> list[dict]:
    """The columnar decoder alone: ``codec.unpack_array`` of ``WordStat`` slots (a bridged reply: 8-byte
    id, a Str[32] word, two flags) into preallocated view rows, per batch size."""
    from examples.word_stats import WordStat

    codec = codec_for(WordStat)
    rows = []
    for n in sizes:
        view = _words_view(codec, n)
        view["length"] = view["text"]["len"]
        slots = encode_batch(WordStat, view, timestamp=0)
        out = np.zeros(n, dtype=codec.dtype)
        codec.unpack_array(slots, out=out)
        assert out.tobytes() == view.tobytes(), "decoded rows differ from the encoded ones"
        times = []
        deadline = time.perf_counter() + budget_s
        while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 200):
            t0 = time.perf_counter()
            codec.unpack_array(slots, out=out)
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        k = min(n, 20000)
        t0 = time.perf_counter()
        for i in range(k):
            codec.decode(slots[i])
        rows.append(
            {
                "batch": n,
                "median_s": med,
                "msgs_per_s": n / med,
                "per_object_msgs_per_s": k / (time.perf_counter() - t0),
                "runs": len(times),
            }
        )
    return rows


def _plot(objects: list[dict], columnar: list[dict], path: Path, cuda: list[dict] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if cuda else 2, figsize=(19 if cuda else 13, 4.8))
    a, b = axes[0], axes[1]
    names = list(objects[0]["rates"])
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        a.bar(
            np.arange(len(objects)) + k * width,
            [r["rates"][name] / 1e6 for r in objects],
            width,
            label=name,
        )
    a.set_xticks(
        np.arange(len(objects)) + 0.4 - width / 2, [r["shape"] for r in objects], fontsize=8
    )
    a.set_ylabel("million messages / s (encode + copy into ring)")
    a.set_title("object API, one message at a time")
    a.legend(fontsize=8)
    xs = [r["batch"] for r in columnar]
    b.loglog(xs, [r["msgs_per_s"] / 1e6 for r in columnar], "o-", label="encode_batch (median)")
    b.loglog(
        xs, [r["batch"] / r["p99_s"] / 1e6 for r in columnar], "x--", label="encode_batch (p99)"
    )
    b.loglog(
        xs, [r["object_api_msgs_per_s"] / 1e6 for r in columnar], "s:", label="object API loop"
    )
    b.axhline(20, color="grey", lw=0.8, ls="--", label="target 20 M/s")
    b.set_xlabel("batch size (messages)")
    b.set_ylabel("million messages / s")
    b.set_title("columnar API, 64-byte payloads (+256-byte header)")
    b.legend(fontsize=8)
    if cuda:
        c = axes[2]
        for name in sorted({r["kernel"] for r in cuda}):
            rs = [r for r in cuda if r["kernel"] == name]
            c.loglog(
                [r["batch"] for r in rs], [r["msgs_per_s"] / 1e6 for r in rs], "o-", label=name
            )
        c.axhline(10, color="grey", lw=0.8, ls="--", label="target 10 M/s")
        c.set_xlabel("batch size (messages)")
        c.set_ylabel("million messages / s")
        c.set_title("end to end on CUDA: send_batch -> kernel -> receive_batch")
        c.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="fewer messages and batch sizes (a smoke run)"
    )
    ap.add_argument(
        "--cuda-only",
        action="store_true",
        help="only the end-to-end CUDA series and the columnar decoder (GPU machine)",
    )
    args = ap.parse_args(argv)
    n, repeats = (2000, 2) if args.quick else (20000, 5)
    sizes = BATCHES[:4] if args.quick else BATCHES
    objects = [] if args.cuda_only else bench_objects(n, repeats)
    columnar = [] if args.cuda_only else bench_columnar(sizes, 1.0 if args.quick else 4.0)
    decoding = bench_decode(sizes, 1.0 if args.quick else 3.0)  # cheap: on the GPU machine too
    object_decode = bench_decode_objects(n, repeats)
    cuda = bench_cuda(CUDA_BATCHES, 1.0 if args.quick else 3.0) if cuda_present() else []

    print(f"\nobject API: encode + copy into a ring slot, {n} messages, best of {repeats}")
    print(
        f"{'shape':38} {'rg.encode':>11} {'codec':>11} {'msgpack':>11} {'pickle':>11} {'vs msgpack':>10} {'vs pickle':>10}"
        f" {'batch(objs)':>11} {'vs msgpack':>10} {'pack_into':>11} {'vs msgpack':>10}"
    )
    for r in objects:
        rt = r["rates"]
        print(
            f"{r['shape']:38} {rt['ringgen rg.encode'] / 1e6:9.2f} M {rt['ringgen codec.encode'] / 1e6:9.2f} M "
            f"{rt['msgpack.packb'] / 1e6:9.2f} M {rt['pickle.dumps'] / 1e6:9.2f} M "
            f"{r['speedup_vs_msgpack']:9.2f}x {r['speedup_vs_pickle']:9.2f}x"
            f" {rt['ringgen encode_batch(objects)'] / 1e6:9.2f} M {r['batch_speedup_vs_msgpack']:9.2f}x"
            f" {rt['ringgen codec.pack_into'] / 1e6:9.2f} M {r['pack_into_speedup_vs_msgpack']:9.2f}x"
            f"{'' if r['pack_into_native'] else ' (Python path)'}"
        )
    backend = "numpy" if native.lib() is None else "native"
    print(
        "\ncolumnar API: encode_batch, 64-byte payload + 256-byte header per slot, preallocated output"
        f" ({backend} encoder)"
    )
    print(
        f"{'batch':>9} {'median':>11} {'p99':>11} {'M msg/s':>9} {'payload GB/s':>13} {'object loop M/s':>16}"
    )
    for r in columnar:
        print(
            f"{r['batch']:>9} {r['median_s'] * 1e3:9.3f}ms {r['p99_s'] * 1e3:9.3f}ms "
            f"{r['msgs_per_s'] / 1e6:9.2f} {r['payload_gb_per_s']:13.3f} {r['object_api_msgs_per_s'] / 1e6:16.3f}"
        )
    print(f"\nobject API decode: one message per call, {n} messages, best of {repeats}")
    series = [
        "native decode(bytes)",
        "native decode(slot in place)",
        "generated Python decoder",
        "msgpack.unpackb(dict)",
    ]
    print(f"{'shape':38} " + " ".join(f"{k:>30}" for k in series))
    for r in object_decode:
        cells = [
            (
                f"{1e6 / r['rates'][k]:8.3f} us {r['rates'][k] / 1e6:7.2f} M/s"
                if k in r["rates"]
                else "-"
            )
            for k in series
        ]
        print(f"{r['shape']:38} " + " ".join(f"{c:>30}" for c in cells))
    if decoding:
        print(f"\ncolumnar decode: WordStat slots -> view rows ({backend} decoder)")
        print(f"{'batch':>9} {'median':>11} {'M msg/s':>9} {'per-object M/s':>15}")
        for r in decoding:
            print(
                f"{r['batch']:>9} {r['median_s'] * 1e3:9.3f}ms {r['msgs_per_s'] / 1e6:9.2f} "
                f"{r['per_object_msgs_per_s'] / 1e6:15.3f}"
            )
    if cuda:
        print("\nend to end on CUDA: send_batch (columnar encode) -> kernel -> receive_batch")
        print(
            f"{'kernel':22} {'batch':>9} {'median':>11} {'p99':>11} {'M msg/s':>9}"
            f" {'send_batch':>11} {'receive':>11}"
        )
        for r in cuda:
            print(
                f"{r['kernel']:22} {r['batch']:>9} {r['median_s'] * 1e3:9.3f}ms "
                f"{r['p99_s'] * 1e3:9.3f}ms {r['msgs_per_s'] / 1e6:9.2f}"
                f" {r['send_batch_p50_s'] * 1e3:9.3f}ms {r['receive_batch_p50_s'] * 1e3:9.3f}ms"
            )

    stamp = dt.datetime.now(dt.timezone.utc)
    result = {
        "benchmark": "bridged",
        "device": _device(),
        "commit": git_commit(),
        "gpu": _gpu_name() if cuda else None,
        "date": stamp.isoformat(timespec="seconds"),
        "quick": args.quick,
        "columnar_backend": backend,
        "object_api": objects,
        "columnar": columnar,
        "columnar_decode": decoding,
        "object_decode": object_decode,
        "cuda": cuda,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = f"bridged-{stamp:%Y%m%d-%H%M%S}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if objects and columnar:
        _plot(objects, columnar, out / f"{name}.png", cuda)
        print(f"\nwrote {out / (name + '.json')} and {name}.png")
    else:
        print(f"\nwrote {out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
