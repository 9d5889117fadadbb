"""One message through the public API, for every kernel shape, on one backend.

Issue 14 asks that no kernel shape pays more than a few microseconds on the host: a 1:1 kernel
(``vector_add``), an Outbox kernel (``threshold_filter``, one alert per reading), an ordered actor
(``bank_account``) and bridged kernels (``word_stats``: a ``Str`` in and out; ``list_reduce``: a
``List`` of 16 floats in, a direct reply; ``orders``: nested bridged structs in, a ``Str`` out; on
CUDA all of them through the latency lane, issue 14). Each round trip is
``k.send(msg)`` then ``k.receive(timeout=5.0)``; every reply is checked before timing, and the
percentiles come from an HdrHistogram (``bench/_common.summarize``).

The same loop runs with the backend's specialised single-message closures switched off where a
backend has them (``-generic`` rows), so the JSON also shows what the general path costs, and on
CUDA with the latency lane switched off (``-rings`` rows: the message through the rings alone).

    python bench/shapes.py --backend cuda            # bench/results/shapes-cuda.json
    python bench/shapes.py --backend opencl --quick
    python bench/shapes.py --backend cuda --quick --only bridged   # the bridged rows alone
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Optional

_HERE = Path(__file__).resolve().parent
# bench/cuda.py would shadow the ``cuda`` package CuPy imports; import this folder as ``bench.*``.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import ringgen as rg  # noqa: E402
from bench._common import Result, print_table, summarize, time_calls, write_json  # noqa: E402
from examples import (  # noqa: E402
    bank_account,
    list_reduce,
    orders,
    threshold_filter,
    vector_add,
    word_stats,
)

log = logging.getLogger("ringgen.bench")


def _cases():
    """(name, kernel, message for i, check of (message, reply))."""
    return [
        (
            "1:1 (vector_add)",
            vector_add.vector_add,
            lambda i: vector_add.AddRequest(id=i, a=1.5, b=2.0),
            lambda m, r: r.id == m.id and r.sum == 3.5,
        ),
        (
            "outbox (threshold_filter)",
            threshold_filter.threshold_filter,
            lambda i: threshold_filter.Reading(sensor=7, seq=i, value=60.0),
            lambda m, r: r.seq == m.seq and r.level == 1,
        ),
        (
            "ordered (bank_account)",
            bank_account.bank_account,
            lambda i: bank_account.Transaction(id=i, amount=1),
            lambda m, r: r.id == m.id and r.accepted,
        ),
        (
            "bridged (word_stats)",
            word_stats.word_stats,
            lambda i: word_stats.Word(id=i, text="unbounded"),
            lambda m, r: r.id == m.id and r.text == "unbounded" and r.negated,
        ),
        (
            "bridged in, direct out (list_reduce)",
            list_reduce.list_reduce,
            lambda i: list_reduce.Samples(id=i, values=[float(j) for j in range(16)]),
            lambda m, r: r.id == m.id and r.count == 16 and r.total == 120.0,
        ),
        (
            "bridged nested (orders)",
            orders.orders,
            lambda i: orders.Order(
                id=i,
                customer=orders.Customer(id=3, name="Ada", tier="gold"),
                lines=[orders.OrderLine(sku="GIFT-7", quantity=2, unit_price=5.0)],
            ),
            lambda m, r: r.order_id == m.id and r.customer == "Ada" and r.gift_cards == 1,
        ),
    ]


def measure(
    backend: str, repeat: int, only: str = "", save: Optional[Callable[[list], None]] = None
) -> list[Result]:
    """The rows of every case whose name contains one of the comma-separated words of ``only``
    (every case by default); ``save(rows)`` after each case, so a run cut short keeps its rows."""
    rows: list[Result] = []
    words = [w for w in only.split(",") if w]
    for name, kernel, make, ok in _cases():
        if words and not any(w in name for w in words):
            continue
        try:
            k = rg.launch(kernel, backend=backend)
        except rg.BackendUnavailableError as exc:
            log.warning("%s: skipped, %s", name, exc.message)
            continue
        with k:
            box = {"i": 0}

            def one():
                box["i"] += 1
                k.send(make(box["i"]))
                return k.receive(timeout=5.0)

            for i in range(200):  # checked before it is timed
                m = make(10_000_000 + i)
                k.send(m)
                r = k.receive(timeout=5.0)
                if not ok(m, r):
                    raise SystemExit(f"{backend} {name}: wrong reply {r!r} to {m!r}")
            rows.append(Result(name, 1, summarize(time_calls(one, repeat, 100))))
            fast = (getattr(k, "_fast_cls", None), getattr(k, "_fast_take", None))
            if any(f is not None for f in fast):
                k._fast_cls = k._fast_take = None
                try:
                    rows.append(
                        Result(name + " -generic", 1, summarize(time_calls(one, repeat, 100)))
                    )
                finally:
                    k._fast_cls, k._fast_take = fast
            lane = getattr(k, "_lane", None)
            if lane is not None:
                # The same round trip with the latency lane off (the rings alone), in the same run.
                k._lane = None
                k._setup_fast_paths()
                try:
                    rows.append(
                        Result(name + " -rings", 1, summarize(time_calls(one, repeat, 100)))
                    )
                finally:
                    k._lane = lane
                    k._setup_fast_paths()
            log.info("%s: p50 %.1f us", name, rows[-1].seconds["p50"] * 1e6)
        if save is not None:
            save(rows)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--quick", action="store_true", help="2,000 round trips per row, not 20,000")
    ap.add_argument("--out", type=Path, default=None, help="folder for the JSON")
    ap.add_argument(
        "--only",
        default="",
        help="only the cases whose name contains one of these comma-separated words "
        "(e.g. bridged,vector_add)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = args.backend
    name = f"shapes-{args.backend}"
    rows = measure(
        args.backend,
        2_000 if args.quick else 20_000,
        args.only,
        save=lambda rows: write_json(name, rows, device, directory=args.out),
    )
    try:
        from ringgen.runtime.probes import describe  # noqa: PLC0415 - names the device
        from ringgen.targets import by_name  # noqa: PLC0415

        if args.backend != "auto":
            report = describe(by_name(args.backend))
            device = f"{args.backend}: " + ", ".join(
                f"{d.name} ({d.platform})" for d in report.devices
            )
    except Exception as exc:  # the device name is a label; the figures stand without it
        log.info("device description unavailable: %s", exc)
    print_table(rows, f"one message per kernel shape: {device}", long=True)
    print(write_json(name, rows, device, directory=args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
