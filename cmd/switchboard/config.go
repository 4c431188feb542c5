package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/pusher"
)

// The configuration file (--config) holds any option by its key, and the
// options of each namespace under namespaces:. The namespace "default"
// holds those of channels without a namespace and of namespaces not
// listed; the default namespace's own options (history_size...) may also
// be given at the top level, where they win over namespaces.default.
//
//	max_subscriptions: 256
//	namespaces:
//	  default: {history_size: 100, history_ttl: 10m}
//	  chat:    {history_size: 500, history_ttl: 1h}
//	  news:    {history_size: 50, read_only: true}
//	  rooms:   {presence: true, join_leave: true}

// nsOption is one option of a namespace in the configuration file.
type nsOption struct {
	key  string
	help string
	set  func(o *hub.NamespaceOptions, v string) error
	get  func(o hub.NamespaceOptions) string // as the file writes it
}

// nsOptions are the options a namespace may have, in the file.
var nsOptions = []nsOption{
	{"history_size", "messages kept per channel, for recovery (0 keeps none)", func(o *hub.NamespaceOptions, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errors.New("want a whole number, 0 or more, like 100")
		}
		o.HistorySize = n
		return nil
	}, func(o hub.NamespaceOptions) string { return strconv.Itoa(o.HistorySize) }},
	{"history_ttl", "how long a channel's history lives after its last message (like 1h)", func(o *hub.NamespaceOptions, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errors.New("want a duration with a unit, like 10m or 24h")
		}
		o.HistoryTTL = d
		return nil
	}, func(o hub.NamespaceOptions) string { return shortDuration(o.HistoryTTL) }},
	{"read_only", "true: clients may not publish, only the HTTP API (the same as publish: api)", boolSetter(func(o *hub.NamespaceOptions, b bool) { o.ReadOnly = b }), func(o hub.NamespaceOptions) string { return strconv.FormatBool(o.ReadOnly) }},
	{"subscribe", "who may subscribe: public, authenticated or granted", ruleSetter(false, func(o *hub.NamespaceOptions, r hub.Rule) { o.Subscribe = r }), func(o hub.NamespaceOptions) string { return string(o.Subscribe) }},
	{"publish", "who may publish: public, authenticated, granted or api", ruleSetter(true, func(o *hub.NamespaceOptions, r hub.Rule) { o.Publish = r }), func(o hub.NamespaceOptions) string { return string(o.Publish) }},
	{"presence", "true: keep who is in each channel, across instances", boolSetter(func(o *hub.NamespaceOptions, b bool) { o.Presence = b }), func(o hub.NamespaceOptions) string { return strconv.FormatBool(o.Presence) }},
	{"join_leave", "true: send join and leave events to subscribers", boolSetter(func(o *hub.NamespaceOptions, b bool) { o.JoinLeave = b }), func(o hub.NamespaceOptions) string { return strconv.FormatBool(o.JoinLeave) }},
}

func boolSetter(set func(*hub.NamespaceOptions, bool)) func(*hub.NamespaceOptions, string) error {
	return func(o *hub.NamespaceOptions, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		set(o, b)
		return nil
	}
}

func ruleSetter(publish bool, set func(*hub.NamespaceOptions, hub.Rule)) func(*hub.NamespaceOptions, string) error {
	return func(o *hub.NamespaceOptions, v string) error {
		r, err := hub.ParseRule(v, publish)
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "hub: "))
		}
		set(o, r)
		return nil
	}
}

// fileError is a mistake in the configuration file, with where it is.
func fileError(file string, n *yaml.Node, key, msg string) error {
	if key != "" {
		return fmt.Errorf("%s:%d: %s: %s", file, n.Line, key, msg)
	}
	return fmt.Errorf("%s:%d: %s", file, n.Line, msg)
}

// yamlLineRE reads the line that starts yaml's syntax errors (after
// "yaml: ").
var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

