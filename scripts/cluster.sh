#!/usr/bin/env bash
# cluster.sh DIR [CERT_DIR]
#
# Starts a Redis Cluster on loopback, in DIR: six redis-server nodes (three
# masters, each with one replica) made into a cluster by
# `redis-cli --cluster create --cluster-replicas 1`, with a 1 s
# cluster-node-timeout so a failover takes seconds, not the default's 15+.
# Returns once every node reports cluster_state:ok and sees three masters and
# three replicas, and every replica is in sync. Writes DIR/ports (the six ports, space-separated) and
# DIR/pids (one per line), then DIR/ready, or DIR/failed on failure; the
# caller stops the nodes by those PIDs.
# A node also listens on port+10000 (the cluster bus), so ports are picked
# below 45536 with both free.
# With CERT_DIR (scripts/tls-certs.sh), every node serves TLS only, and the
# bus and replication use TLS too.
# Used by run-tests.sh (a shared cluster) and by the tests that kill a master
# or move a slot (their own).
set -euo pipefail
dir=$1 certs=${2:-}
mkdir -p "$dir"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

pids=()
trap 'group_failed "$dir" "cluster.sh failed at line $LINENO"' ERR

# A port P in 20000..45535 with P and P+10000 (the bus) both free on 127.0.0.1.
free_cluster_port() {
    python3 - <<'PY'
import random, socket
for _ in range(1000):
    port = random.randint(20000, 45535)
    sockets = []
    try:
        for candidate in (port, port + 10000):
            s = socket.socket()
            s.bind(("127.0.0.1", candidate))
            sockets.append(s)
    except OSError:
        continue
    finally:
        for s in sockets:
            s.close()
    print(port)
    break
else:
    raise SystemExit("no free port pair")
PY
}

tls_options=()
[ -n "$certs" ] && tls_options=(--tls --cacert "$certs/ca.crt")
ports=()
for index in 1 2 3 4 5 6; do
    port=$(free_cluster_port)
    while [[ " ${ports[*]} " == *" $port "* ]]; do port=$(free_cluster_port); done
    ports+=("$port")
    node="$dir/node$index"
    mkdir -p "$node"
    if [ -z "$certs" ]; then
        echo "port $port" >"$node/node.conf"
    else
        printf '%s\n' "port 0" "tls-port $port" "tls-cert-file $certs/server.crt" "tls-key-file $certs/server.key" \
            "tls-ca-cert-file $certs/ca.crt" "tls-auth-clients no" "tls-replication yes" "tls-cluster yes" >"$node/node.conf"
    fi
    redis-server "$node/node.conf" --bind 127.0.0.1 --save '' --appendonly no --dir "$node" \
        --logfile "$node/redis.log" --cluster-enabled yes --cluster-config-file "$node/nodes.conf" \
        --cluster-node-timeout 1000 --enable-debug-command local </dev/null >/dev/null 2>&1 &
    pids+=($!)
done
printf '%s\n' "${pids[@]}" >"$dir/pids"
echo "${ports[*]}" >"$dir/ports"

ask() { redis-cli -h 127.0.0.1 -p "$1" "${tls_options[@]}" "${@:2}" 2>/dev/null; }
for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do
        [ "$(ask "$port" PING)" = PONG ] && break
        sleep 0.1
    done
done
addresses=()
for port in "${ports[@]}"; do addresses+=("127.0.0.1:$port"); done
redis-cli "${tls_options[@]}" --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes \
    >"$dir/create.log" 2>&1 || group_failed "$dir" "redis-cli --cluster create failed: $(tail -5 "$dir/create.log")"

for _ in $(seq 1 300); do
    ready=1
    synced=0
    for port in "${ports[@]}"; do
        ask "$port" INFO replication | grep -q 'master_link_status:up' && synced=$((synced + 1))
        ask "$port" CLUSTER INFO | grep -q 'cluster_state:ok' || { ready=0; break; }
        [ "$(ask "$port" CLUSTER NODES | grep -c 'master')" = 3 ] || { ready=0; break; }
        [ "$(ask "$port" CLUSTER NODES | grep -c 'slave')" = 3 ] || { ready=0; break; }
    done
    [ "$synced" = 3 ] || ready=0
    if [ "$ready" = 1 ]; then touch "$dir/ready"; exit 0; fi
    sleep 0.1
done
group_failed "$dir" "the cluster in $dir was not ready in 30 s"
