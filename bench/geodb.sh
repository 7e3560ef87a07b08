#!/usr/bin/env bash
# bench/geodb.sh - the GeoDB and LocalDB figures:
#
#   1. routing decisions per second from the LocalDB (build/geodbbench localdb:
#      20000 groups, 200 backends, 10000 overrides, 1M distinct users);
#   2. GeoDB read and conditional-write latency, p50/p90/p99, one request at
#      a time, against a real Cassandra node started here on loopback
#      (127.0.0.27, CQL port 19045, its own directory), and against SQLite for
#      comparison; plus one whole snapshot read (what a LocalDB refresh costs).
#
# Environment: BENCH_GEODB_COUNT=2000 (requests of each kind),
# BENCH_GEODB_DIR=/tmp/mailcluster-bench-geodb (wiped first).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 2
COUNT=${BENCH_GEODB_COUNT:-2000}
DIR=${BENCH_GEODB_DIR:-/tmp/mailcluster-bench-geodb}
IP=127.0.0.27
PORT=19045

make -s build/geodbbench || exit 2
python3 scripts/cassandra stop --dir "$DIR/node" >/dev/null 2>&1
rm -rf "$DIR"
mkdir -p "$DIR"
trap 'python3 scripts/cassandra stop --dir "$DIR/node" >/dev/null 2>&1' EXIT

echo "== LocalDB routing"
./build/geodbbench localdb || exit 1

echo "== SQLite GeoDB ($COUNT requests each)"
./build/geodbbench geodb "sqlite:$DIR/geodb.sqlite" "$COUNT" || exit 1

echo "== Cassandra GeoDB, one node on $IP:$PORT ($COUNT requests each)"
python3 scripts/cassandra start --dir "$DIR/node" --ip "$IP" --cql-port "$PORT" \
	--heap 512M >"$DIR/start.log" 2>&1 || { cat "$DIR/start.log"; exit 2; }
./build/geodbbench geodb "cassandra:hosts=$IP;port=$PORT;keyspace=bench_geodb" "$COUNT" ||
	exit 1
