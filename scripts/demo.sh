#!/usr/bin/env bash
# The first thing to run: builds baldur-cache in release mode and walks
# through what BaldurCache does, in about a minute.
#
# Installs what is missing (apt). Uses BALDUR_REDIS_URL when set; otherwise
# starts a private redis-server on a unix socket in a temp dir and stops it
# on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages libhiredis-dev redis-server redis-tools

make_tmp
trap stop_servers EXIT
trap 'exit 130' INT TERM

log "building baldur-cache (release; the first build takes a few minutes)"
if ! swift build -c release --product baldur-cache > "$BALDUR_TMP/build.log" 2>&1; then
    cat "$BALDUR_TMP/build.log" >&2
    log "build failed"
    exit 1
fi
bin="$(swift build -c release --show-bin-path)/baldur-cache"

if [ -z "${BALDUR_REDIS_URL:-}" ]; then
    socket="$BALDUR_TMP/demo/redis.sock"
    start_redis demo --port 0 --unixsocket "$socket" --unixsocketperm 700
    export BALDUR_REDIS_URL="unix://$socket"
fi

"$bin" demo "$@"
