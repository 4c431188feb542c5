# Switchboard's build and test targets; CI (.ci/run) calls the same ones.
GO          ?= go
STATICCHECK ?= staticcheck
# Fuzzing runs a fixed number of inputs (a duration makes the fuzzer fail
# with "context deadline exceeded" now and then on a loaded machine).
FUZZN       ?= 100000x
FUZZN_SLOW  ?= 300x
# The frame-sequence fuzzer found the 2^63-byte continuation crash after
# 6,000 to 20,000 inputs on the code that had it.
FUZZN_FRAMES ?= 20000x
GOFILES      = $(shell git ls-files --cached --others --exclude-standard '*.go')

.PHONY: all build fmt fmt-check lint test test-go test-io-uring test-fuzz test-js autobahn bench bench-compare bench-shards check tools

all: build

# The release stamped into the binary (switchboard version, /metrics).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)

build:
	$(GO) build ./...
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o switchboard ./cmd/switchboard

fmt:
	gofmt -s -w $(GOFILES)
	$(GO) mod tidy

# fmt-check fails when a Go file is not gofmt -s clean or go.mod is untidy.
fmt-check:
	@out=$$(gofmt -s -l $(GOFILES)); if [ -n "$$out" ]; then echo "not gofmt -s clean:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff

# lint vets and checks the code, and that it still builds (and vets) for
# Windows and macOS, where the transport falls back to blocking writes.
lint:
	$(GO) vet ./...
	$(STATICCHECK) ./...
	GOOS=windows $(GO) vet ./...
	GOOS=darwin $(GO) build ./...

# test runs every test: Go with the race detector (Redis and NATS tests
# start their own redis-server and nats-server processes), a short fuzz of each decoder, and the
# JavaScript client's tests (Node and headless Chromium).
test: test-go test-fuzz test-js

test-go: clients/js/node_modules
	$(GO) test -race -count=1 -timeout 20m ./...

# test-io-uring runs the server tests again with the io_uring write path
# (the binary's default, --io-uring, which the e2e tests exercise). It fails
# where io_uring is unavailable (Docker's default seccomp profile refuses
# it), so test does not include it.
test-io-uring:
	SWITCHBOARD_TEST_IO_URING=1 $(GO) test -race -count=1 -timeout 5m ./server

test-fuzz:
	$(GO) test -run=NONE -fuzz=FuzzDecodeRequest -fuzztime=$(FUZZN) ./protocol
	$(GO) test -run=NONE -fuzz=FuzzValidateChannel -fuzztime=$(FUZZN) ./protocol
	$(GO) test -run=NONE -fuzz=FuzzDecodeFast -fuzztime=$(FUZZN) ./protocol
	$(GO) test -run=NONE -fuzz=FuzzPayload -fuzztime=$(FUZZN) ./broker/redis
	$(GO) test -run=NONE -fuzz=FuzzToken -fuzztime=$(FUZZN) ./broker/nats
	$(GO) test -run=NONE -fuzz=FuzzParseURL -fuzztime=$(FUZZN) ./broker/redis
	$(GO) test -run=NONE -fuzz=FuzzReadLoop -fuzztime=$(FUZZN_SLOW) ./transport
	$(GO) test -run=NONE -fuzz=FuzzFrameSequence -fuzztime=$(FUZZN_FRAMES) ./transport
	$(GO) test -run=NONE -fuzz=FuzzInflate -fuzztime=$(FUZZN) ./transport

test-js: clients/js/node_modules clients/pusher-compat/node_modules
	cd clients/js && npm test
	cd clients/pusher-compat && npm test

# The JavaScript tests' dependencies (ws, playwright-core), installed on
# first use from the lock file; the Go e2e chaos test runs the JS client in
# Node too.
clients/js/node_modules: clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund
	touch $@

# The real Pusher clients and server SDK (pusher-js, laravel-echo, pusher)
# that judge the Pusher dialect.
clients/pusher-compat/node_modules: clients/pusher-compat/package-lock.json
	cd clients/pusher-compat && npm ci --no-audit --no-fund
	touch $@

# autobahn judges the WebSocket server with the Autobahn TestSuite, every
# case, nothing excluded (scripts/autobahn.sh, docs/conformance.md): each
# must be OK or INFORMATIONAL. WSTEST names wstest (default: from PATH);
# AUTOBAHN_JOBS runs that many wstest processes side by side.
WSTEST ?=
autobahn:
	WSTEST="$(WSTEST)" GO="$(GO)" scripts/autobahn.sh

bench:
	$(GO) test -run=NONE -bench=. -benchmem ./...

# bench-compare races two seed instances against two switchboard instances
# (each pair on a Redis of its own making) with switchboard-bench; see
# docs/benchmarks.md. SEED_DIR holds the seed's server.js.
SEED_DIR ?= ../shared/seed
bench-compare:
	scripts/bench-compare.sh $(SEED_DIR)

# bench-shards runs the same rooms load on one Redis and on Redis Clusters
# of 1, 2 and 3 primaries and prints JSON lines (scripts/bench-shards.sh,
# docs/benchmarks.md). Run it alone: it measures the machine.
bench-shards:
	scripts/bench-shards.sh

check: fmt-check lint test

# tools installs what lint and the JavaScript tests need.
tools: clients/js/node_modules clients/pusher-compat/node_modules
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
