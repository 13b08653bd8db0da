#!/usr/bin/env bash
# sentinel-group.sh DIR MASTER_PASSWORD SENTINEL_PASSWORD [CERT_DIR]
#
# Starts a Sentinel group on loopback, in DIR: a master and a replica (both
# with requirepass/masterauth MASTER_PASSWORD) and three sentinels (requirepass
# SENTINEL_PASSWORD) monitoring the master as "mymaster" with quorum 2, a
# 1 s down-after and a 4 s failover timeout. Returns once the replica is in
# sync and every sentinel knows the replica and the two other sentinels.
# Writes DIR/ports ("master replica sentinel1 sentinel2 sentinel3") and
# DIR/pids (one per line), then DIR/ready, or DIR/failed on failure; the
# caller stops the group by those PIDs.
# With CERT_DIR (scripts/tls-certs.sh), every server and sentinel serves TLS
# only, and replication and the sentinels' own connections use TLS too.
# Used by run-tests.sh (a shared group) and by the failover tests (their own).
set -euo pipefail
dir=$1 master_password=$2 sentinel_password=$3 certs=${4:-}
mkdir -p "$dir"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
sentinel_binary=$(command -v redis-sentinel || true)
[ -n "$sentinel_binary" ] || { log "redis-sentinel is missing (Debian package redis-sentinel)"; exit 1; }

pids=()
trap 'group_failed "$dir" "sentinel-group.sh failed at line $LINENO"' ERR

# listen PORT : how a server or sentinel listens: plain, or TLS only.
listen() {
    if [ -z "$certs" ]; then
        echo "port $1"
    else
        printf '%s\n' "port 0" "tls-port $1" "tls-cert-file $certs/server.crt" "tls-key-file $certs/server.key" \
            "tls-ca-cert-file $certs/ca.crt" "tls-auth-clients no" "tls-replication yes"
    fi
}

# server NAME PORT ARGS... : a redis-server in DIR/NAME.
server() {
    local name=$1 port=$2; shift 2
    mkdir -p "$dir/$name"
    listen "$port" >"$dir/$name/listen.conf"
    redis-server "$dir/$name/listen.conf" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/$name" \
        --logfile "$dir/$name/redis.log" --requirepass "$master_password" --masterauth "$master_password" \
        "$@" </dev/null >/dev/null 2>&1 &
    pids+=($!)
}

master_port=$(free_port)
replica_port=$(free_port)
server master "$master_port"
server replica "$replica_port" --replicaof 127.0.0.1 "$master_port"

sentinel_ports=()
for index in 1 2 3; do
    port=$(free_port)
    sentinel_ports+=("$port")
    mkdir -p "$dir/sentinel$index"
    listen "$port" >"$dir/sentinel$index/sentinel.conf"
    cat >>"$dir/sentinel$index/sentinel.conf" <<CONF
bind 127.0.0.1
daemonize no
dir $dir/sentinel$index
logfile $dir/sentinel$index/sentinel.log
requirepass $sentinel_password
sentinel sentinel-pass $sentinel_password
sentinel monitor mymaster 127.0.0.1 $master_port 2
sentinel auth-pass mymaster $master_password
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 4000
sentinel parallel-syncs mymaster 1
CONF
    "$sentinel_binary" "$dir/sentinel$index/sentinel.conf" </dev/null >/dev/null 2>&1 &
    pids+=($!)
done
printf '%s\n' "${pids[@]}" >"$dir/pids"
echo "$master_port $replica_port ${sentinel_ports[*]}" >"$dir/ports"

tls_options=()
[ -n "$certs" ] && tls_options=(--tls --cacert "$certs/ca.crt")
ask() { REDISCLI_AUTH="$1" redis-cli -h 127.0.0.1 -p "$2" "${tls_options[@]}" "${@:3}" 2>/dev/null; }
for _ in $(seq 1 300); do
    ready=1
    ask "$master_password" "$replica_port" INFO replication | grep -q 'master_link_status:up' || ready=0
    for port in "${sentinel_ports[@]}"; do
        [ "$ready" = 1 ] || break
        [ "$(ask "$sentinel_password" "$port" SENTINEL sentinels mymaster | grep -c '^name$')" = 2 ] || ready=0
        [ "$(ask "$sentinel_password" "$port" SENTINEL replicas mymaster | grep -c '^name$')" = 1 ] || ready=0
    done
    if [ "$ready" = 1 ]; then touch "$dir/ready"; exit 0; fi
    sleep 0.1
done
group_failed "$dir" "the Sentinel group in $dir was not ready in 30 s"
