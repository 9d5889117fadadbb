#!/usr/bin/env bash
# Issue 16 item 1 on the lent H200: topics with a drop policy and the host as publisher and
# subscriber under shared_memory (docs/graphs.md, "The host and drop policies under
# `shared_memory`"). Run from the repository root after `source .devicekit/setup.sh`; at most 145 s
# in all (BUDGET), each step bounded by `timeout` and by what is left of the budget, and every
# test by pytest's --timeout (a hung kernel dumps its stacks instead of eating the budget):
#   1. tests/test_topics_device_host.py on CUDA (-m gpu: the host subscribing beside 1, 4, 16
#      kernel subscribers, publishing alone and beside a kernel, drops, Block back-pressure,
#      stats().topics)                                                           (<= 72 s)
#   2. tests/test_topics_device.py on CUDA (-m gpu, both strategies: the kernel-only topics, the
#      drop-policy graph now run by the default strategy, atomic_queue's refusals) (<= 38 s)
#   3. a short figure: 65,536 messages through dfan4 and dwatch4 (the same graph with the host
#      subscribed), 3 rounds each: time for every reply and every host copy      (<= 22 s)
# Logs and JSON under $OUT (pytest-*.xml, *.log, topicdev-bench.json); the summary table is last.
set -u
OUT=${OUT:-/tmp/topicdev-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
T0=$(date +%s)
END=$((T0 + ${BUDGET:-145}))
declare -A RC
step() {  # step NAME SECONDS COMMAND...: bounded by SECONDS and by what is left of BUDGET
    local name=$1 want=$2 left lim t0
    shift 2
    left=$((END - $(date +%s) - 6))
    lim=$((want < left ? want : left))
    if [ "$lim" -lt 5 ]; then
        RC[$name]=skipped
        echo "step $name: skipped (budget spent)" | tee -a "$OUT/steps.txt"
        return
    fi
    t0=$(date +%s)
    timeout -s INT -k 3 "$lim" "$@" >"$OUT/$name.log" 2>&1
    RC[$name]=$?
    echo "step $name: rc ${RC[$name]} in $(($(date +%s) - t0)) s (limit $lim s)" | tee -a "$OUT/steps.txt"
    if [ "${RC[$name]}" != 0 ]; then
        tail -n 25 "$OUT/$name.log"
    fi
}
P="$PY -m pytest -q -p no:cacheprovider --tb=short -rfE -m gpu --timeout-method=thread"

timeout 5 nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu \
    --format=csv >"$OUT/nvidia-smi.txt" 2>&1

step host 72 $P --timeout=40 --junitxml="$OUT/pytest-host.xml" \
    tests/test_topics_device_host.py -k cuda
step kernels 38 $P --timeout=25 --junitxml="$OUT/pytest-kernels.xml" \
    tests/test_topics_device.py -k cuda
step bench 22 "$PY" - "$OUT/topicdev-bench.json" <<'EOF'
import json, sys, time
sys.path.insert(0, "tests")
import numpy as np
import ringgen as rg
import topic_device_kernels as dk

N, results = 65536, []


def _drain(h, sub, replies, copies):
    """Every exit reply and host copy, read in turns (a full Block subscription holds the exit's
    replies behind its copies: they share the kernel's output queue)."""
    got, took, end = 0, 0, time.perf_counter() + 10.0
    while got < replies or took < copies:
        got += len(h.receive_batch(65536, timeout=0.001))
        if sub is not None:
            took += len(sub.receive_batch(65536, timeout=0))
        if time.perf_counter() > end:
            raise RuntimeError(f"stalled at {got} of {replies} replies, {took} of {copies} copies")


for graph, watched in ((dk.fan(4), False), (dk.watched(4), True)):
    msgs = np.zeros(N, rg.dtype_of(dk.Score))
    msgs["id"] = np.arange(N)
    with rg.launch(graph, backend="cuda", capacity=N) as h:
        sub = h.subscribe("scores") if watched else None
        for r in range(3):
            t = time.perf_counter()
            h.send_batch(msgs, timeout=20)
            _drain(h, sub, 4 * N, N if watched else 0)
            dt = time.perf_counter() - t
            results.append({"graph": graph.label, "host_subscribes": watched, "round": r,
                            "seconds": dt, "messages_per_s": N / dt})
            json.dump(results, open(sys.argv[1], "w"), indent=1)
        h.terminate(timeout=20)
print(json.dumps(results, indent=1))
EOF

echo
echo "gpu/topicdev.sh: $(($(date +%s) - T0)) s in all; logs and JSON under $OUT"
tail -n 1 "$OUT/nvidia-smi.txt" 2>/dev/null
timeout 5 "$PY" - "$OUT" <<'EOF'
import glob, json, os, sys
import xml.etree.ElementTree as ET
out = sys.argv[1]
print(f"{'step':<10} {'tests':>6} {'passed':>7} {'failed':>7} {'skipped':>8} {'seconds':>8}")
for name in ("host", "kernels"):
    path = os.path.join(out, f"pytest-{name}.xml")
    if not os.path.exists(path):
        print(f"{name:<10} {'(no junit xml: cut short or not run)':>40}")
        continue
    s = ET.parse(path).getroot()
    s = s if s.tag == "testsuite" else s.find("testsuite")
    n, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
    print(f"{name:<10} {n:>6} {n - f - e - k:>7} {f + e:>7} {k:>8} {float(s.get('time', 0)):>8.1f}")
path = os.path.join(out, "topicdev-bench.json")
if os.path.exists(path):
    print(f"\n{'graph':<10} {'host sub':>8} {'best M msg/s':>13} (65,536 messages, 4 kernel subscribers)")
    rows = json.load(open(path))
    for g, watched in {r["graph"]: r["host_subscribes"] for r in rows}.items():
        best = max(r["messages_per_s"] for r in rows if r["graph"] == g)
        print(f"{g:<10} {str(watched):>8} {best / 1e6:>13.2f}")
EOF