// yamlProblem splits a yaml error into its line ("" when it names none)
// and its problem.
func yamlProblem(err error) (line, problem string) {
	problem = strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(problem); m != nil {
		return m[1], problem[len(m[0]):]
	}
	return "", problem
}

// syntaxError reports a YAML syntax error as file:line: problem. yaml
// names the line where the construct around the problem began (a mapping
// that starts on line 1 when the bad line is 2), so the line is found
// again: the first line at which a prefix of the file fails with the same
// problem. Files of up to 2000 lines are searched; beyond, or when no
// prefix fails that way, yaml's own line is given.
func syntaxError(path string, b []byte, err error) error {
	line, problem := yamlProblem(err)
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) <= 2000 {
		for k := 1; k < len(lines); k++ {
			var n yaml.Node
			perr := yaml.Unmarshal([]byte(strings.Join(lines[:k], "")), &n)
			if perr == nil {
				continue
			}
			if _, p := yamlProblem(perr); p == problem {
				line = strconv.Itoa(k)
				break
			}
		}
	}
	if line == "" {
		return fmt.Errorf("%s: %s", path, problem)
	}
	if n, _ := strconv.Atoi(line); n > 0 && n <= len(lines) && strings.Contains(lines[n-1], "\t") {
		problem += " (YAML is indented with spaces, not tabs)"
	}
	return fmt.Errorf("%s:%s: %s", path, line, problem)
}

// loadFile applies the configuration file: the default namespace's
// options from namespaces.default, then every other namespace, then the
// top-level options, each through its option's own parser. The
// environment and the command line are applied after it, and win.
func loadFile(path string, s *settings, opts []*option) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: the file is empty; give it options or leave --config out", path)
		}
		return syntaxError(path, b, err)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fileError(path, root, "", "want options as key: value lines")
	}
	byKey := map[string]*option{}
	for _, o := range opts {
		byKey[o.key()] = o
	}
	var top [][2]*yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch o := byKey[k.Value]; {
		case k.Value == "namespaces":
			if err := loadNamespaces(path, v, s); err != nil {
				return err
			}
		case k.Value == "pusher":
			if err := loadPusher(path, v, s); err != nil {
				return err
			}
		case o == nil || o.key() == "config":
			return fileError(path, k, k.Value, "no such option"+nearest(k.Value, keysOf(opts)))
		default:
			top = append(top, [2]*yaml.Node{k, v})
		}
	}
	for _, kv := range top {
		k, v := kv[0], kv[1]
		if v.Kind != yaml.ScalarNode {
			return fileError(path, v, k.Value, "want a single value")
		}
		if err := byKey[k.Value].value.Set(v.Value); err != nil {
			return fileError(path, v, k.Value, fmt.Sprintf("%q: %v", v.Value, err))
		}
	}
	return nil
}

// loadNamespaces reads the namespaces: mapping.
func loadNamespaces(path string, n *yaml.Node, s *settings) error {
	if n.Kind != yaml.MappingNode {
		return fileError(path, n, "namespaces", "want one entry per namespace, like chat: {history_size: 100}")
	}
	named := map[string]hub.NamespaceOptions{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var o hub.NamespaceOptions
		if k.Value == "default" {
			o = s.srv.Hub.Default
		}
		if err := loadNamespace(path, k.Value, v, &o); err != nil {
			return err
		}
		if k.Value == "default" {
			s.srv.Hub.Default = o
		} else {
			named[k.Value] = o
		}
	}
	s.srv.Hub.Namespaces = named
	return nil
}

func loadNamespace(path, name string, n *yaml.Node, o *hub.NamespaceOptions) error {
	if n.Kind != yaml.MappingNode {
		return fileError(path, n, "namespaces."+name, "want the namespace's options, like {history_size: 100}")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := "namespaces." + name + "." + k.Value
		var opt *nsOption
		for j := range nsOptions {
			if nsOptions[j].key == k.Value {
				opt = &nsOptions[j]
			}
		}
		if opt == nil {
			return fileError(path, k, key, "no such namespace option"+nearest(k.Value, nsKeys()))
		}
		if v.Kind != yaml.ScalarNode {
			return fileError(path, v, key, "want a single value")
		}
		if err := opt.set(o, v.Value); err != nil {
			return fileError(path, v, key, fmt.Sprintf("%q: %v", v.Value, err))
		}
	}
	return nil
}

