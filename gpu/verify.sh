#!/usr/bin/env bash
# The checks the 2026-12-04 sessions could not finish on the lent H200, in priority order, each
# bounded (pytest's own per-test timeout dumps the stacks of a hung test; `timeout -s INT` lets
# pytest print its summary). Run from the repository root after `source .devicekit/setup.sh`;
# logs under $OUT (log.txt, JSON of the benches). At most BUDGET seconds (default 560) in all.
set -u
OUT=${OUT:-/tmp/verify-out}
mkdir -p "$OUT"
L=$OUT/log.txt
T0=$(date +%s)
END=$((T0 + ${BUDGET:-560}))
step() {  # step SECONDS COMMAND...: run it bounded by SECONDS and by what is left of BUDGET
    local want=$1 left lim t0 rc
    shift
    left=$((END - $(date +%s)))
    lim=$((want < left ? want : left))
    if [ "$lim" -lt 5 ]; then echo "=== SKIP $*" >>"$L"; return; fi
    t0=$(date +%s)
    echo "=== $* (limit $lim s)" >>"$L"
    timeout -s INT "$lim" "$@" >>"$L" 2>&1
    rc=$?
    echo "=== rc=$rc $(($(date +%s) - t0)) s" >>"$L"
}
P="python3 -m pytest -q -p no:cacheprovider --tb=short -rfE -m gpu"
W=tests/test_runtime_watchdog.py
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv >>"$L" 2>&1
step 30 python3 tools/cuda_two_resident_preloaded_probe.py
step 45 $P -s --timeout=25 --timeout-method=thread "$W::test_a_stalled_drain_still_gives_up_by_the_terminate_rule[cuda]"
step 60 $P -s --timeout=40 --timeout-method=thread "$W::test_a_stalled_kernel_that_makes_progress_is_active_again[cuda]"
step 60 $P -s --timeout=25 --timeout-method=thread tests/test_telemetry.py
step 90 python3 bench/topics.py --backends cuda --strategy shared_memory --repeat 3 --out "$OUT"
step 60 $P --timeout=40 tests/test_causal_device.py tests/test_cuda_fault.py
step 80 $P --timeout=25 --timeout-method=thread "$W" -k "slow_but or idle_kernel or switches_the"
tail -n 60 "$L"
