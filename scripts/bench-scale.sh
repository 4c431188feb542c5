#!/usr/bin/env bash
# bench-scale.sh measures switchboard at the scales users ask about, on
# this machine, over loopback, and appends the results as JSON lines:
#
#   idle     IDLE_CONNS (18000) native connections held by one instance,
#            opened from IDLE_IPS (4) source addresses 127.0.0.2...: RSS per
#            connection, handshakes/s, the CPU of holding them (pings) for
#            IDLE_HOLD (60s, two ping cycles at the default 25s).
#   storm    STORM_CLIENTS (15000) native clients, all on one of two
#            instances, on channels with history, receiving STORM_DELIVERIES
#            (5000) deliveries/s; that instance is killed (SIGKILL) and
#            every client reconnects to the other and recovers: time from
#            its socket's death to its recovered subscribe (p50, p99, max),
#            lost and duplicated messages (switchboard-bench soak).
#   rooms    ROOMS (10000) rooms of ROOM_SIZE (10) native members, on
#            ROOM_INSTANCES (2) instances; each connection is a member of
#            ROOMS_PER_CONN (10) rooms, so 10,000 connections hold the
#            100,000 memberships; each room gets ROOM_RATE (1) msg/s, each
#            message from one of its members in turn: CPU per delivery,
#            broker subscriptions per node, p99. One bench process, so that
#            the servers' CPU is divided by every delivery it caused.
#
#   scripts/bench-scale.sh [idle] [storm] [rooms]   (default: all three)
#
# A process may hold 20,000 descriptors on the machine this was written
# for: keep each instance and each bench process under that. Needs go and redis-server; starts its own Redis on a free
# port and kills everything it started when it exits. OUT names the
# results directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IDLE_CONNS=${IDLE_CONNS:-18000}
IDLE_IPS=${IDLE_IPS:-4}
IDLE_HOLD=${IDLE_HOLD:-60s}
STORM_CLIENTS=${STORM_CLIENTS:-15000}
STORM_DELIVERIES=${STORM_DELIVERIES:-5000}
STORM_CHANNELS=${STORM_CHANNELS:-100}
ROOMS=${ROOMS:-10000}
ROOM_SIZE=${ROOM_SIZE:-10}
ROOMS_PER_CONN=${ROOMS_PER_CONN:-10}
ROOM_INSTANCES=${ROOM_INSTANCES:-2}
ROOM_RATE=${ROOM_RATE:-1}
ROOM_DURATION=${ROOM_DURATION:-20s}
OUT=${OUT:-${TMPDIR:-/tmp}/switchboard-scale-$(date +%Y%m%d-%H%M%S)}
WHAT=${*:-idle storm rooms}

NAME=bench-scale
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
need go redis-server python3

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
touch "$RESULTS"

build_binaries "$ROOT"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"

# start_instances n: n instances on the Redis; sets URLS and SRV_PIDS.
start_instances() {
	local i p
	URLS="" SRV_PIDS="" RUNNING=()
	for i in $(seq 1 "$1"); do
		p=$(free_port)
		"$WORK/switchboard" --addr "127.0.0.1:$p" --redis "redis://127.0.0.1:$REDIS_PORT/0" --log-level warn >"$WORK/sb$i.log" 2>&1 &
		RUNNING+=($!)
		PIDS+=($!)
		wait_port "$p" || { cat "$WORK/sb$i.log" >&2; exit 1; }
		URLS=${URLS:+$URLS,}ws://127.0.0.1:$p
		SRV_PIDS="$SRV_PIDS --server-pid $!"
	done
}

for what in $WHAT; do
	case $what in
	idle)
		start_instances 1
		log "idle: $IDLE_CONNS native connections from $IDLE_IPS addresses, held $IDLE_HOLD"
		# shellcheck disable=SC2086
		"$BENCH" idle --label scale --dialect native --url "$URLS" $SRV_PIDS --conns "$IDLE_CONNS" --src-ips "$IDLE_IPS" \
			--concurrency 128 --duration "$IDLE_HOLD" --settle 5s --json "$RESULTS" --quiet | tee -a "$OUT/tables.txt"
		stop "${RUNNING[@]}"
		;;
	storm)
		log "storm: $STORM_CLIENTS native clients on one instance of two, killed"
		"$BENCH" soak --label storm --instances 2 --clients "$STORM_CLIENTS" --channels "$STORM_CHANNELS" \
			--deliveries-per-second "$STORM_DELIVERIES" --reconnect-percent -1 --duration 75s --warmup 15s \
			--restart-instance-at 30s --restart-redis-at -1s --kill-instance --crowd-restarted \
			--server-bin "$WORK/switchboard" --json "$RESULTS" --quiet | tee -a "$OUT/tables.txt"
		;;
	rooms)
		start_instances "$ROOM_INSTANCES"
		log "rooms: $ROOMS rooms of $ROOM_SIZE, $ROOMS_PER_CONN per connection, $ROOM_RATE msg/s each"
		member_rate=$(python3 -c "print($ROOM_RATE / $ROOM_SIZE)")
		# shellcheck disable=SC2086
		"$BENCH" rooms --label rooms --dialect native --url "$URLS" $SRV_PIDS --rooms "$ROOMS" \
			--room-size "$ROOM_SIZE" --rooms-per-conn "$ROOMS_PER_CONN" --rate "$member_rate" \
			--duration "$ROOM_DURATION" --concurrency 64 --json "$RESULTS" --quiet | tee -a "$OUT/tables.txt" ||
			log "rooms: the bench process failed (its results say why)"
		stop "${RUNNING[@]}"
		;;
	*)
		echo "bench-scale: unknown measurement $what (idle, storm, rooms)" >&2
		exit 2
		;;
	esac
done
log "results: $RESULTS"
