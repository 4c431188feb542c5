package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	out := stdout.String()
	if !strings.HasPrefix(out, "switchboard ") || !strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
		t.Errorf("version: %q", out)
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheck(t *testing.T) {
	good := writeFile(t, "good.yaml", "max_subscriptions: 64\nnamespaces:\n  chat: {history_size: 100, history_ttl: 1h}\n")
	typo := writeFile(t, "typo.yaml", "max_subscriptions: 64\nnamespaces:\n  chat: {histroy_size: 100}\n")
	badValue := writeFile(t, "bad.yaml", "ping_interval: 5\n")
	badName := writeFile(t, "name.yaml", "namespaces:\n  \"a b\": {history_size: 1}\n")
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout when code is 0, else in stderr
	}{
		{[]string{"config", "check", good}, 0, good + ": ok"},
		{[]string{"config", "check", typo}, 2, typo + ":3: namespaces.chat.histroy_size: no such namespace option (did you mean history_size?)"},
		{[]string{"config", "check", badValue}, 2, badValue + ":1: ping_interval: \"5\""},
		{[]string{"config", "check", badName}, 2, `"a b" is not a valid namespace name`},
		{[]string{"config", "check", good, "--max-subscriptions", "0"}, 2, "--max-subscriptions must be positive"},
		{[]string{"config", "check"}, 2, "give the file to check"},
		{[]string{"config"}, 2, "switchboard config print"},
		{[]string{"config", "frobnicate"}, 2, `no command "frobnicate"`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		out := stdout.String()
		if code != 0 {
			out = stderr.String()
		}
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%q: exit code %d, output %q; want %d and %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}

// config print shows the effective configuration with its secrets masked,
// as a file that config check takes and that sets the same options.
func TestConfigPrint(t *testing.T) {
	file := writeFile(t, "app.yaml", `max_subscriptions: 64
admin_password: admin-password-value
allowed_origins: https://a.example,https://b.example
namespaces:
  chat: {history_size: 100, history_ttl: 1h, presence: true}
pusher:
  apps:
    - {id: app1, key: key1, secret: pusher-secret-value}
`)
	args := []string{"config", "print", "--config", file, "--api-key", "api-key-value", "--redis", "redis://:redis-password@127.0.0.1:1/0"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, secret := range []string{"api-key-value", "redis-password", "pusher-secret-value", "admin-password-value"} {
		if strings.Contains(out, secret) {
			t.Errorf("the secret %q is printed:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"\nmax_subscriptions: 64\n",
		"\napi_key: '***'\n",
		"\nadmin_password: '***'\n",
		"\nredis: \"redis://:xxxxx@127.0.0.1:1/0\"\n",
		"\nredis_prefix: sb\n",
		"\nallowed_origins: \"https://a.example,https://b.example\"\n",
		"\n  chat: {history_size: 100, history_ttl: 1h, read_only: false, presence: true, join_leave: false}\n",
		"secret: '***'",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	// Printed, checked, parsed: the same options.
	printed := writeFile(t, "printed.yaml", out)
	var o2, e2 bytes.Buffer
	if code := run(context.Background(), []string{"config", "check", printed}, &o2, &e2); code != 0 {
		t.Fatalf("the printed configuration does not check: %s\n%s", e2.String(), out)
	}
	s, err := parse([]string{"--config", printed}, func(string) string { return "" }, &e2)
	if err != nil {
		t.Fatal(err)
	}
	if s.srv.Hub.MaxSubscriptions != 64 || s.srv.Hub.Namespaces["chat"].HistorySize != 100 || !s.srv.Hub.Namespaces["chat"].Presence ||
		len(s.srv.AllowedOrigins) != 2 || len(s.pusherApps) != 1 || s.pusherApps[0].Key != "key1" {
		t.Errorf("the printed file sets other options: %+v", s)
	}
}

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer ok.Close()
	for _, tc := range []struct {
		url  string
		code int
	}{
		{ok.URL + "/healthz", 0},
		{ok.URL + "/readyz", 1},
		{"http://127.0.0.1:1/healthz", 1},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"healthcheck", tc.url}, &stdout, &stderr); code != tc.code {
			t.Errorf("healthcheck %s: exit code %d, want %d (%s%s)", tc.url, code, tc.code, stdout.String(), stderr.String())
		}
	}
}

// The passwords of --redis-shards URLs are masked like --redis's, and the
// printed list parses back.
func TestConfigPrintMasksShards(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	args := []string{"config", "print", "--redis-shards", "redis://:shard-password@127.0.0.1:1,redis://127.0.0.1:2", "--redis-prefix", "app1"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	out := stdout.String()
	if strings.Contains(out, "shard-password") {
		t.Errorf("a shard's password is printed:\n%s", out)
	}
	for _, want := range []string{"\nredis_shards: \"redis://:xxxxx@127.0.0.1:1,redis://127.0.0.1:2\"\n", "\nredis_prefix: app1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}
