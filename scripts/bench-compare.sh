#!/usr/bin/env bash
# bench-compare.sh runs the same load against the seed server (Node, ws +
# ioredis; two instances sharing a Redis) and against switchboard (two
# instances sharing the same kind of Redis), on this machine, over loopback,
# and writes the results: JSON lines, the tables and an HTML report.
#
#   scripts/bench-compare.sh [SEED_DIR]        (or make bench-compare)
#
# SEED_DIR holds the seed's server.js (default: $SEED_DIR or ../shared/seed
# beside the repository). Knobs (environment): OUT (results directory),
# SUBS (1000), RATE (200), SIZE (100), DURATION (10s), STEP (3s),
# LOW_RATE (5: a second broadcast, chat-like traffic), IDLE_CONNS (10000),
# IDLE_HOLD (5s), CONNECT_CONNS (5000), WRITE_DELAY (40ms), SIDES ("seed
# switchboard switchboard-nodelay switchboard-native switchboard-native-nodelay":
# switchboard at its defaults, raw and native dialect, and the same with
# --write-delay 0, which never waits; switchboard-wd is switchboard with
# --write-delay WRITE_DELAY; switchboard-writev turns io_uring off;
# switchboard-pusher runs through the Pusher dialect; the -nodelay, -wd and
# -writev sides run the broadcasts and the ramp only).
#
# Needs: go, node + npm (npm install ws ioredis into a temporary directory),
# redis-server. It starts its own redis-server on a free port and kills
# everything it started when it exits.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SEED_DIR=${1:-${SEED_DIR:-$ROOT/../shared/seed}}
SUBS=${SUBS:-1000}
RATE=${RATE:-200}
SIZE=${SIZE:-100}
DURATION=${DURATION:-10s}
STEP=${STEP:-3s}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_HOLD=${IDLE_HOLD:-5s}
CONNECT_CONNS=${CONNECT_CONNS:-5000}
SIDES=${SIDES:-seed switchboard switchboard-nodelay switchboard-native switchboard-native-nodelay}
LOW_RATE=${LOW_RATE:-5}
WRITE_DELAY=${WRITE_DELAY:-40ms}
OUT=${OUT:-${TMPDIR:-/tmp}/switchboard-bench-$(date +%Y%m%d-%H%M%S)}

[[ " $SIDES " != *" seed "* ]] || [ -f "$SEED_DIR/server.js" ] || { echo "no server.js in SEED_DIR=$SEED_DIR" >&2; exit 2; }
NAME=bench-compare
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
need go node npm redis-server python3

ulimit -n "$(ulimit -Hn)" # servers and the bench tool hold 10,000+ sockets
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

build_binaries "$ROOT"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT"
log "redis-server on $REDIS_PORT (pid $REDIS_PID)"

if [[ " $SIDES " == *" seed "* ]]; then
	log "installing the seed's dependencies (ws, ioredis)"
	mkdir -p "$WORK/seed"
	cp "$SEED_DIR/server.js" "$WORK/seed/"
	(cd "$WORK/seed" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error ws ioredis >/dev/null)
fi

# Each start_* function starts the instances of one side and sets URLS
# (comma-separated), SRV_PIDS (bench flags) and RUNNING (pids).
start_seed() {
	local p1 p2
	p1=$(free_port)
	p2=$(free_port)
	(cd "$WORK/seed" && PORT=$p1 REDIS_PORT=$REDIS_PORT exec node server.js >"$WORK/seed1.log" 2>&1) &
	RUNNING=($!)
	(cd "$WORK/seed" && PORT=$p2 REDIS_PORT=$REDIS_PORT exec node server.js >"$WORK/seed2.log" 2>&1) &
	RUNNING+=($!)
	PIDS+=("${RUNNING[@]}")
	wait_port "$p1"
	wait_port "$p2"
	URLS=ws://127.0.0.1:$p1,ws://127.0.0.1:$p2
	SRV_PIDS="--server-pid ${RUNNING[0]} --server-pid ${RUNNING[1]}"
	NOTE="seed: 2 Node instances, Redis Pub/Sub"
	DIALECT=raw
}

