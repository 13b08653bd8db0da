# Shared helpers for the scripts in this folder. Source it; do not run it.
# Every server started here binds to 127.0.0.1 (or a unix socket) and is
# stopped by PID through stop_servers, which the caller traps on EXIT.

BALDUR_PIDS=()
BALDUR_TMP=""

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# group_failed DIR MESSAGE : for the scripts that start a group of servers
# (cluster.sh, sentinel-group.sh) into their array `pids`: logs MESSAGE,
# kills what started, marks DIR/failed for the waiting caller, exits 1.
group_failed() {
    log "$2"
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    touch "$1/failed"
    exit 1
}

# ensure_packages PKG... : apt-get install the Debian packages that are missing.
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_python_reference : a virtualenv with the Python reference adapter, for interop tests and baselines.
ensure_python_reference() {
    local venv="${BALDUR_PYTHON_VENV:-$HOME/.cache/baldur-cache/pyref}"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import baldur.adapters.cache.redis_adapter, redis' 2>/dev/null; then
        log "installing baldur-framework[redis] into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check 'baldur-framework[redis]'
    fi
    export BALDUR_TEST_PYTHON="$venv/bin/python"
}

# make_tmp : a private temp dir for sockets, configs and logs.
make_tmp() {
    BALDUR_TMP=$(mktemp -d "${TMPDIR:-/tmp}/baldur-cache.XXXXXX")
}

# free_port : prints a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_redis NAME ARGS... : starts redis-server with ARGS in $BALDUR_TMP/NAME,
# records its PID, and waits until it answers PING. Prints nothing.
start_redis() {
    local name=$1; shift
    local dir="$BALDUR_TMP/$name"
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" --enable-debug-command local "$@" &
    BALDUR_PIDS+=($!)
    local pid=$!
    for _ in $(seq 1 100); do
        if [ -f "$dir/ready" ]; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "redis-server $name exited at start:"; cat "$dir/redis.log" >&2; return 1
        fi
        if grep -qiE 'ready to accept connections' "$dir/redis.log" 2>/dev/null; then
            touch "$dir/ready"; return 0
        fi
        sleep 0.1
    done
    log "redis-server $name did not start in 10 s"; return 1
}

# start_tls_redis NAME PORT CERT_DIR ARGS... : start_redis serving TLS only on
# PORT, with CERT_DIR's server certificate (scripts/tls-certs.sh); no client
# certificate asked unless ARGS say --tls-auth-clients yes.
start_tls_redis() {
    local name=$1 port=$2 certs=$3; shift 3
    start_redis "$name" --port 0 --tls-port "$port" --tls-cert-file "$certs/server.crt" \
        --tls-key-file "$certs/server.key" --tls-ca-cert-file "$certs/ca.crt" --tls-auth-clients no "$@"
}

# stop_test_servers : stops the servers a test process started and did not
# stop because it ended first (ThreadSanitizer's halt_on_error, a crash).
# Each writes its PID into BALDUR_TMP/tests/*/pid (a group: pids) and a
# test that stops it removes the file (TestEnvironment.serverDirectory);
# a PID is signalled only while it is a process working in that directory
# (redis-server's --dir), never a reused one. SIGKILL, which also ends a
# server the test had paused with SIGSTOP.
stop_test_servers() {
    [ -n "$BALDUR_TMP" ] && [ -d "$BALDUR_TMP/tests" ] || return 0
    local file pid cwd
    for file in "$BALDUR_TMP"/tests/*/pid "$BALDUR_TMP"/tests/*/pids; do
        [ -f "$file" ] || continue
        while read -r pid; do
            [[ "$pid" =~ ^[0-9]+$ ]] || continue
            cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue
            [[ "$cwd" == "$(dirname "$file")"* ]] || continue
            log "stopping test server $pid, left running by the test process"
            kill -KILL "$pid" 2>/dev/null || true
        done <"$file"
    done
}

# stop_servers : stops every server this script started, by PID, and removes the temp dir.
stop_servers() {
    local pid
    for pid in "${BALDUR_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BALDUR_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
        # The cluster's and the sentinels' servers are started by helper
        # scripts, so they are not this shell's children and `wait` returns
        # at once: wait (up to 10 s) until the PID is gone, or a node still
        # writing nodes.conf on its way out races the rm below.
        local tries=0
        while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 100 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
    done
    BALDUR_PIDS=()
    stop_test_servers
    [ -n "$BALDUR_TMP" ] && rm -rf "$BALDUR_TMP"
    BALDUR_TMP=""
}

# start_server_trio NAME : a plain redis-server, its TLS twin (certificates
# from tls-certs.sh) and a cluster (cluster.sh), stopped by stop_servers.
# Sets PLAIN_PORT, TLS_PORT, TLS_DIR, CLUSTER_SEED1 and CLUSTER_SEED2.
start_server_trio() {
    PLAIN_PORT=$(free_port)
    start_redis "$1" --port "$PLAIN_PORT"
    TLS_DIR="$BALDUR_TMP/certs"
    bash scripts/tls-certs.sh "$TLS_DIR"
    TLS_PORT=$(free_port)
    start_tls_redis "$1-tls" "$TLS_PORT" "$TLS_DIR"
    bash scripts/cluster.sh "$BALDUR_TMP/cluster"
    local cluster_pids
    mapfile -t cluster_pids <"$BALDUR_TMP/cluster/pids"
    BALDUR_PIDS+=("${cluster_pids[@]}")
    read -r CLUSTER_SEED1 CLUSTER_SEED2 _ <"$BALDUR_TMP/cluster/ports"
}
