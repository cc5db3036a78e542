#!/usr/bin/env bash
# cluster.sh builds bin/shardcache and runs a 3-node cluster on 127.0.0.1 in the
# foreground (`make cluster`). Node N keeps its data in ./data/node-N and listens on
#
#   node  kafka  cluster  http
#   1     9092   9093     9644
#   2     9192   9193     9744
#   3     9292   9293     9844
#
# On the first run (./data/node-1 empty) node 1 bootstraps the cluster and nodes 2
# and 3 join it through 127.0.0.1:9093; later runs restart all three on their data
# (a node with state rejoins what it knows and ignores --join).
# Arguments are added to every node's flags, e.g. scripts/cluster.sh --log-level=debug.
# Each output line is prefixed with its node. Ctrl-C (or SIGTERM) stops all three
# with SIGTERM and waits for them (a second Ctrl-C, or 20s, forces the ones still
# running); if one node exits on its own, the others are stopped too and the
# script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

go build -o bin/shardcache ./cmd/shardcache

# Job control puts each node in its own process group, so the terminal's SIGINT
# reaches only this script, which then sends each node one SIGTERM (a second
# signal would make a node skip its orderly shutdown).
set -m

pids=()

start_node() {
	local n=$1
	shift
	local off=$(((n - 1) * 100))
	mkdir -p "data/node-$n"
	bin/shardcache \
		--node-id="$n" \
		--data-dir="data/node-$n" \
		--kafka-addr="127.0.0.1:$((9092 + off))" \
		--cluster-addr="127.0.0.1:$((9093 + off))" \
		--http-addr="127.0.0.1:$((9644 + off))" \
		"$@" \
		> >(sed -u "s/^/[node-$n] /") 2>&1 &
	pids+=($!)
}

# stop_all sends each node SIGTERM and waits for them. A node still running
# after 20s, or when a second Ctrl-C comes, gets a second SIGTERM, which makes
# it exit at once (status 1; Raft replays its log on the next start).
stop_all() {
	trap 'force_stop' INT TERM
	echo "[cluster] stopping ${#pids[@]} nodes" >&2
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for _ in $(seq 200); do
		alive=0
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	[ "$alive" = 0 ] || force_stop
	local status=0
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || status=$?
	done
	echo "[cluster] stopped" >&2
	return "$status"
}

force_stop() {
	echo "[cluster] forcing the nodes still running to exit" >&2
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
}

# wait_ready waits up to 60s for node n's /readyz (needs curl; without it, 3s).
wait_ready() {
	local url="http://127.0.0.1:$((9644 + ($1 - 1) * 100))/readyz"
	if ! command -v curl >/dev/null 2>&1; then
		sleep 3
		return 0
	fi
	for _ in $(seq 600); do
		curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "[cluster] node $1 not ready after 60s" >&2
	return 1
}

trap 'stop_all || true; exit 130' INT TERM

# On the first run node 1 must have bootstrapped before the others join; on a
# later run every node has state and none is ready before a majority runs.
first_run=0
[ -n "$(ls -A data/node-1 2>/dev/null)" ] || first_run=1
start_node 1 "$@"
if [ "$first_run" = 1 ]; then
	wait_ready 1 || { stop_all || true; exit 1; }
fi
start_node 2 --join=127.0.0.1:9093 "$@"
start_node 3 --join=127.0.0.1:9093 "$@"
wait_ready 1 && wait_ready 2 && wait_ready 3 && echo "[cluster] 3 nodes ready; Kafka bootstrap 127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292; Ctrl-C stops them" >&2

# Returns when a node exits by itself (or the trap above runs on a signal).
wait -n "${pids[@]}" || true
echo "[cluster] a node exited; stopping the others" >&2
stop_all || true
exit 1
