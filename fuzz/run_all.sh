#!/usr/bin/env bash
# Runs every fuzz target in turn, one at a time, for SECONDS each (default 600) or RUNS
# executions (default 10 million), whichever comes first, with the memory limits the targets
# must hold to; logs go to fuzz/logs/<target>.log. NICE (default 0) lowers the priority.
# With CPU=1, SECONDS is CPU time of the fuzzer process (user + system, read from /proc), not
# wall time: on a shared machine at low priority that is the budget that counts; the fuzzer is
# stopped with SIGINT (libFuzzer then prints its final stats) once it has used that much.
# Under Linux's autogroup scheduling (kernel.sched_autogroup_enabled=1) a process's nice value
# only ranks it within its session: started with `setsid`, this script also lowers its own
# session's autogroup to NICE, so that the fuzzers really yield to the builds beside them.
# TIMEOUT (default 10) is libFuzzer's per-input limit in wall seconds: raise it with NICE on a busy
# machine, where a starved fuzzer can pass 10 s on an input that takes 1 s of CPU.
#   [RUNS=N] [NICE=19] [CPU=1] [TIMEOUT=30] [setsid] fuzz/run_all.sh [SECONDS] [TARGET...]
set -u
cd "$(dirname "$0")/.."
if [ -n "${NICE:-}" ] && [ "$(ps -o sid= -p $$ | tr -d ' ')" = "$$" ]; then
    echo "$NICE" >/proc/self/autogroup 2>/dev/null || true
fi
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(pth_legacy pth_zip npz pickle image)
mkdir -p fuzz/logs
ticks=$(getconf CLK_TCK)

# CPU seconds (user + system) used so far by process $1, or nothing when it is gone.
cpu_seconds() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    # fields after the ")" that ends the command name: utime is the 12th, stime the 13th
    set -- ${stat##*) }
    echo $(( (${12} + ${13}) / ticks ))
}

for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log="fuzz/logs/$t.log"
    wall_limit=$seconds
    [ "${CPU:-0}" = 1 ] && wall_limit=$((seconds * 100))
    start=$(date +%s)
    RUSTC_BOOTSTRAP=1 nice -n "${NICE:-0}" cargo fuzz run --codegen-units 16 "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -runs="${RUNS:-10000000}" -max_total_time="$wall_limit" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout="${TIMEOUT:-10}" \
        -print_final_stats=1 >"$log" 2>&1 &
    cargo_pid=$!
    used=0
    if [ "${CPU:-0}" = 1 ]; then
        fuzzer=""
        while kill -0 "$cargo_pid" 2>/dev/null; do
            sleep 10
            [ -z "$fuzzer" ] && fuzzer=$(pgrep -P "$cargo_pid" -f "release/$t" | head -1)
            [ -z "$fuzzer" ] && continue
            now=$(cpu_seconds "$fuzzer")
            [ -n "$now" ] && used=$now
            if [ "$used" -ge "$seconds" ]; then
                kill -INT "$fuzzer"
                break
            fi
        done
    fi
    wait "$cargo_pid"
    code=$?
    echo "$t exit $code: wall $(( $(date +%s) - start )) s, cpu ${used} s: $(grep -E 'stat::number_of_executed_units|^Done' "$log" | tr '\n' ' ')"
done
