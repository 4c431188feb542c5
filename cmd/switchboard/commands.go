package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/server"
)

// version is the release this binary was built as; a release build sets
// it with -ldflags "-X main.version=v1.2.3". Empty, it is read from the
// module's build information, or is "devel".
var version = ""

// buildInfo is what the binary knows of its own build.
type buildInfo struct {
	Version  string // v1.2.3, a pseudo-version or "devel"
	Revision string // the VCS commit, when built from a checkout
	Modified bool   // built from a checkout with uncommitted changes
	Go       string // the Go release that built it
}

// build returns the binary's build information.
func build() buildInfo {
	b := buildInfo{Version: version, Go: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// String is the line `switchboard version` prints.
func (b buildInfo) String() string {
	s := "switchboard " + b.Version
	if b.Revision != "" {
		s += " (" + b.Revision
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + " " + b.Go + " " + runtime.GOOS + "/" + runtime.GOARCH
}

// command runs a subcommand (version, config, healthcheck) when args name
// one; ok is false when they do not, and the server runs.
func command(args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, build())
		return 0, true
	case "config":
		return configCommand(args[1:], stdout, stderr), true
	case "healthcheck":
		return healthcheck(args[1:], stdout, stderr), true
	}
	return 0, false
}

const configUsage = `usage:
  switchboard config check FILE [flags]   check a configuration file and say what is wrong, with its line
  switchboard config print [flags]        print the effective configuration (file, environment and flags), secrets masked`

// configCommand runs `config check` and `config print`.
func configCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, configUsage)
		return 2
	}
	switch args[0] {
	case "check":
		if len(args) < 2 || strings.HasPrefix(args[1], "-") {
			fmt.Fprintln(stderr, "switchboard config check: give the file to check, like: switchboard config check switchboard.yaml")
			return 2
		}
		file := args[1]
		if _, err := check(append([]string{"--config", file}, args[2:]...), stderr); err != nil {
			fmt.Fprintln(stderr, "switchboard:", err)
			return 2
		}
		fmt.Fprintf(stdout, "%s: ok\n", file)
		return 0
	case "print":
		s, err := check(args[1:], stderr)
		if err != nil {
			fmt.Fprintln(stderr, "switchboard:", err)
			return 2
		}
		s.print(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "switchboard config: no command %q\n%s\n", args[0], configUsage)
	return 2
}

// check parses args as the server would and builds (without starting) a
// server from them on the memory broker, so that every mistake the server
// would refuse at start is found, except the broker's own.
func check(args []string, stderr io.Writer) (*settings, error) {
	s, err := parse(args, os.Getenv, stderr)
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := s.security(quiet); err != nil {
		return nil, err
	}
	cfg := s.srv
	cfg.Hub.Broker = memory.New(memory.Config{})
	cfg.Logger = quiet
	srv, err := server.New(cfg)
	if err != nil {
		return nil, err
	}
	_ = srv.Shutdown(context.Background())
	return s, nil
}

// masked is what a secret prints as.
const masked = "'***'"

