#!/usr/bin/env bash
# Runs every fuzz target in turn, one at a time, for SECONDS each (default 600) or RUNS
# executions (default 10 million), whichever comes first, with the memory limits the targets
# must hold to; logs go to fuzz/logs/<target>.log. NICE (default 0) lowers the priority.
#   [RUNS=N] [NICE=19] fuzz/run_all.sh [SECONDS] [TARGET...]
set -u
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(pth_legacy pth_zip npz pickle image)
mkdir -p fuzz/logs
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    RUSTC_BOOTSTRAP=1 nice -n "${NICE:-0}" cargo fuzz run --codegen-units 16 "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -runs="${RUNS:-10000000}" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1
    echo "$t exit $?: $(grep -E 'stat::number_of_executed_units|^Done' "fuzz/logs/$t.log" | tr '\n' ' ')"
done
