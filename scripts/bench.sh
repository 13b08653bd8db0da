#!/usr/bin/env bash
# Measures BaldurCache against its baselines in one run, on one server:
# redis-benchmark (same connection count, no pipelining), a raw hiredis loop
# in C (built here), and the Python reference adapter (baldur-framework).
# Prints a Markdown table of medians of 3 rounds.
#
# Uses BALDUR_REDIS_URL when set; otherwise starts a private redis-server on
# a free loopback port and stops it on exit. Extra arguments go to
# baldur-bench (--rounds N, --seconds S, --rss-ops N).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages libhiredis-dev redis-server redis-tools gcc
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
fi

gcc -O2 -o "$BALDUR_TMP/hiredis_loop" bench/hiredis_loop.c -lhiredis -lpthread
swift build -c release --product baldur-bench >/dev/null
bin="$(swift build -c release --show-bin-path)"

"$bin/baldur-bench" --url "$url" --hiredis-loop "$BALDUR_TMP/hiredis_loop" \
    --python "$BALDUR_TEST_PYTHON" --python-script bench/python_baseline.py "$@"
