# lib.sh holds what the bench scripts share: a work directory, the processes
# they started (killed on exit), ports and logging. Source it after setting
# NAME (the script's name, for the work directory and messages):
#
#   NAME=bench-x; . "$(dirname "$0")/lib.sh"
#
# It sets WORK (a fresh temporary directory, removed on exit) and PIDS
# (append every process started: cleanup kills them).

WORK=$(mktemp -d "/tmp/$NAME.XXXXXX")
PIDS=() # every process the script started, killed on exit
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }
need() { # command...: fail unless every one is installed
	local cmd
	for cmd in "$@"; do
		command -v "$cmd" >/dev/null || { echo "$NAME: $cmd is required" >&2; exit 2; }
	done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port: wait up to 10 s for a listener
	local i
	for i in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on port $1" >&2
	return 1
}
stop() { # pid...: stop processes the script started
	local p
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
build_binaries() { # ROOT: build switchboard and switchboard-bench into WORK; sets BENCH
	log "building switchboard and switchboard-bench"
	(cd "$1" && go build -o "$WORK/switchboard" ./cmd/switchboard && go build -o "$WORK/switchboard-bench" ./cmd/switchboard-bench)
	BENCH=$WORK/switchboard-bench
}
