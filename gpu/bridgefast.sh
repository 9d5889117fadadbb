#!/usr/bin/env bash
# Issue 14, bridged kernels on the latency path, on the lent H200 (docs/cuda.md, "The latency lane").
# Run from the repository root after `source .devicekit/setup.sh`; at most 150 s in all (the
# timeouts below, each with 3 s of grace: 5 s of nvidia-smi, 72 s of tests, 52 s of bench, 8 s of
# summary):
#   1. the gpu tests of bridged messages (test_cuda_gpu.py -k bridged): single bridged messages
#      through the lane and the rings against the cpu reference (word_stats, list_reduce, a
#      Str-in/Str-out kernel, an Outbox of bridged replies, nested orders), a corrupt and an
#      oversized message, a dead letter, handler faults on the lane               (<= 72 s)
#   2. bench/shapes.py --backend cuda --quick for the bridged kernels and vector_add (the 1:1
#      figure of the same run): p50/p90/p99/p99.9 through the lane, the generic path and the rings
#                                                                                   (<= 52 s)
# Logs and JSON under $OUT (the bench JSON is rewritten after each kernel, so a step cut short by
# its timeout keeps what it measured); the summary table is printed last.
set -u
OUT=${OUT:-/tmp/bridgefast-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export RINGGEN_CACHE_DIR=${RINGGEN_CACHE_DIR:-/tmp/bridgefast-cache}  # not under $OUT: cubins need not come back
start=$SECONDS
declare -A RC

run() {  # run NAME SECONDS COMMAND...: one bounded step, its output in $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout -s INT -k 3 "$limit" "$@" >"$OUT/$name.log" 2>&1  # INT: pytest prints its summary
    RC[$name]=$?
    echo "step $name: rc ${RC[$name]} in $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/steps.txt"
    if [ "${RC[$name]}" != 0 ]; then
        tail -n 25 "$OUT/$name.log"
    fi
}

timeout 5 nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu,power.draw \
    --format=csv >"$OUT/nvidia-smi.txt" 2>&1

run gpu-tests 72 "$PY" -m pytest -q -p no:cacheprovider -m gpu --timeout=60 -rA \
    --junitxml="$OUT/gpu-tests.xml" tests/test_cuda_gpu.py -k bridged
run bench 52 "$PY" bench/shapes.py --backend cuda --quick --only bridged,vector_add --out "$OUT"

echo
echo "gpu/bridgefast.sh: $((SECONDS - start)) s in all; logs and JSON under $OUT"
tail -n 1 "$OUT/nvidia-smi.txt" 2>/dev/null
grep -E "passed|failed|error|skipped" "$OUT/gpu-tests.log" | tail -n 1
timeout 8 "$PY" - "$OUT/shapes-cuda.json" <<'EOF'
import json, sys

try:
    doc = json.load(open(sys.argv[1]))
except (OSError, ValueError) as exc:
    sys.exit(f"no bench JSON: {exc}")
print(f"one message, public API ({doc['device']}, commit {doc['commit']}); target p50 <= 6 us")
print(f"{'series':44} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8}")
for r in doc["results"]:
    cells = " ".join(f"{r[k] * 1e6:7.2f}u" for k in ("p50_s", "p90_s", "p99_s", "p99_9_s"))
    print(f"{r['series']:44} {cells}")
EOF
