#!/usr/bin/env bash
# bench-shards.sh measures how Switchboard scales past one Redis: the same
# load (switchboard-bench's rooms scenario: many channels, every member
# publishing, through the native dialect) against two switchboard instances
# on one standalone Redis, then on Redis Clusters of 1, 2 and 3 primaries
# (no replicas), and prints one JSON line per run on stdout (the bench
# tool's result, labelled single, cluster-1, cluster-2, cluster-3).
#
#   scripts/bench-shards.sh            (or make bench-shards)
#
# Knobs (environment): ROOMS (200 channels), ROOM_SIZE (5 members), RATE
# (msg/s per member, 2), DURATION (10s), SIZE (100 bytes), INSTANCES (2),
# BACKENDS ("single cluster-1 cluster-2 cluster-3"), OUT (a directory for
# the JSON lines and logs; default a new one under /tmp).
#
# Everything runs on this machine: with 2 cores, the Redis processes, the
# instances and the load generator share them, so more primaries add
# parallel Redis work but no new CPU; say so beside the figures.
#
# Needs: go, redis-server and redis-cli (Debian: redis-server, redis-tools), curl,
# python3 (free ports). It starts its own processes on free loopback ports
# and kills everything it started when it exits. Do not run it beside other
# benchmarks or tests.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROOMS=${ROOMS:-200}
ROOM_SIZE=${ROOM_SIZE:-5}
RATE=${RATE:-2}
DURATION=${DURATION:-10s}
SIZE=${SIZE:-100}
INSTANCES=${INSTANCES:-2}
BACKENDS=${BACKENDS:-single cluster-1 cluster-2 cluster-3}
OUT=${OUT:-${TMPDIR:-/tmp}/switchboard-bench-shards-$(date +%Y%m%d-%H%M%S)}

NAME=bench-shards
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
need go redis-server redis-cli python3 curl

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

build_binaries "$ROOT"

# start_redis name [args...]: one redis-server on a free port; sets PORT
# and appends its pid to REDIS_PIDS.
start_redis() {
	local name=$1
	shift
	PORT=$(free_port)
	# A cluster node also listens on its port + 10000 (the cluster bus).
	while [ "$PORT" -gt 55000 ]; do PORT=$(free_port); done
	mkdir -p "$WORK/$name"
	redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK/$name" --save '' --appendonly no \
		--daemonize no "$@" >"$OUT/$name.log" 2>&1 &
	REDIS_PIDS+=($!)
	PIDS+=($!)
	wait_port "$PORT"
}

# start_backend single|cluster-N: sets REDIS_URL and REDIS_PIDS.
start_backend() {
	REDIS_PIDS=()
	case $1 in
	single)
		start_redis single
		REDIS_URL=redis://127.0.0.1:$PORT/0
		;;
	cluster-*)
		local n=${1#cluster-} i ports=() lo hi
		for ((i = 0; i < n; i++)); do
			start_redis "$1-$i" --cluster-enabled yes --cluster-config-file nodes.conf
			ports+=("$PORT")
		done
		# Equal slot ranges by hand (redis-cli --cluster create wants 3
		# primaries or more), then every node meets the first.
		for ((i = 0; i < n; i++)); do
			lo=$((i * 16384 / n))
			hi=$(((i + 1) * 16384 / n - 1))
			redis-cli -p "${ports[$i]}" cluster addslotsrange "$lo" "$hi" >/dev/null
			[ "$i" -eq 0 ] || redis-cli -p "${ports[$i]}" cluster meet 127.0.0.1 "${ports[0]}" >/dev/null
		done
		for i in $(seq 1 300); do
			local ok=0 p
			for p in "${ports[@]}"; do
				redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' && ok=$((ok + 1))
			done
			[ "$ok" -eq "$n" ] && break
			[ "$i" -lt 300 ] || { echo "bench-shards: $1 did not reach cluster_state:ok" >&2; exit 1; }
			sleep 0.1
		done
		REDIS_URL=redis://$(printf '127.0.0.1:%s,' "${ports[@]}" | sed 's/,$//')
		;;
	*)
		echo "bench-shards: unknown backend $1" >&2
		exit 2
		;;
	esac
}

for backend in $BACKENDS; do
	log "$backend: starting Redis"
	start_backend "$backend"
	URLS=()
	SRV=()
	RUNNING=()
	for ((i = 0; i < INSTANCES; i++)); do
		p=$(free_port)
		"$WORK/switchboard" --addr "127.0.0.1:$p" --redis "$REDIS_URL" --log-level warn >"$OUT/$backend-sb$i.log" 2>&1 &
		RUNNING+=($!)
		PIDS+=($!)
		wait_port "$p" || { cat "$OUT/$backend-sb$i.log" >&2; exit 1; }
		for j in $(seq 1 100); do
			curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break
			[ "$j" -lt 100 ] || { echo "bench-shards: instance $i not ready on $backend" >&2; cat "$OUT/$backend-sb$i.log" >&2; exit 1; }
			sleep 0.1
		done
		URLS+=("ws://127.0.0.1:$p")
		SRV+=(--server-pid "${RUNNING[-1]}")
	done
	log "$backend: $INSTANCES instances on $REDIS_URL; rooms $ROOMS x $ROOM_SIZE at $RATE msg/s per member for $DURATION"
	"$WORK/switchboard-bench" rooms --url "$(IFS=,; echo "${URLS[*]}")" --dialect native \
		--rooms "$ROOMS" --room-size "$ROOM_SIZE" --rate "$RATE" --duration "$DURATION" --size "$SIZE" \
		"${SRV[@]}" --label "$backend" --json "$RESULTS" --quiet >"$OUT/$backend-bench.txt" 2>&1 ||
		{ cat "$OUT/$backend-bench.txt" >&2; exit 1; }
	stop "${RUNNING[@]}"
	stop "${REDIS_PIDS[@]}"
done

log "results in $RESULTS (logs beside it)"
cat "$RESULTS"
