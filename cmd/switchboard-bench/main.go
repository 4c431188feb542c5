//go:build linux

// Command switchboard-bench is a load generator for switchboard and for the
// seed server it replaces (and for Centrifugo, for reference). It opens
// thousands of WebSocket connections from one process, reads them with a
// few epoll reader goroutines that parse frames by hand without allocating
// per message, and reports delivery (loss, duplicates, order), latency
// percentiles, and the CPU time of itself and of the server processes.
//
// Scenarios:
//
//	broadcast  S subscribers on one channel, one publisher at R msg/s
//	ramp       broadcast at rising rates; the highest rate with zero loss and p99 under a bound
//	rooms      many channels with a few members each, every member also publishing
//	idle       N idle connections; server memory per connection (VmRSS)
//	connect    handshakes per second and handshake latency
//	soak       a cluster for a long time under load and reconnect churn, an
//	           instance and Redis restarted on the way: loss, recovery, and
//	           goroutines, descriptors and heap per instance at start and end
//	report     render an HTML report from JSON lines (--in results.jsonl --html out.html)
//
// Run "switchboard-bench --help" for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// listFlag is a repeatable, comma-separable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	scenario := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("switchboard-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg     Config
		urls    listFlag
		pids    listFlag
		rates   listFlag
		jsonOut string
		htmlOut string
		jsonIn  string
		svgOut  string
		label   string
		quiet   bool
		srvArgs listFlag
	)
	fs.StringVar(&cfg.Scenario, "scenario", scenario, "broadcast, ramp, rooms, idle, connect, soak (or give it as the first argument)")
	fs.Var(&urls, "url", "server instance `ws://host:port`; repeat or comma-separate for several (connections go round-robin); soak: omit to let it start its own Redis and instances")
	fs.StringVar(&cfg.Dialect, "dialect", "raw", "raw, native, centrifugo or pusher (Pusher subscribers at /app/{key}; a native publisher into the app's channel)")
	fs.StringVar(&cfg.Channel, "channel", "", `channel (default: raw "/" = the server's default channel; native/centrifugo/pusher "bench"); rooms: the rooms' name prefix, so that several bench processes keep apart`)
	fs.IntVar(&cfg.Subscribers, "subs", 100, "subscribers (broadcast, ramp)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "msg/s: the publisher's (broadcast; default 100) or each member's (rooms; default 1)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "publishing time (broadcast, rooms, soak) or hold time (idle) (default 10s; soak 10m)")
	fs.IntVar(&cfg.Size, "size", 100, "message size in bytes")
	fs.StringVar(&cfg.PublishURL, "publish-url", "", "publish through POST `http://host:port`/api/publish instead of a WebSocket")
	fs.StringVar(&cfg.APIKey, "api-key", "", "bearer token for --publish-url")
	fs.StringVar(&cfg.PusherKey, "pusher-key", "app-key", "pusher: the app's key")
	fs.StringVar(&cfg.PusherApp, "pusher-app", "app-id", "pusher: the app's id")
	fs.StringVar(&cfg.Token, "token", "", "connection token (native ?token=, centrifugo connect)")
	fs.Var(&pids, "server-pid", "server process `pid` to measure (CPU, RSS); repeat, in --url order")
	fs.IntVar(&cfg.Readers, "readers", 2, "epoll reader goroutines")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "connections opened at once")
	fs.IntVar(&cfg.SrcIPs, "src-ips", 0, "spread connections over this many source addresses 127.0.0.2... (default: one per 20,000 connections when over 20,000)")
	fs.DurationVar(&cfg.Drain, "drain", 0, "longest wait for in-flight messages after publishing (default 3s)")
	fs.Var(&rates, "rates", "ramp: explicit publish rates, e.g. 100,200,400")
	fs.Float64Var(&cfg.StartRate, "start-rate", 100, "ramp: first rate (msg/s)")
	fs.Float64Var(&cfg.Factor, "factor", 1.5, "ramp: rate multiplier per step")
	fs.Float64Var(&cfg.MaxRate, "max-rate", 100000, "ramp: highest rate")
	fs.DurationVar(&cfg.StepTime, "step", 0, "ramp: time per step (default 3s)")
	fs.DurationVar(&cfg.P99Max, "p99-max", 0, "ramp: a step passes with zero loss and p99 at most this (default 100ms)")
	fs.IntVar(&cfg.KeepGoing, "keep-going", 0, "ramp: steps to run after the first failing one")
	fs.IntVar(&cfg.Rooms, "rooms", 100, "rooms: channels")
	fs.IntVar(&cfg.RoomSize, "room-size", 5, "rooms: members per channel")
	fs.IntVar(&cfg.RoomsPerConn, "rooms-per-conn", 1, "rooms: rooms each connection is a member of (native, centrifugo, pusher), so that many rooms fit in few connections")
	fs.IntVar(&cfg.Conns, "conns", 1000, "idle, connect: connections")
	fs.DurationVar(&cfg.Settle, "settle", 0, "idle: wait after connecting before reading RSS (default 2s)")
	fs.IntVar(&cfg.Clients, "clients", 5000, "soak: native clients")
	fs.IntVar(&cfg.Channels, "channels", 100, "soak: channels with history; the clients are spread over them")
	fs.Float64Var(&cfg.DeliveriesPerSec, "deliveries-per-second", 10000, "soak: deliveries per second in all (the publish rate is this over the clients per channel)")
	fs.Float64Var(&cfg.ReconnectPercent, "reconnect-percent", 5, "soak: percent of the clients that disconnect and reconnect (with since) each second; negative for none")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "soak: time before the start figures are taken (default a tenth of --duration, at most 30s)")
	fs.DurationVar(&cfg.RestartInstanceAt, "restart-instance-at", 0, "soak: when to SIGTERM and restart the last instance (default a third of --duration; negative: never)")
	fs.DurationVar(&cfg.RestartRedisAt, "restart-redis-at", 0, "soak: when to SIGKILL and restart Redis (default two thirds of --duration; negative: never)")
	fs.DurationVar(&cfg.RedisDowntime, "redis-downtime", 0, "soak: how long Redis stays down (default 1s)")
	fs.IntVar(&cfg.Instances, "instances", 3, "soak: switchboard instances to start")
	fs.IntVar(&cfg.HistorySize, "history-size", 1000, "soak: the instances' --history-size")
	fs.StringVar(&cfg.ServerBin, "server-bin", "", "soak: switchboard `binary` to run (default: go build ./cmd/switchboard)")
	fs.Var(&srvArgs, "server-arg", "soak: one more argument for every instance, e.g. --server-arg=--write-delay=5ms (repeat)")
	fs.StringVar(&cfg.RedisBin, "redis-bin", "redis-server", "soak: redis-server `binary`")
	fs.BoolVar(&cfg.KillInstance, "kill-instance", false, "soak: restart the instance with SIGKILL, as a crash (its clients see their sockets die), instead of SIGTERM")
	fs.BoolVar(&cfg.CrowdRestarted, "crowd-restarted", false, "soak: connect every client to the instance the run restarts (the last), so that its restart is a reconnect storm of every client")
	fs.BoolVar(&cfg.RedisVolatile, "redis-volatile", false, "soak: run Redis without persistence, so that its restart loses history (counted apart, as clients are told of it)")
	fs.StringVar(&jsonOut, "json", "", "append results as JSON lines to `file` (- for stdout)")
	fs.StringVar(&htmlOut, "html", "", "write an HTML report with charts to `file`")
	fs.StringVar(&jsonIn, "in", "", "report: JSON lines `file` to render")
	fs.StringVar(&svgOut, "svg", "", "report: write a plot of p99 latency and server CPU per delivery against offered deliveries/s to `file` (SVG)")
	fs.StringVar(&label, "label", "", "label the results (e.g. seed, switchboard)")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cfg.Scenario == "" && fs.NArg() > 0 {
		cfg.Scenario = fs.Arg(0)
	}
	if cfg.Scenario == "report" {
		return runReport(jsonIn, htmlOut, svgOut, stdout, stderr)
	}
	cfg.URLs = urls
	cfg.ServerArgs = srvArgs
	for _, p := range pids {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			fmt.Fprintf(stderr, "--server-pid %q: not a pid\n", p)
			return 2
		}
		cfg.ServerPIDs = append(cfg.ServerPIDs, n)
	}
	for _, r := range rates {
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(stderr, "--rates %q: not a rate\n", r)
			return 2
		}
		cfg.Rates = append(cfg.Rates, v)
	}
	if !quiet {
		cfg.Log = stderr
	}
	results, err := Run(ctx, cfg)
	for i := range results {
		results[i].Label = label
	}
	writeTable(stdout, results)
	if jsonOut != "" {
		if werr := writeJSONLines(jsonOut, stdout, results); werr != nil {
			fmt.Fprintln(stderr, werr)
			return 1
		}
	}
	if htmlOut != "" {
		if werr := writeHTMLFile(htmlOut, results); werr != nil {
			fmt.Fprintln(stderr, werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchboard-bench:", err)
		return 1
	}
	return 0
}