func keysOf(opts []*option) []string {
	out := []string{"namespaces", "pusher"}
	for _, o := range opts {
		out = append(out, o.key())
	}
	return out
}

// pusherKeys are the keys of a Pusher app in the file, and of a webhook.
var (
	pusherAppKeys     = []string{"id", "key", "secret", "client_events", "max_connections", "allowed_origins", "webhooks"}
	pusherWebhookKeys = []string{"url", "events"}
)

// loadPusher reads pusher: {apps: [{id, key, secret, ...}]}.
func loadPusher(path string, n *yaml.Node, s *settings) error {
	if err := onlyKeys(path, "pusher", n, []string{"apps"}); err != nil {
		return err
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		apps := n.Content[i+1]
		if apps.Kind != yaml.SequenceNode {
			return fileError(path, apps, "pusher.apps", "want a list of apps, like - {id: app1, key: k, secret: s}")
		}
		for j, app := range apps.Content {
			where := fmt.Sprintf("pusher.apps[%d]", j)
			if err := onlyKeys(path, where, app, pusherAppKeys); err != nil {
				return err
			}
			for k := 0; k+1 < len(app.Content); k += 2 {
				if app.Content[k].Value != "webhooks" {
					continue
				}
				for w, hook := range app.Content[k+1].Content {
					if err := onlyKeys(path, fmt.Sprintf("%s.webhooks[%d]", where, w), hook, pusherWebhookKeys); err != nil {
						return err
					}
				}
			}
			var a pusher.App
			if err := app.Decode(&a); err != nil {
				return pusherValueError(path, where, app)
			}
			s.pusherApps = append(s.pusherApps, a)
		}
	}
	return nil
}

// pusherValueError finds the key of app whose value does not decode and
// says what it wants, in words rather than Go types.
func pusherValueError(path, where string, app *yaml.Node) error {
	for k := 0; k+1 < len(app.Content); k += 2 {
		key, val := app.Content[k], app.Content[k+1]
		one := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{key, val}}
		var a pusher.App
		if one.Decode(&a) == nil {
			continue
		}
		want := map[string]string{
			"client_events":   "true or false",
			"max_connections": "a whole number, like 1000",
			"allowed_origins": `a list of origins, like ["https://example.com"]`,
			"webhooks":        "a list of {url: ..., events: [...]}",
		}[key.Value]
		if want == "" {
			want = "text"
		}
		return fileError(path, val, where+"."+key.Value, fmt.Sprintf("%q: want %s", val.Value, want))
	}
	return fileError(path, app, where, "want keys: "+strings.Join(pusherAppKeys, ", "))
}

// onlyKeys checks that n is a mapping whose keys are among known.
func onlyKeys(path, where string, n *yaml.Node, known []string) error {
	if n.Kind != yaml.MappingNode {
		return fileError(path, n, where, "want keys: "+strings.Join(known, ", "))
	}
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(known, k.Value) {
			return fileError(path, k, where+"."+k.Value, "no such key"+nearest(k.Value, known)+"; want "+strings.Join(known, ", "))
		}
	}
	return nil
}

func nsKeys() []string {
	var out []string
	for _, o := range nsOptions {
		out = append(out, o.key)
	}
	return out
}

// nearest returns " (did you mean X?)" for the candidate closest to word,
// when one is close enough to be a typo of it.
func nearest(word string, candidates []string) string {
	best, bestD := "", 4
	for _, c := range candidates {
		if d := distance(word, c); d < bestD && d <= max(len(word)/3, 1) {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// distance is the Levenshtein distance between a and b, with a swap of
// two neighbours counted as one edit (histroy / history).
func distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