// print writes the effective configuration as a file --config would take:
// every option, the named namespaces and the Pusher apps, with secrets
// (and the password of a broker URL) masked.
func (s *settings) print(w io.Writer) {
	fmt.Fprintf(w, "# %s: the effective configuration; secrets are masked\n", build().Version)
	for _, o := range s.options() {
		if o.key() == "config" {
			continue
		}
		fmt.Fprintf(w, "%s: %s\n", o.key(), shown(o))
	}
	if ns := s.srv.Hub.Namespaces; len(ns) > 0 {
		fmt.Fprintln(w, "namespaces:")
		names := make([]string, 0, len(ns))
		for n := range ns {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			var kv []string
			for _, o := range nsOptions {
				if v := o.get(ns[n]); v != "" { // an empty rule: the default's
					kv = append(kv, o.key+": "+yamlScalar(v))
				}
			}
			fmt.Fprintf(w, "  %s: {%s}\n", yamlScalar(n), strings.Join(kv, ", "))
		}
	}
	if len(s.pusherApps) > 0 {
		fmt.Fprintln(w, "pusher:\n  apps:")
		for _, a := range s.pusherApps {
			fmt.Fprintf(w, "    - {id: %s, key: %s, secret: %s, client_events: %t, max_connections: %d",
				yamlScalar(a.ID), yamlScalar(a.Key), masked, a.ClientEvents, a.MaxConnections)
			if len(a.AllowedOrigins) > 0 {
				q := make([]string, len(a.AllowedOrigins))
				for i, o := range a.AllowedOrigins {
					q[i] = yamlScalar(o)
				}
				fmt.Fprintf(w, ", allowed_origins: [%s]", strings.Join(q, ", "))
			}
			if len(a.Webhooks) > 0 {
				fmt.Fprintf(w, ", webhooks: %d", len(a.Webhooks)) // their URLs may carry credentials
			}
			fmt.Fprintln(w, "}")
		}
	}
}

// shown is option o's value as print writes it.
func shown(o *option) string {
	v := o.value.String()
	if o.secret && v != "" {
		if o.name == "redis" || o.name == "redis-shards" {
			return yamlScalar(maskURL(v))
		}
		return masked
	}
	return yamlScalar(v)
}

// options returns the options bound to s without resetting them to their
// defaults.
func (s *settings) options() []*option {
	saved := *s
	opts := declare(s) // sets every field to its default
	*s = saved
	return opts
}

// maskURL hides the password of each URL of a comma-separated list (a
// URL that does not parse is hidden whole).
func maskURL(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		u, err := url.Parse(p)
		if err != nil {
			parts[i] = "***"
			continue
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}

// yamlScalar quotes v when YAML would not read it back as the same text.
func yamlScalar(v string) string {
	if v == "" {
		return "''"
	}
	if strings.ContainsAny(v, ":#{}[],&*!|>'\"%@`\n") || strings.TrimSpace(v) != v {
		return strconv.Quote(v)
	}
	return v
}

// values returns every option's value in s by its key.
func (s *settings) values() map[string]string {
	out := map[string]string{}
	for _, o := range s.options() {
		out[o.key()] = o.value.String()
	}
	return out
}

// reload reads the configuration (file, environment, flags) again, as on
// SIGHUP, and applies its namespace options to the running hub;
// connections and subscriptions stay. The other options that changed
// since start are named in the log: only a restart applies them. A
// configuration with a mistake changes nothing.
func reload(args []string, started map[string]string, srv *server.Server, log *slog.Logger) {
	s, err := parse(args, os.Getenv, io.Discard)
	if err != nil {
		log.Error("reload refused: the configuration has a mistake; nothing changed", "err", err)
		return
	}
	if err := srv.Hub().SetNamespaces(s.srv.Hub.Default, s.srv.Hub.Namespaces); err != nil {
		log.Error("reload refused; nothing changed", "err", err)
		return
	}
	var later []string
	for k, v := range s.values() {
		if started[k] != v && !slices.Contains(nsKeys(), k) {
			later = append(later, k)
		}
	}
	slices.Sort(later)
	log.Info("reloaded the namespace options", "namespaces", len(s.srv.Hub.Namespaces))
	if len(later) > 0 {
		log.Warn("changed options that only a restart applies", "options", strings.Join(later, ", "))
	}
}

// healthcheck asks a server whether it is up, for container health checks
// (an image without curl): GET URL (default http://127.0.0.1:8080/healthz)
// must answer 200 within 3 s. Exit 0 when it does, 1 when not.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	url := "http://127.0.0.1:8080/healthz"
	switch len(args) {
	case 0:
	case 1:
		url = args[0]
	default:
		fmt.Fprintln(stderr, "usage: switchboard healthcheck [URL]   (default "+url+")")
		return 2
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(stderr, "switchboard healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "switchboard healthcheck: %s answered %s\n", url, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", url, resp.Status)
	return 0
}
