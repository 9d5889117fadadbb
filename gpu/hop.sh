#!/usr/bin/env bash
# Issue 15's hop targets on the lent H200 (bench/graph.py --backend cuda; bench/NOTES-graph.md).
# Run from the repository root after `source .devicekit/setup.sh`; at most 148 s in all (the
# timeouts below, each with 3 s of grace, 5 s of nvidia-smi, 8 s of summary):
#   1. the paired per-hop figure of both strategies (1 and 8 stages launched alternately, 5 pairs)
#      at batch 1 and 4,096                                                     (<= 36 s)
#   2. the 4-stage ratios at 65,536 (and 4,096), copying and zero-copy APIs    (<= 28 s)
#   3. atomic_queue's hop variants (-D defines), 5 pairs each at batch 1, and the
#      hop trace of the "trace" variant (per stage: hop ns, cycles a poll)        (<= 62 s)
# Each step writes $OUT/<step>.json (rewritten after each measurement, so a step cut short by its
# timeout keeps what it measured) and $OUT/<step>.log; the summary table is printed last.
set -u
OUT=${OUT:-/tmp/hop-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
VARIANTS=default,trace,poll2,gpu-scope,all,take-spin,count-after,hot,short-sleep
start=$SECONDS
declare -A RC

step() {  # step NAME SECONDS ARGS...: one bench/graph.py run, bounded
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout -k 3 "$limit" "$PY" bench/graph.py --backend cuda --quick --name "$name" \
        --out "$OUT" "$@" >"$OUT/$name.log" 2>&1
    RC[$name]=$?
    echo "step $name: rc ${RC[$name]} in $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/steps.txt"
    if [ "${RC[$name]}" != 0 ]; then
        tail -n 15 "$OUT/$name.log"
    fi
}

timeout 5 nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
    --format=csv >"$OUT/nvidia-smi.txt" 2>&1

step hop-paired 36 --lengths "" --pairs 5 --pair-batches 1,4096
step hop-ratio 28 --lengths 1,4 --batches 4096,65536 --pairs 0 --apis copy,zc
step hop-variants 62 --lengths "" --strategies atomic_queue --pairs 5 --pair-batches "" \
    --variants "$VARIANTS"

echo
echo "gpu/hop.sh: $((SECONDS - start)) s in all; logs and JSON under $OUT"
cat "$OUT/nvidia-smi.txt" 2>/dev/null | tail -n 1
timeout 8 "$PY" bench/graph_hop.py "$OUT/hop-paired.json" "$OUT/hop-ratio.json" \
    "$OUT/hop-variants.json"
