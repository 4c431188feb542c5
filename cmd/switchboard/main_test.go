package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wait"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, s *settings)
		wantErr string
	}{
		{"defaults", nil, nil, func(t *testing.T, s *settings) {
			h := s.srv.Hub
			if s.addr != ":8080" || s.srv.RawChannel != "chat_messages" || s.srv.MaxMessageBytes != 65536 ||
				h.MaxSubscriptions != 128 || h.SendQueueBytes != 1<<20 || h.PingInterval != 25*time.Second ||
				s.shutdownTimeout != 10*time.Second || s.logFormat != "text" || s.redisURL != "" ||
				h.RequestTimeout != 5*time.Second || s.srv.HTTP.ReadHeaderTimeout != 5*time.Second {
				t.Errorf("defaults: %+v", s)
			}
		}, ""},
		{"flags", []string{"--addr", "127.0.0.1:9000", "--raw-channel=lobby", "--ping-interval", "5s", "--presence"}, nil, func(t *testing.T, s *settings) {
			if s.addr != "127.0.0.1:9000" || s.srv.RawChannel != "lobby" || s.srv.Hub.PingInterval != 5*time.Second || !s.srv.Hub.Default.Presence {
				t.Errorf("%+v", s)
			}
		}, ""},
		{"env", nil, map[string]string{"SWITCHBOARD_ADDR": ":7000", "SWITCHBOARD_MAX_SUBSCRIPTIONS": "5", "SWITCHBOARD_REDIS_URL": "redis://x:1/0", "SWITCHBOARD_ALLOWED_ORIGINS": "https://a.example, https://b.example"}, func(t *testing.T, s *settings) {
			if s.addr != ":7000" || s.srv.Hub.MaxSubscriptions != 5 || s.redisURL != "redis://x:1/0" {
				t.Errorf("%+v", s)
			}
			if got := s.srv.AllowedOrigins; len(got) != 2 || got[1] != "https://b.example" {
				t.Errorf("origins %q", got)
			}
		}, ""},
		{"flag beats env", []string{"--addr", ":1"}, map[string]string{"SWITCHBOARD_ADDR": ":2"}, func(t *testing.T, s *settings) {
			if s.addr != ":1" {
				t.Errorf("addr %q", s.addr)
			}
		}, ""},
		{"bad env value", nil, map[string]string{"SWITCHBOARD_PING_INTERVAL": "soon"}, nil, "SWITCHBOARD_PING_INTERVAL"},
		{"bad log format", []string{"--log-format", "xml"}, nil, nil, "--log-format must be text or json"},
		{"queue below message", []string{"--send-queue-bytes", "10"}, nil, nil, "--send-queue-bytes must be at least --max-message-bytes"},
		{"stray argument", []string{"serve"}, nil, nil, `unexpected argument "serve"`},
		{"unknown flag", []string{"--nope"}, nil, nil, "unknown flag --nope; see --help"},
		{"unknown flag near one", []string{"--histroy-size", "5"}, nil, nil, "unknown flag --histroy-size (did you mean history-size?)"},
		{"bad number", []string{"--history-size", "abc"}, nil, nil, `invalid value "abc" for --history-size: want a whole number`},
		{"duration without unit", []string{"--ping-interval", "5"}, nil, nil, "want a duration with a unit, like 5s"},
		{"flag without value", []string{"--addr"}, nil, nil, "--addr needs a value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			s, err := parse(tc.args, func(k string) string { return tc.env[k] }, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

// --help shows every declared option, with its variable, type and default,
// and README's configuration table lists the same options with the same
// variables and defaults.
func TestHelpAndReadmeListEveryOption(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parse([]string{"--help"}, func(string) string { return "" }, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	help := stderr.String()
	opts := declare(&settings{})
	for _, o := range opts {
		want := "--" + o.name
		if typ := o.value.Type(); typ != "bool" {
			want += " " + typ
		}
		want += " (" + o.envName() + ")\n      " + o.help
		if o.def != "empty" {
			want += " (default " + o.def + ")"
		}
		if !strings.Contains(help, want+"\n") {
			t.Errorf("--help lacks %q", want)
		}
	}
	if regexp.MustCompile(`\(default [^)]*\) \(default`).MatchString(help) {
		t.Errorf("--help shows two defaults for one option:\n%s", help)
	}
	if strings.Contains(help, `(default "")`) {
		t.Errorf("--help shows an empty default:\n%s", help)
	}
	for _, o := range nsOptions {
		if !strings.Contains(help, "  "+o.key+"\n") {
			t.Errorf("--help lacks the namespace option %s", o.key)
		}
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][2]string{} // flag -> env, default
	for line := range strings.SplitSeq(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`--") {
			continue
		}
		unquote := func(c string) string { return strings.Trim(strings.TrimSpace(c), "`") }
		rows[strings.TrimPrefix(unquote(cells[1]), "--")] = [2]string{unquote(cells[2]), unquote(cells[3])}
	}
	for _, o := range opts {
		row, ok := rows[o.name]
		if !ok {
			t.Errorf("README's table lacks --%s", o.name)
			continue
		}
		if row[0] != o.envName() || row[1] != o.def {
			t.Errorf("README says --%s is %s, default %s; the code says %s, default %s", o.name, row[0], row[1], o.envName(), o.def)
		}
		delete(rows, o.name)
	}
	for name := range rows {
		t.Errorf("README's table lists --%s, which is no option", name)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--log-level", "error"}, &stdout, &stderr) }()
	wait.For(t, 10*time.Second, func() error {
		if !strings.Contains(stdout.String(), "listening on") {
			return fmt.Errorf("not listening; stderr:\n%s", stderr.String())
		}
		return nil
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestRunBadOptions(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--max-subscriptions", "0"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "--max-subscriptions must be positive") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestNamespacesFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "namespaces:\n  default: {history_size: 100, history_ttl: 10m}\n  chat: {history_size: 500, history_ttl: 1h}\n  news: {history_size: 50, read_only: true}\n")
	tests := []struct {
		name    string
		args    []string
		wantDef hub.NamespaceOptions
		wantNS  map[string]hub.NamespaceOptions
		wantErr string
	}{
		{"flags only", []string{"--history-size", "20", "--history-ttl", "5m"}, hub.NamespaceOptions{HistorySize: 20, HistoryTTL: 5 * time.Minute}, nil, ""},
		{"file", []string{"--config", good}, hub.NamespaceOptions{HistorySize: 100, HistoryTTL: 10 * time.Minute},
			map[string]hub.NamespaceOptions{"chat": {HistorySize: 500, HistoryTTL: time.Hour}, "news": {HistorySize: 50, ReadOnly: true}}, ""},
		{"flag overrides file default", []string{"--config", good, "--history-size", "7"}, hub.NamespaceOptions{HistorySize: 7, HistoryTTL: 10 * time.Minute},
			map[string]hub.NamespaceOptions{"chat": {HistorySize: 500, HistoryTTL: time.Hour}, "news": {HistorySize: 50, ReadOnly: true}}, ""},
		{"top-level option", []string{"--config", write("top.yaml", "history_size: 9\nmax_subscriptions: 3\n")}, hub.NamespaceOptions{HistorySize: 9, HistoryTTL: 24 * time.Hour}, nil, ""},
		{"typo", []string{"--config", write("typo.yaml", "namespaces:\n  chat: {histroy_size: 5}\n")}, hub.NamespaceOptions{}, nil,
			"typo.yaml:2: namespaces.chat.histroy_size: no such namespace option (did you mean history_size?)"},
		{"unknown top-level key", []string{"--config", write("unknown.yaml", "addr: :1\nmax_subscription: 5\n")}, hub.NamespaceOptions{}, nil,
			"unknown.yaml:2: max_subscription: no such option (did you mean max_subscriptions?)"},
		{"bad value", []string{"--config", write("value.yaml", "namespaces:\n  chat:\n    history_ttl: soon\n")}, hub.NamespaceOptions{}, nil,
			`value.yaml:3: namespaces.chat.history_ttl: "soon": want a duration`},
		{"syntax error line", []string{"--config", write("syntax.yaml", "addr: :1\nnamespaces: {chat: [\n")}, hub.NamespaceOptions{}, nil, "syntax.yaml:2: "},
		// yaml names the line where the mapping began; the message names the bad one.
		{"syntax error in a block", []string{"--config", write("block.yaml", "addr: \":1\"\n- x\n")}, hub.NamespaceOptions{}, nil, "block.yaml:2: did not find expected key"},
		{"syntax error indented", []string{"--config", write("indent.yaml", "addr: \":1\"\n  history_size: 5\n")}, hub.NamespaceOptions{}, nil, "indent.yaml:2: did not find expected key"},
		{"unclosed flow mapping", []string{"--config", write("flow.yaml", "addr: \":1\"\nnamespaces:\n  chat: {history_size: 5\n")}, hub.NamespaceOptions{}, nil, "flow.yaml:3: did not find expected ',' or '}'"},
		{"tab", []string{"--config", write("tab.yaml", "addr: \":1\"\n\tmax_subscriptions: 2\n")}, hub.NamespaceOptions{}, nil, "tab.yaml:2: found character that cannot start any token (YAML is indented with spaces, not tabs)"},
		{"pusher app value", []string{"--config", write("papp.yaml", "pusher:\n  apps:\n    - id: a\n      key: k\n      client_events: maybe\n")}, hub.NamespaceOptions{}, nil,
			`papp.yaml:5: pusher.apps[0].client_events: "maybe": want true or false`},
		{"not a mapping", []string{"--config", write("list.yaml", "- addr\n")}, hub.NamespaceOptions{}, nil, "list.yaml:1: want options as key: value lines"},
		{"bad name", []string{"--config", write("bad.yaml", "namespaces:\n  \"a b\": {history_size: 5}\n")}, hub.NamespaceOptions{}, nil, "not a valid namespace name"},
		{"missing file", []string{"--config", dir + "/nope.yaml"}, hub.NamespaceOptions{}, nil, "no such file"},
		{"empty file", []string{"--config", write("empty.yaml", "")}, hub.NamespaceOptions{}, nil, "the file is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parse(tc.args, func(string) string { return "" }, &bytes.Buffer{})
			if err == nil {
				// A bad namespace name is the hub's to refuse.
				_, err = hub.New(hub.Config{Broker: memory.New(memory.Config{}), Default: s.srv.Hub.Default, Namespaces: s.srv.Hub.Namespaces})
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if def, ns := s.srv.Hub.Default, s.srv.Hub.Namespaces; def != tc.wantDef || !maps.Equal(ns, tc.wantNS) {
				t.Errorf("got %+v %+v, want %+v %+v", def, ns, tc.wantDef, tc.wantNS)
			}
		})
	}
}

// A mistake on the command line is one line on stderr that names it (and
// no usage text pushing it off the screen), and exit code 2.
func TestRunBadFlagIsOneLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown", []string{"--bogus"}, "switchboard: unknown flag --bogus; see --help"},
		{"single dash", []string{"-bogus"}, "switchboard: unknown flag --bogus; see --help"},
		{"near one", []string{"--histroy-size", "3"}, "switchboard: unknown flag --histroy-size (did you mean history-size?); see --help"},
		{"number", []string{"--history-size", "abc"}, `switchboard: invalid value "abc" for --history-size: want a whole number, like 100`},
		{"duration", []string{"--ping-interval", "5"}, `switchboard: invalid value "5" for --ping-interval: want a duration with a unit, like 5s, 250ms or 1m30s`},
		{"log level", []string{"--log-level", "verbose"}, `switchboard: --log-level must be debug, info, warn or error, not "verbose"`},
		{"log format", []string{"--log-format", "xml"}, `switchboard: --log-format must be text or json, not "xml"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), append([]string{"--addr", "127.0.0.1:0"}, tc.args...), &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if got := stderr.String(); got != tc.want+"\n" {
				t.Errorf("stderr:\n%s\nwant the one line:\n%s", got, tc.want)
			}
		})
	}
}

// The server says where it listens once, on stdout, and warns when the
// open API is on every interface.
func TestRunSaysOnceWhereItListens(t *testing.T) {
	for _, tc := range []struct {
		addr, line, warn string
	}{
		{"127.0.0.1:0", "switchboard listening on 127.0.0.1:", "no --api-key: the HTTP API is open"},
		{":0", " (all interfaces; node ", "no --api-key while listening on all interfaces"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr syncBuffer
		done := make(chan int)
		go func() { done <- run(ctx, []string{"--addr", tc.addr}, &stdout, &stderr) }()
		wait.For(t, 10*time.Second, func() error {
			if !strings.Contains(stdout.String(), "\n") {
				return fmt.Errorf("no line on stdout; stderr:\n%s", stderr.String())
			}
			return nil
		})
		cancel()
		<-done
		out := stdout.String()
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.line) || !strings.Contains(out, "memory broker): open http://") {
			t.Errorf("--addr %s: stdout %q, want one line with %q", tc.addr, out, tc.line)
		}
		if logs := stderr.String(); strings.Contains(logs, "listening\"") || !strings.Contains(logs, tc.warn) {
			t.Errorf("--addr %s: logs repeat the listening line or lack %q:\n%s", tc.addr, tc.warn, logs)
		}
	}
}

// rediss:// against a plain Redis is an error at every attempt that says
// the TLS handshake failed; the server keeps running, not ready.
func TestRunRedissAgainstPlainRedis(t *testing.T) {
	srv := redistest.Start(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--redis", "rediss://" + srv.Addr()}, &stdout, &stderr)
	}()
	wait.For(t, 20*time.Second, func() error {
		select {
		case code := <-done:
			t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
		default:
		}
		if n := strings.Count(stderr.String(), "level=ERROR msg=\"redis: cannot connect: TLS handshake failed (rediss:// needs a Redis that speaks TLS on this port; use redis:// for a plain one)"); n < 2 {
			return fmt.Errorf("%d error lines about the TLS handshake, want 2; stderr:\n%s", n, stderr.String())
		}
		return nil
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit code %d after cancel; stderr:\n%s", code, stderr.String())
	}
}

// --nats takes a NATS URL and a valid prefix, and not with --redis: each
// mistake is one line and exit code 2, at once, without the password.
func TestRunBadNatsOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--nats", "nats://u:s3cret@127.0.0.1:1", "--redis", "redis://127.0.0.1:1/0"}, "switchboard: --redis and --nats are mutually exclusive: choose one broker"},
		{[]string{"--nats", "redis://:s3cret@127.0.0.1:1/0"}, `switchboard: --nats: "redis:" is not a NATS URL: want nats://host:port or tls://host:port`},
		{[]string{"--nats", "nats://u:s3cret@[bad"}, "switchboard: --nats: nats: parse URL: missing ']' in host"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--nats-prefix", "a.b"}, `switchboard: --nats: nats: prefix "a.b": want letters, digits, '-' and '_' only`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), append([]string{"--addr", "127.0.0.1:0"}, tc.args...), &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if got := stderr.String(); got != tc.want+"\n" {
				t.Errorf("stderr:\n%s\nwant the one line:\n%s", got, tc.want)
			}
		})
	}
}

// A --redis URL that cannot be used is a mistake in the options: one line,
// exit code 2, at once, and never the password it holds.
func TestRunBadRedisURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url, want string
	}{
		{"kafka://x", `switchboard: --redis: brokers: unknown broker "kafka:": want memory:, redis://, rediss://, nats:// or tls://`},
		{"nats://127.0.0.1:4222", `switchboard: --redis: a NATS URL: use --nats for NATS`},
		{"redis://:s3cret@[bad", "switchboard: --redis: redis: parse URL: missing ']' in host"},
		{"redis://:s3cret@host:notaport/0", `switchboard: --redis: redis: parse URL: invalid port ":notaport" after host`},
		{"redis://:s3cret@host:6379/db", `switchboard: --redis: redis: parse URL: redis: invalid database number: "db"`},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--redis", tc.url}, &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if got := stderr.String(); got != tc.want+"\n" {
				t.Errorf("stderr:\n%s\nwant the one line:\n%s", got, tc.want)
			}
		})
	}
}

