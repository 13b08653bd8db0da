#!/usr/bin/env bash
# Measures BaldurCache against its baselines in one run, on one server:
# redis-benchmark (same connection count, no pipelining), a raw hiredis loop
# in C (built here), and the Python reference adapter (baldur-framework).
# Prints a Markdown table of medians of 3 rounds.
#
# Uses BALDUR_REDIS_URL when set; otherwise starts a private redis-server on
# a free loopback port, its TLS twin (certificates from tls-certs.sh) for
# the TLS-vs-plain rows, and a cluster (cluster.sh) for the cluster-vs-one-
# server rows, and stops them on exit. Extra arguments go to
# baldur-bench (--rounds N, --seconds S, --rss-ops N, --only TEXT).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages libhiredis-dev libssl-dev openssl redis-server redis-tools gcc
ensure_python_reference

make_tmp
trap stop_servers EXIT
trap 'exit 130' INT TERM

if [ -n "${BALDUR_REDIS_URL:-}" ]; then
    url="$BALDUR_REDIS_URL"
else
    port=$(free_port)
    start_redis bench --port "$port"
    url="redis://127.0.0.1:$port/0"
    tls_dir="$BALDUR_TMP/certs"
    bash scripts/tls-certs.sh "$tls_dir"
    tls_port=$(free_port)
    start_tls_redis bench-tls "$tls_port" "$tls_dir"
    extra=(--tls-url "rediss://127.0.0.1:$tls_port/0?ssl_ca_certs=$tls_dir/ca.crt")
    # The cluster rows: three masters and three replicas (scripts/cluster.sh).
    bash scripts/cluster.sh "$BALDUR_TMP/cluster"
    mapfile -t cluster_pids <"$BALDUR_TMP/cluster/pids"
    BALDUR_PIDS+=("${cluster_pids[@]}")
    read -r cluster1 cluster2 _ <"$BALDUR_TMP/cluster/ports"
    extra+=(--cluster-url "redis+cluster://127.0.0.1:$cluster1,127.0.0.1:$cluster2")
fi

gcc -O2 -o "$BALDUR_TMP/hiredis_loop" bench/hiredis_loop.c -lhiredis -lpthread
swift build -c release --product baldur-bench >/dev/null
bin="$(swift build -c release --show-bin-path)"

"$bin/baldur-bench" --url "$url" --hiredis-loop "$BALDUR_TMP/hiredis_loop" \
    --python "$BALDUR_TEST_PYTHON" --python-script bench/python_baseline.py ${extra[@]+"${extra[@]}"} "$@"
