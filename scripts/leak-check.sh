#!/usr/bin/env bash
# Runs baldur-workload (100,000+ synchronous commands, with server errors,
# timeouts, killed connections and reconnects among them, then 50,000+ async
# ones on the event-loop engine: concurrent pipelined calls, cancelled calls,
# killed shared connections, request timeouts, transactions, a dropped
# subscription and a graceful shutdown; a client left open at exit) under
# valgrind memcheck against a throwaway redis-server, and fails on any
# definite loss. Then the same
# workload, shorter, over TLS (rediss://) against a TLS-only server: TLS
# connections opened, used, killed, timed out and closed. Then the cluster
# paths against a throwaway cluster (scripts/cluster.sh): routed, split and
# fanned-out commands, per-node pipelines, SCAN across masters.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages libhiredis-dev libssl-dev openssl redis-server redis-tools valgrind

make_tmp
trap stop_servers EXIT
trap 'exit 130' INT TERM

start_server_trio leak

swift build -c release --product baldur-workload >/dev/null
binary="$(swift build -c release --show-bin-path)/baldur-workload"

# memcheck URL COMMANDS NAME : runs the workload under valgrind; fails on a definite loss or a memory error.
memcheck() {
    log "valgrind memcheck over baldur-workload ($3)"
    valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
        --errors-for-leak-kinds=definite --error-exitcode=3 \
        --log-file="$BALDUR_TMP/valgrind-$3.log" \
        "$binary" --url "$1" --commands "$2" \
        || { status=$?; cat "$BALDUR_TMP/valgrind-$3.log" >&2; log "leak check ($3) failed (exit $status)"; exit 1; }
    grep -E 'definitely lost|indirectly lost|ERROR SUMMARY' "$BALDUR_TMP/valgrind-$3.log" >&2
}
memcheck "redis://127.0.0.1:$PLAIN_PORT/0" "${BALDUR_LEAK_COMMANDS:-100000}" plain
# By IP address, as the plain run: glibc keeps a resolver state per thread
# that looked up a name (localhost), which valgrind reports as lost when that
# thread ends; the certificate names 127.0.0.1 too.
memcheck "rediss://127.0.0.1:$TLS_PORT/0?ssl_ca_certs=$TLS_DIR/ca.crt" "${BALDUR_LEAK_TLS_COMMANDS:-20000}" tls
memcheck "redis+cluster://127.0.0.1:$CLUSTER_SEED1,127.0.0.1:$CLUSTER_SEED2" "${BALDUR_LEAK_CLUSTER_COMMANDS:-20000}" cluster
log "leak check passed: no definite losses"
