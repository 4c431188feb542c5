#!/usr/bin/env bash
# autobahn.sh judges switchboard's WebSocket with the Autobahn TestSuite
# (wstest -m fuzzingclient): every case (517 in wstest 0.8.2: framing,
# fragmentation, UTF-8, close handshake, limits, permessage-deflate),
# nothing excluded. It builds the server (without -race), starts it on a
# free loopback port with --compression, runs wstest against raw
# connections (which echo what they receive), and fails unless every case
# is OK or INFORMATIONAL, for its behavior and its close behavior.
#
#   scripts/autobahn.sh                (or make autobahn)
#
# Environment:
#   WSTEST          the wstest command (default: wstest from PATH). Get it
#                   with `pip install autobahntestsuite` under Python 2.7,
#                   or run the crossbario/autobahn-testsuite image with this
#                   script's spec; ../shared/autobahn/wstest is a packed kit.
#   AUTOBAHN_JOBS   wstest processes run side by side, each on its own share
#                   of the cases and its own channel (default: the number of
#                   CPUs, at most 12). wstest is single-threaded Python and
#                   the permessage-deflate cases (12.x, 13.x) move some 10 GB
#                   through it: they take most of the run.
#   AUTOBAHN_CASES  how many cases the run must hold (default 517).
#   AUTOBAHN_OUT    where the reports go (default: a new directory under
#                   ${TMPDIR:-/tmp}); each process's under OUT/N.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
CASES=${AUTOBAHN_CASES:-517}
OUT=${AUTOBAHN_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/switchboard-autobahn.XXXXXX")}

WSTEST=${WSTEST:-$(command -v wstest || true)}
if [ -z "$WSTEST" ] || ! command -v "$WSTEST" >/dev/null; then
	cat >&2 <<-EOF
	autobahn: no wstest found: set WSTEST=/path/to/wstest or put wstest on PATH.
	  Get it with \`pip install autobahntestsuite\` under Python 2.7, or use the
	  crossbario/autobahn-testsuite container image (wstest -m fuzzingclient).
	EOF
	exit 2
fi

JOBS=${AUTOBAHN_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=1
[ "$JOBS" -le 12 ] || JOBS=12

WORK=$(mktemp -d "${TMPDIR:-/tmp}/autobahn-work.XXXXXX")
PIDS=() # every process this script started, killed on exit
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }

log "building switchboard (no -race)"
(cd "$ROOT" && "$GO" build -o "$WORK/switchboard" ./cmd/switchboard)

# The flags the kit's README gives: messages up to 20 MB (9.x sends 16 MiB),
# a send queue that holds them, and no server pings during a case (they
# would count against it).
"$WORK/switchboard" --addr 127.0.0.1:0 --compression --max-message-bytes 20000000 \
	--send-queue-bytes 67108864 --ping-interval 1h --log-level warn >"$WORK/server.out" 2>"$WORK/server.log" &
PIDS+=($!)
addr=
for _ in $(seq 1 100); do
	addr=$(sed -n 's/^switchboard listening on \([^ ]*\).*/\1/p' "$WORK/server.out")
	[ -n "$addr" ] && break
	kill -0 "${PIDS[0]}" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "autobahn: the server did not start" >&2; exit 2; }
	sleep 0.1
done
[ -n "$addr" ] || { echo "autobahn: the server did not start listening" >&2; exit 2; }
log "switchboard on $addr; $JOBS wstest process(es); reports in $OUT"

# shares prints process $1's case patterns: with one process, every case;
# with more, the first also takes 1.x-11.x (about a minute), and the twelve
# permessage-deflate groups are dealt out in turn. autobahnreport checks that
# the shares add up to every case, once.
shares() {
	local k=$1 i=0 g
	if [ "$JOBS" -eq 1 ]; then
		printf '"*"'
		return
	fi
	local out=()
	if [ "$k" -eq 0 ]; then
		for g in 1 2 3 4 5 6 7 8 9 10 11; do out+=("\"$g.*\""); done
	fi
	for g in 12.1 12.2 12.3 12.4 12.5 13.1 13.2 13.3 13.4 13.5 13.6 13.7; do
		[ $((i % JOBS)) -eq "$k" ] && out+=("\"$g.*\"")
		i=$((i + 1))
	done
	local IFS=,
	printf '%s' "${out[*]}"
}

# A packed wstest unpacks itself into a cache on first use; two started at
# once both unpack and the later one removes the tree the first runs from.
# One call first, alone, so that the side-by-side ones find it unpacked.
(cd "$WORK" && "$WSTEST" --help >/dev/null 2>&1) || true

start=$(date +%s)
WSTESTS=()
for k in $(seq 0 $((JOBS - 1))); do
	mkdir -p "$OUT/$k"
	cat >"$WORK/spec-$k.json" <<-EOF
	{"outdir": "$OUT/$k",
	 "servers": [{"agent": "switchboard", "url": "ws://$addr/raw/autobahn-$k"}],
	 "cases": [$(shares "$k")], "exclude-cases": [], "exclude-agent-cases": {}}
	EOF
	(cd "$WORK" && exec "$WSTEST" -m fuzzingclient -s "$WORK/spec-$k.json") >"$OUT/$k/wstest.log" 2>&1 &
	PIDS+=($!)
	WSTESTS+=($!)
done
status=0
for p in "${WSTESTS[@]}"; do wait "$p" || status=$?; done
log "wstest took $(($(date +%s) - start)) s"
if [ "$status" -ne 0 ]; then
	tail -n 20 "$OUT"/*/wstest.log >&2
	echo "autobahn: wstest failed (exit $status)" >&2
	exit 2
fi

dirs=()
for k in $(seq 0 $((JOBS - 1))); do dirs+=("$OUT/$k"); done
cd "$ROOT"
"$GO" run ./internal/autobahnreport -cases "$CASES" "${dirs[@]}"