// --redis-shards and --redis exclude each other, and a bad shard URL or
// prefix stops the binary at once, like a bad --redis URL, naming its
// option and never a password.
func TestRunBadRedisShards(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"both", []string{"--redis", "redis://127.0.0.1:1", "--redis-shards", "redis://127.0.0.1:2,redis://127.0.0.1:3"},
			"switchboard: --redis and --redis-shards exclude each other: give one Redis (or a cluster) with --redis, or several standalone ones with --redis-shards"},
		{"bad shard", []string{"--redis-shards", "redis://127.0.0.1:2,redis://:s3cret@[bad"},
			"switchboard: --redis-shards: sharded: shard 1: redis: parse URL: missing ']' in host"},
		{"same shard twice", []string{"--redis-shards", "redis://127.0.0.1:2,redis://:s3cret@127.0.0.1:2/1"},
			"switchboard: --redis-shards: sharded: shards 0 and 1 are both 127.0.0.1:2"},
		{"not redis", []string{"--redis-shards", "memory:,redis://127.0.0.1:2"},
			`switchboard: --redis-shards: brokers: shard "memory:": want redis:// or rediss:// URLs`},
		{"bad prefix", []string{"--redis", "redis://127.0.0.1:1", "--redis-prefix", "app:1"},
			`switchboard: --redis-prefix: brokers: bad Redis prefix "app:1": use only A-Z a-z 0-9 _ - . (a ':' would let its keys mix with another prefix's)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), append([]string{"--addr", "127.0.0.1:0"}, tc.args...), &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if got := stderr.String(); got != tc.want+"\n" {
				t.Errorf("stderr:\n%s\nwant the one line:\n%s", got, tc.want)
			}
		})
	}
}
