#!/usr/bin/env bash
# The performance guard: instructions per operation, counted by callgrind,
# against the committed baseline (bench/perf-baseline.tsv). Timings on these
# shared machines are noise; instruction counts of the same binary and
# inputs repeat, whatever else the machine does.
#
# Each workload (`baldur-bench --profile`, see Sources/BaldurBench/Profile.swift)
# runs twice under callgrind, N and 2N operations; the difference divided by
# N (and by the keys or commands per call) is its cost per operation, start-up
# and setup cancelled out. The guard fails when a workload costs more than
# its baseline by more than its tolerance, printing the workload, the
# baseline, the new count and the ratio.
#
#   scripts/perf-guard.sh              check against the baseline
#   scripts/perf-guard.sh --update     write the counts measured now, from a
#                                      clean build, as the baseline (commit it
#                                      on its own, saying why)
#   scripts/perf-guard.sh --only W,W   only these workloads
#   scripts/perf-guard.sh --repeat K   measure each workload K times and print
#                                      the spread (to derive tolerances)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

baseline_file=bench/perf-baseline.tsv
update=0
only=""
repeat=1
while [ $# -gt 0 ]; do
    case "$1" in
        --update) update=1 ;;
        --only) only="$2"; shift ;;
        --repeat) repeat="$2"; shift ;;
        *) log "unknown argument $1"; exit 2 ;;
    esac
    shift
done

ensure_packages libhiredis-dev libssl-dev openssl redis-server redis-tools valgrind

make_tmp
trap stop_servers EXIT
trap 'exit 130' INT TERM

start_server_trio guard

# The baseline comes from a clean build: an incremental release build in a
# working tree was seen to count 3% fewer instructions for a raw GET than a
# clean build of the same commit (which CI makes from its fresh clone).
scratch=()
if [ "$update" = 1 ]; then
    rm -rf .build-perf
    scratch=(--scratch-path .build-perf)
fi
swift build -c release --product baldur-bench "${scratch[@]}" >/dev/null
bench="$(swift build -c release --show-bin-path "${scratch[@]}")/baldur-bench"
arguments=(--url "redis://127.0.0.1:$PLAIN_PORT/0"
    --tls-url "rediss://127.0.0.1:$TLS_PORT/0?ssl_ca_certs=$TLS_DIR/ca.crt"
    --cluster-url "redis+cluster://127.0.0.1:$CLUSTER_SEED1,127.0.0.1:$CLUSTER_SEED2")

# WORKLOAD  OPERATIONS-PER-CALL  N  TOLERANCE-%  RUNS
# The tolerances come from the spread of repeated runs (--repeat 5, on this
# machine kind): the blocking workloads repeat to within 0.1% (the near
# cache's to 0.5%), so 2% catches a 10% slowdown with room to spare. The
# async ones vary with how the event loop's thread and the caller interleave
# under valgrind's scheduler: single runs of asyncraw spread up to 6%,
# asyncget 2%, asyncnearhit 0.5%; they are measured RUNS times and the median
# compared, whose spread over three sets of runs stayed within 2%: 5%.
# asyncraw256 (256 tasks, many replies to a read) repeats to within 0.1%,
# the loop's batches being large whatever the interleaving: 2%, one run.
workloads=(
    "rawget 1 2000 2 1"
    "get 1 2000 2 1"
    "set 1 2000 2 1"
    "pipeline 100 200 2 1"
    "mget100 100 200 2 1"
    "mset100ttl 100 100 2 1"
    "nearhit 1 20000 2 1"
    "asyncnearhit 1 20000 3 1"
    "tlsget 1 1000 2 1"
    "clustermget100 100 100 2 1"
    "asyncraw 1 6000 5 3"
    "asyncget 1 6000 5 3"
    "asyncraw256 256 200 2 1"
)

# instructions WORKLOAD OPS EXTRA... : every instruction the process ran (all threads).
instructions() {
    local workload=$1 ops=$2; shift 2
    local out="$BALDUR_TMP/callgrind.$workload.$ops"
    # Deterministic hashing: a Dictionary's probes otherwise vary per process.
    SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bench" "${arguments[@]}" --profile "$workload" --ops "$ops" "$@" >/dev/null 2>"$out.log" \
        || { cat "$out.log" >&2; log "$workload under callgrind failed"; exit 1; }
    awk '/^summary:/ { print $2 }' "$out"
}

# per_operation WORKLOAD UNIT N : instructions per operation, (I(2N) - I(N)) / (N * UNIT).
per_operation() {
    local small large
    small=$(instructions "$1" "$3")
    large=$(instructions "$1" $(($3 * 2)))
    awk -v s="$small" -v l="$large" -v n="$3" -v u="$2" 'BEGIN { printf "%.0f\n", (l - s) / (n * u) }'
}

declare -A baseline
if [ -f "$baseline_file" ]; then
    while IFS=$'\t' read -r name count _; do
        case "$name" in ''|'#'*|workload) continue ;; esac
        baseline[$name]=$count
    done <"$baseline_file"
fi

failed=0
declare -A baseline_now
printf '| workload | baseline | now | ratio | tolerance | |\n|---|---:|---:|---:|---:|---|\n'
for entry in "${workloads[@]}"; do
    read -r name unit ops tol runs <<<"$entry"
    if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
    [ "$repeat" -gt "$runs" ] && runs=$repeat
    counts=()
    for _ in $(seq 1 "$runs"); do counts+=("$(per_operation "$name" "$unit" "$ops")"); done
    now=$(printf '%s\n' "${counts[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    spread=""
    if [ "$runs" -gt 1 ]; then
        spread=$(printf '%s\n' "${counts[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "runs %s..%s (%.2f%%)", a[1], a[NR], (a[NR] - a[1]) * 100 / a[1] }')
    fi
    baseline_now[$name]=$now
    base=${baseline[$name]:-}
    if [ -z "$base" ]; then
        printf '| %s | - | %s | - | - | new %s |\n' "$name" "$now" "$spread"
        continue
    fi
    verdict=$(awk -v b="$base" -v n="$now" -v t="$tol" 'BEGIN {
        r = n / b
        if (r > 1 + t / 100) print "RISE"; else if (r < 1 - t / 100) print "lower"; else print "ok" }')
    ratio=$(awk -v b="$base" -v n="$now" 'BEGIN { printf "%.3f", n / b }')
    printf '| %s | %s | %s | %sx | %s%% | %s %s |\n' "$name" "$base" "$now" "$ratio" "$tol" "$verdict" "$spread"
    if [ "$verdict" = RISE ]; then
        log "$name costs $now instructions per operation, $ratio x its baseline of $base (tolerance $tol%)"
        failed=1
    fi
done

if [ "$update" = 1 ]; then
    # Workloads not measured now (--only) keep their baseline.
    {
        printf '# Instructions per operation, as scripts/perf-guard.sh counts them (the tolerances are\n'
        printf '# in the script). Written by --update; change it only in a commit of its own, saying why.\n'
        printf 'workload\tinstructions\n'
        for entry in "${workloads[@]}"; do
            read -r name _ <<<"$entry"
            count=${baseline_now[$name]:-${baseline[$name]:-}}
            [ -n "$count" ] && printf '%s\t%s\n' "$name" "$count"
        done
    } >"$baseline_file"
    log "wrote $baseline_file"
    exit 0
fi
if [ "$failed" = 1 ]; then
    log "performance guard failed: a workload costs more than its baseline allows (see above)"
    exit 1
fi
log "performance guard passed"
