#!/usr/bin/env bash
# local-cluster.sh runs, as local processes, the topology that
# deploy/docker-compose.yml runs in containers: one Redis, three switchboard
# instances sharing it, and nginx in front of them (deploy/nginx.conf). The
# two are kept in step: e2e/deploy_test.go compares the compose file with
# this script's --print, and runs this script.
#
#   deploy/local-cluster.sh           start everything; Ctrl-C (or SIGTERM) stops it all
#   deploy/local-cluster.sh --print   print the topology: one line per service,
#                                     its name, its port and, for switchboard, its flags
#
# Environment (defaults are the compose file's):
#   REDIS_PORT    Redis's port (6379)
#   PORTS         the three instances' ports ("8081 8082 8083")
#   NGINX_PORT    nginx's port, the one clients use (8080)
#   SWITCHBOARD   the switchboard binary (default: built from this checkout)
#   WORK          where logs, nginx's prefix and Redis's files go (default: a new temporary directory)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REDIS_PORT=${REDIS_PORT:-6379}
read -r -a PORTS <<<"${PORTS:-8081 8082 8083}"
NGINX_PORT=${NGINX_PORT:-8080}
[ "${#PORTS[@]}" -eq 3 ] || { echo "local-cluster: PORTS must name three ports" >&2; exit 2; }

# flags prints the flags of instance $1 (1-3) on port $2: the compose file's
# command for that service, word for word.
flags() {
	echo "--addr 127.0.0.1:$2 --redis redis://127.0.0.1:$REDIS_PORT --node-id switchboard-$1 --history-size 100 --presence --shutdown-timeout 10s --log-format json"
}

if [ "${1:-}" = "--print" ]; then
	echo "redis $REDIS_PORT"
	for i in 1 2 3; do
		echo "switchboard-$i ${PORTS[$((i - 1))]} $(flags "$i" "${PORTS[$((i - 1))]}")"
	done
	echo "nginx $NGINX_PORT"
	exit 0
fi
[ $# -eq 0 ] || { echo "usage: local-cluster.sh [--print]" >&2; exit 2; }

for tool in redis-server nginx; do
	command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
		echo "local-cluster: $tool not found (apt-get install -y redis-server nginx-light)" >&2
		exit 2
	}
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/switchboard-cluster.XXXXXX")}
mkdir -p "$WORK/nginx"

PIDS=()
stop() {
	trap - INT TERM EXIT
	local p
	# The instances first (SIGTERM: they move their clients to the others,
	# which are going too), then nginx and Redis.
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop EXIT
trap 'exit 130' INT TERM

if [ -z "${SWITCHBOARD:-}" ]; then
	SWITCHBOARD="$WORK/switchboard"
	(cd "$ROOT" && go build -o "$SWITCHBOARD" ./cmd/switchboard)
fi

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
	>"$WORK/redis.log" 2>&1 &
PIDS+=($!)

for i in 1 2 3; do
	port=${PORTS[$((i - 1))]}
	# shellcheck disable=SC2046 # the flags are words
	"$SWITCHBOARD" $(flags "$i" "$port") >"$WORK/switchboard-$i.out" 2>"$WORK/switchboard-$i.log" &
	PIDS+=($!)
done

# deploy/nginx.conf with this run's ports: its upstream servers and listen
# address rewritten, nothing else.
awk -v ports="${PORTS[*]}" -v listen="$NGINX_PORT" '
	/^[[:space:]]*server 127\.0\.0\.1:[0-9]+ max_fails/ {
		if (!done) {
			n = split(ports, p, " ")
			for (i = 1; i <= n; i++) printf "        server 127.0.0.1:%s max_fails=1 fail_timeout=2s;\n", p[i]
			done = 1
		}
		next
	}
	/listen 127\.0\.0\.1:[0-9]+;/ { sub(/127\.0\.0\.1:[0-9]+/, "127.0.0.1:" listen) }
	{ print }
' "$ROOT/deploy/nginx.conf" >"$WORK/nginx.conf"
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK/nginx" -e stderr >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)

echo "local-cluster: http://127.0.0.1:$NGINX_PORT/ (nginx) over switchboard on ${PORTS[*]}, Redis on $REDIS_PORT; logs in $WORK"
# Until a signal, or until one of the processes ends by itself.
wait -n "${PIDS[@]}" || true
echo "local-cluster: a process ended; stopping the rest (logs in $WORK)" >&2
exit 1