# start_switchboard [flags...]: two instances on the Redis, with extra flags.
start_switchboard() {
	local p1 p2
	p1=$(free_port)
	p2=$(free_port)
	"$WORK/switchboard" --addr "127.0.0.1:$p1" --redis "redis://127.0.0.1:$REDIS_PORT/0" --log-level warn "$@" >"$WORK/sb1.log" 2>&1 &
	RUNNING=($!)
	"$WORK/switchboard" --addr "127.0.0.1:$p2" --redis "redis://127.0.0.1:$REDIS_PORT/0" --log-level warn "$@" >"$WORK/sb2.log" 2>&1 &
	RUNNING+=($!)
	PIDS+=("${RUNNING[@]}")
	wait_port "$p1" || { cat "$WORK/sb1.log" >&2; exit 1; }
	wait_port "$p2" || { cat "$WORK/sb2.log" >&2; exit 1; }
	URLS=ws://127.0.0.1:$p1,ws://127.0.0.1:$p2
	SRV_PIDS="--server-pid ${RUNNING[0]} --server-pid ${RUNNING[1]}"
	NOTE="switchboard: 2 instances, Redis broker${*:+ ($*)}"
	DIALECT=raw
}

# start_switchboard-wd: the same with --write-delay (the CPU per delivery
# setting; idle memory and handshakes do not depend on it).
start_switchboard-wd() { start_switchboard --write-delay "$WRITE_DELAY"; }

# start_switchboard-nodelay: the same with --write-delay 0 (every frame
# written at once), the reference for the default's adaptive batching.
start_switchboard-nodelay() { start_switchboard --write-delay 0; }

# start_switchboard-native, start_switchboard-pusher: the same instances
# (with one Pusher app), loaded through the native or the Pusher dialect.
start_switchboard-native() {
	start_switchboard --pusher-app-id app-id --pusher-key app-key --pusher-secret app-secret
	DIALECT=native
}
# start_switchboard-writev: the defaults with --io-uring=false (a writev
# per connection instead of one io_uring submission for many).
start_switchboard-writev() { start_switchboard --io-uring=false; }

start_switchboard-native-nodelay() {
	start_switchboard --write-delay 0
	DIALECT=native
}
start_switchboard-pusher() {
	start_switchboard --pusher-app-id app-id --pusher-key app-key --pusher-secret app-secret
	DIALECT=pusher
}

bench() { # label scenario flags...: run one scenario, append its results
	local label=$1 scenario=$2
	shift 2
	log "$label: $scenario $*"
	# shellcheck disable=SC2086 # SRV_PIDS holds several flags
	"$BENCH" "$scenario" --label "$label" --url "$URLS" $SRV_PIDS --json "$RESULTS" --quiet "$@" | tee -a "$OUT/tables.txt" ||
		log "$label: $scenario failed (recorded what it measured)"
}

for side in $SIDES; do
	# Fresh instances for each group, so that one scenario's memory and
	# connections do not weigh on the next.
	"start_$side"
	log "$NOTE"
	echo "$NOTE" >>"$OUT/notes.txt"
	bench "$side" broadcast --dialect "$DIALECT" --subs "$SUBS" --rate "$RATE" --size "$SIZE" --duration "$DURATION"
	stop "${RUNNING[@]}" # a server that fell behind must not carry its backlog into the ramp

	"start_$side"
	bench "$side" broadcast --dialect "$DIALECT" --subs "$SUBS" --rate "$LOW_RATE" --size "$SIZE" --duration "$DURATION"
	stop "${RUNNING[@]}"

	"start_$side"
	bench "$side" ramp --dialect "$DIALECT" --subs "$SUBS" --size "$SIZE" --start-rate 100 --factor 1.5 --step "$STEP" --p99-max 100ms
	stop "${RUNNING[@]}"

	case $side in *-wd | *-nodelay | *-writev) continue ;; esac
	"start_$side"
	bench "$side" idle --dialect "$DIALECT" --conns "$IDLE_CONNS" --duration "$IDLE_HOLD" --settle 2s
	stop "${RUNNING[@]}"

	"start_$side"
	bench "$side" connect --dialect "$DIALECT" --conns "$CONNECT_CONNS" --concurrency 64
	stop "${RUNNING[@]}"
done

"$BENCH" report --in "$RESULTS" --html "$OUT/report.html" --svg "$OUT/plot.svg" >"$OUT/summary.txt"
cat "$OUT/summary.txt"
log "results: $RESULTS, $OUT/summary.txt, $OUT/report.html, $OUT/plot.svg"
