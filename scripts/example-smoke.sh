#!/usr/bin/env bash
# Builds Examples/OrdersService (Hummingbird 2 on BaldurCache, a path
# dependency on this package) and smoke-tests it against a throwaway
# redis-server, as a new user's service would be run:
#   1. 50 concurrent GET /users/7: one loader run (getOrSet), 50 equal answers;
#   2. 50 concurrent POST /jobs/1/orders under the job's lock: numbers 1...50, each once;
#   3. SIGTERM while another process holds a job's lock and a request waits
#      for it: the service exits 0 within 2 s;
#   4. Redis gone: the getOrSet route fails open (documented: the loader's
#      value, 200), the locked route answers 503 (the connection error)
#      within the configured timeouts, and SIGTERM still exits 0 within 2 s.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages libhiredis-dev libssl-dev redis-server redis-tools curl

make_tmp
service_pid=""
cleanup() {
    [ -n "$service_pid" ] && kill -9 "$service_pid" 2>/dev/null || true
    stop_servers
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { log "FAILED: $*"; [ -f "$BALDUR_TMP/service.log" ] && tail -20 "$BALDUR_TMP/service.log" >&2; exit 1; }

redis_port=$(free_port)
start_redis smoke --port "$redis_port"
redis_pid=${BALDUR_PIDS[-1]}

# The README's example is compiled as the example package's ReadmeExample target: it must be the same code.
python3 - <<'PY' || fail "README.md's example and Examples/OrdersService/Sources/ReadmeExample differ"
import re, sys
readme = re.search(r"## Example\n\n```swift\n(.*?)```", open("README.md").read(), re.S).group(1)
compiled = open("Examples/OrdersService/Sources/ReadmeExample/ReadmeExample.swift").read().split("\n", 2)[2]
sys.exit(0 if readme == compiled else 1)
PY

log "building Examples/OrdersService"
swift build --package-path Examples/OrdersService >"$BALDUR_TMP/build.log" 2>&1 || { cat "$BALDUR_TMP/build.log" >&2; fail "the example did not build"; }
if grep -E "warning:" "$BALDUR_TMP/build.log" | grep -v "unhandled; explicitly declare" | grep -q "BaldurCache\|OrdersService"; then
    grep -E "warning:" "$BALDUR_TMP/build.log" >&2
    fail "the example built with warnings in its code or ours"
fi
binary="$(swift build --package-path Examples/OrdersService --show-bin-path)/OrdersService"

http_port=""
start_service() {
    http_port=$(free_port)
    PORT=$http_port BALDUR_REDIS_URL="redis://127.0.0.1:$redis_port/0" ORDERS_PREFIX="smoke:$$:" \
        BALDUR_REDIS_SOCKET_TIMEOUT=1 BALDUR_REDIS_SOCKET_CONNECT_TIMEOUT=1 \
        "$binary" >>"$BALDUR_TMP/service.log" 2>&1 &
    service_pid=$!
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$http_port/stats" >/dev/null 2>&1 && return 0
        kill -0 "$service_pid" 2>/dev/null || fail "the service exited at start"
        sleep 0.1
    done
    fail "the service did not answer within 10 s"
}

# stop_service_within SECONDS : SIGTERM, then the exit status must be 0 within SECONDS.
stop_service_within() {
    local limit=$1 started status
    started=$(date +%s%N)
    kill -TERM "$service_pid"
    for _ in $(seq 1 $((limit * 20))); do
        kill -0 "$service_pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$service_pid" 2>/dev/null; then fail "the service still ran ${limit} s after SIGTERM"; fi
    status=0; wait "$service_pid" || status=$?
    service_pid=""
    [ "$status" = 0 ] || fail "the service exited $status after SIGTERM"
    log "SIGTERM: exited 0 after $(( ($(date +%s%N) - started) / 1000000 )) ms"
}

start_service
base="http://127.0.0.1:$http_port"

# 1. getOrSet under 50 concurrent misses.
# wait_all MESSAGE PID... : waits for each request; any failure fails the test with MESSAGE.
wait_all() { local message=$1 pid; shift; for pid in "$@"; do wait "$pid" || fail "$message"; done; }
requests=()
for i in $(seq 1 50); do curl -fsS -w "\\n" "$base/users/7" >"$BALDUR_TMP/user.$i" & requests+=($!); done
wait_all "a GET /users/7 failed" "${requests[@]}"
# Compared as JSON: the encoder's member order varies from one response to the next.
python3 -c 'import json, sys; answers = [json.load(open(f)) for f in sys.argv[1:]]; sys.exit(0 if len(answers) == 50 and all(a == {"id": 7, "name": "user 7"} for a in answers) else 1)' "$BALDUR_TMP"/user.* \
    || fail "GET /users/7 gave other answers: $(sort -u "$BALDUR_TMP"/user.* | head -3)"
loads=$(curl -fsS "$base/stats")
[ "$loads" = '{"loads":1}' ] || fail "50 concurrent misses ran the loader: $loads (want 1)"
log "getOrSet: 50 concurrent GETs, one load"

# 2. A lock around an increment, 50 concurrent POSTs.
requests=()
for i in $(seq 1 50); do curl -fsS -w "\\n" -X POST "$base/jobs/1/orders" >"$BALDUR_TMP/order.$i" & requests+=($!); done
wait_all "a POST /jobs/1/orders failed" "${requests[@]}"
numbers=$(python3 -c 'import json, sys; print(" ".join(str(n) for n in sorted(json.load(open(f))["number"] for f in sys.argv[1:])))' "$BALDUR_TMP"/order.*)
[ "$numbers" = "$(seq 1 50 | tr '\n' ' ' | sed 's/ $//')" ] || fail "orders under the lock were numbered: $numbers"
log "lock: 50 concurrent POSTs numbered 1...50"

# 2b. Hummingbird's PersistDriver on the adapter: create once, read with its TTL.
status=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT --data-binary 'hello' "$base/notes/1")
[ "$status" = 201 ] || fail "PUT /notes/1 answered $status (want 201)"
status=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT --data-binary 'again' "$base/notes/1")
[ "$status" -ge 400 ] || fail "a second PUT /notes/1 (create) answered $status: PersistError.duplicate expected"
curl -fsS "$base/notes/1" >"$BALDUR_TMP/note" || fail "GET /notes/1 failed"
python3 -c 'import json, sys; n = json.load(open(sys.argv[1])); sys.exit(0 if n["text"] == "hello" and 55 < n["secondsLeft"] <= 60 else 1)' "$BALDUR_TMP/note" \
    || fail "GET /notes/1 answered $(cat "$BALDUR_TMP/note")"
