#!/usr/bin/env bash
# Runs baldur-workload (100,000+ synchronous commands, with server errors,
# timeouts, killed connections and reconnects among them, then 50,000+ async
# ones on the event-loop engine: concurrent pipelined calls, cancelled calls,
# killed shared connections, request timeouts, transactions, a dropped
# subscription and a graceful shutdown) under valgrind memcheck against a
# throwaway redis-server, and fails on any definite loss.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages libhiredis-dev redis-server redis-tools valgrind

make_tmp
trap stop_servers EXIT
trap 'exit 130' INT TERM

port=$(free_port)
start_redis leak --port "$port"

swift build -c release --product baldur-workload >/dev/null
binary="$(swift build -c release --show-bin-path)/baldur-workload"

log "valgrind memcheck over baldur-workload"
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --error-exitcode=3 \
    --log-file="$BALDUR_TMP/valgrind.log" \
    "$binary" --url "redis://127.0.0.1:$port/0" --commands "${BALDUR_LEAK_COMMANDS:-100000}" \
    || { status=$?; cat "$BALDUR_TMP/valgrind.log" >&2; log "leak check failed (exit $status)"; exit 1; }
grep -E 'definitely lost|indirectly lost|ERROR SUMMARY' "$BALDUR_TMP/valgrind.log" >&2
log "leak check passed: no definite losses"