stored=$(redis-cli -p "$redis_port" GET "smoke:$$:note:1")
[ "$stored" = '{"text":"hello"}' ] || fail "the note is stored as $stored"
log "PersistDriver: create, duplicate refused, read back with its TTL; stored as $stored"

# 3. SIGTERM while another process holds the lock and a request waits for it.
redis-cli -p "$redis_port" SET "smoke:$$:job:2" "another-process" PX 60000 NX >/dev/null
curl -sS -o /dev/null -X POST "$base/jobs/2/orders" >/dev/null 2>&1 &
sleep 0.5
stop_service_within 2

# 4. Redis gone: getOrSet fails open, the lock fails with the connection error, SIGTERM still works.
start_service
base="http://127.0.0.1:$http_port"
kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
started=$(date +%s)
get_status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 30 "$base/users/8" || true)
post_status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 30 -X POST "$base/jobs/3/orders" || true)
elapsed=$(( $(date +%s) - started ))
[ "$get_status" = 200 ] || fail "GET with Redis down answered $get_status (want 200: getOrSet fails open to its loader)"
[ "$post_status" = 503 ] || fail "POST with Redis down answered $post_status (want 503: the lock's connection error)"
[ "$elapsed" -le 15 ] || fail "with Redis down the two requests took ${elapsed} s (want within the 5 s lock wait and 1 s timeouts)"
log "Redis down: GET answered from its loader (fail-open), POST 503, both within ${elapsed} s"
stop_service_within 2
log "example smoke test passed"
