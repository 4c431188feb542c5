package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/admin"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/httpapi"
	"github.com/switchboard-rt/switchboard/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const password = "correct horse battery staple"

// fixture is a dashboard on a real hub (memory broker) whose namespace
// "h" keeps history, served by an httptest server.
type fixture struct {
	hub   *hub.Hub
	admin *admin.Handler
	srv   *httptest.Server
}

// sources replace the dashboard's sources of figures; nil fields keep the
// fixture's (one node, the hub's channels).
type sources struct {
	nodes    func(context.Context) ([]json.RawMessage, error)
	channels func(context.Context) (map[string]int, error)
}

func newFixture(t *testing.T, src sources) *fixture {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := hub.New(hub.Config{
		Broker:     memory.New(memory.Config{}),
		Logger:     quiet,
		NodeID:     "node-a",
		Namespaces: map[string]hub.NamespaceOptions{"h": {HistorySize: 10}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if src.nodes == nil {
		src.nodes = func(context.Context) ([]json.RawMessage, error) {
			return []json.RawMessage{json.RawMessage(`{"id":"node-a","connections":1}`)}, nil
		}
	}
	if src.channels == nil {
		src.channels = h.ClusterChannels
	}
	a, err := admin.New(admin.Config{
		Password: password,
		NodeID:   h.NodeID(),
		Nodes:    src.nodes,
		Channels: src.channels,
		API:      httpapi.New(httpapi.Config{Hub: h}),
		Interval: 20 * time.Millisecond,
		Logger:   quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{hub: h, admin: a, srv: httptest.NewServer(a)}
	t.Cleanup(func() {
		a.Close()
		f.srv.Close()
		_ = h.Shutdown(context.Background())
	})
	return f
}

// do sends a request to the dashboard; with auth, it carries the admin's
// credentials, and header's entries are set on it.
func (f *fixture) do(t *testing.T, method, path, body string, auth bool, header map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.SetBasicAuth(admin.User, password)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestNewNeedsAPasswordAndItsSources(t *testing.T) {
	t.Parallel()
	ok := admin.Config{
		Password: "p",
		Nodes:    func(context.Context) ([]json.RawMessage, error) { return nil, nil },
		Channels: func(context.Context) (map[string]int, error) { return nil, nil },
		API:      http.NotFoundHandler(),
	}
	if _, err := admin.New(ok); err != nil {
		t.Fatalf("New(%+v): %v", ok, err)
	}
	noPass := ok
	noPass.Password = ""
	noAPI := ok
	noAPI.API = nil
	for name, cfg := range map[string]admin.Config{"no password": noPass, "no API": noAPI} {
		if _, err := admin.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// Every path under /admin/ asks for the admin's credentials: the page, its
// files, its feed and its actions.
func TestEveryPathNeedsThePassword(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sources{})
	paths := []struct{ method, path string }{
		{"GET", "/admin"}, {"GET", "/admin/"}, {"GET", "/admin/admin.js"}, {"GET", "/admin/admin.css"},
		{"GET", "/admin/feed"}, {"POST", "/admin/api/publish"}, {"POST", "/admin/api/disconnect"},
		{"GET", "/admin/api/history?channel=h:a"}, {"GET", "/admin/api/presence?channel=a"}, {"GET", "/admin/nope"},
	}
	creds := []struct {
		name       string
		user, pass string
		set        bool
	}{
		{"none", "", "", false},
		{"wrong password", admin.User, "wrong", true},
		{"password as a prefix", admin.User, password[:5], true},
		{"longer password", admin.User, password + "x", true},
		{"wrong user", "root", password, true},
		{"empty", "", "", true},
	}
	for _, p := range paths {
		for _, c := range creds {
			t.Run(p.method+" "+p.path+" "+c.name, func(t *testing.T) {
				req, _ := http.NewRequest(p.method, f.srv.URL+p.path, strings.NewReader(`{"channel":"a","data":1,"user":"u"}`))
				req.Header.Set(admin.Header, "1")
				if c.set {
					req.SetBasicAuth(c.user, c.pass)
				}
				res, err := f.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != http.StatusUnauthorized {
					t.Errorf("status %d, want 401", res.StatusCode)
				}
				if got, want := res.Header.Get("WWW-Authenticate"), `Basic realm="switchboard admin"`; got != want {
					t.Errorf("WWW-Authenticate %q, want %q", got, want)
				}
			})
		}
	}
	// Nothing was published by the refused requests.
	if st := f.hub.Stats(); st.MessagesPublished != 0 {
		t.Errorf("%d messages published without the password", st.MessagesPublished)
	}
}

func TestPageAndFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sources{})
	tests := []struct {
		path, contentType, contains string
	}{
		{"/admin/", "text/html; charset=utf-8", `<script src="admin.js"></script>`},
		{"/admin/admin.js", "text/javascript; charset=utf-8", "new EventSource('/admin/feed')"},
		{"/admin/admin.css", "text/css; charset=utf-8", "@media (max-width: 640px)"},
	}
	for _, tc := range tests {
		res, body := f.do(t, "GET", tc.path, "", true, nil)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != tc.contentType || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", tc.path, res.StatusCode, res.Header.Get("Content-Type"), tc.contains, strings.Contains(body, tc.contains))
		}
	}
	res, _ := f.do(t, "GET", "/admin/", "", true, nil)
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("the page's CSP is %q", csp)
	}
	if res, _ := f.do(t, "GET", "/admin", "", true, nil); res.Request.URL.Path != "/admin/" {
		t.Errorf("GET /admin ended at %s, want /admin/", res.Request.URL.Path)
	}
	if res, _ := f.do(t, "POST", "/admin/", "", true, nil); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /admin/: %d, want 405", res.StatusCode)
	}
	if res, _ := f.do(t, "GET", "/admin/admin.go", "", true, nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /admin/admin.go: %d, want 404", res.StatusCode)
	}
}

// feedEvent is one event of the feed, as the page reads it.
type feedEvent struct {
	Time     int64             `json:"time"`
	Node     string            `json:"node"`
	Nodes    []json.RawMessage `json:"nodes"`
	Channels []struct {
		Channel     string `json:"channel"`
		Subscribers int    `json:"subscribers"`
	} `json:"channels"`
	Total  int      `json:"channels_total"`
	Errors []string `json:"errors"`
}

// openFeed opens the feed and returns a function that reads its next
// "cluster" event (or the error that ended the stream).
func openFeed(t *testing.T, f *fixture) (*http.Response, func() (feedEvent, error)) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+"/admin/feed", nil)
	req.SetBasicAuth(admin.User, password)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	return res, func() (feedEvent, error) {
		name := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && name == "cluster":
				var e feedEvent
				err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e)
				return e, err
			}
		}
		if err := sc.Err(); err != nil {
			return feedEvent{}, err
		}
		return feedEvent{}, io.EOF
	}
}

// The feed sends an event at once and then every interval, with the
// nodes and the busiest channels; Close ends it.
func TestFeedSendsEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sources{})
	res, next := openFeed(t, f)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("feed: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	e, err := next()
	if err != nil {
		t.Fatal(err)
	}
	if e.Node != "node-a" || len(e.Nodes) != 1 || string(e.Nodes[0]) != `{"id":"node-a","connections":1}` || e.Time == 0 || e.Total != 0 || len(e.Channels) != 0 {
		t.Errorf("first event: %+v", e)
	}
	for i := range 3 {
		if _, err := next(); err != nil {
			t.Fatalf("event %d: %v", i+2, err)
		}
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := next(); err != nil {
				done <- err
				return
			}
		}
	}()
	f.admin.Close()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Errorf("the stream ended with %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the feed")
	}
	// A feed opened after Close ends at once too, without an event.
	_, next = openFeed(t, f)
	if e, err := next(); !errors.Is(err, io.EOF) {
		t.Errorf("a feed opened after Close: %+v, %v; want EOF", e, err)
	}
}

// The busiest channels come first, at most 20 of them, and the total
// counts them all; a source that fails is named in the event.
func TestFeedListsTheBusiestChannels(t *testing.T) {
	t.Parallel()
	counts := map[string]int{"empty": 0}
	for i := range 25 { // c00 has 1 subscriber, c01 2, ... c24 25
		counts[channelName(i)] = i + 1
	}
	f := newFixture(t, sources{
		nodes:    func(context.Context) ([]json.RawMessage, error) { return nil, errors.New("the broker is away") },
		channels: func(context.Context) (map[string]int, error) { return counts, nil },
	})
	_, next := openFeed(t, f)
	e, err := next()
	if err != nil {
		t.Fatal(err)
	}
	if e.Total != 25 || len(e.Channels) != admin.DefaultTopChannels {
		t.Fatalf("%d channels listed of %d, want 20 of 25", len(e.Channels), e.Total)
	}
	for i, c := range e.Channels {
		if want := channelName(24 - i); c.Channel != want || c.Subscribers != 25-i {
			t.Errorf("channel %d: %+v, want %s with %d", i, c, want, 25-i)
		}
	}
	if len(e.Nodes) != 0 || len(e.Errors) != 1 || !strings.Contains(e.Errors[0], "the broker is away") {
		t.Errorf("nodes %s, errors %q: want none and the nodes' error", e.Nodes, e.Errors)
	}
}

func channelName(i int) string { return fmt.Sprintf("c%02d", i) }

// The actions are the HTTP API's requests: a publish reaches the channel
// (its history shows it), history and presence say when a namespace keeps
// none, and a disconnect is accepted.
func TestActions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sources{})
	page := map[string]string{admin.Header: "1", "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin", "Origin": f.srv.URL}

	res, body := f.do(t, "POST", "/admin/api/publish", `{"channel":"h:news","data":{"text":"hello"}}`, true, page)
	if res.StatusCode != 200 || !strings.Contains(body, `"offset":1`) {
		t.Fatalf("publish: %d %s", res.StatusCode, body)
	}
	res, body = f.do(t, "GET", "/admin/api/history?channel=h:news&limit=5", "", true, page)
	if res.StatusCode != 200 || !strings.Contains(body, `"data":{"text":"hello"}`) {
		t.Errorf("history: %d %s", res.StatusCode, body)
	}
	res, body = f.do(t, "GET", "/admin/api/history?channel=plain", "", true, page)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "history is not enabled") {
		t.Errorf("history without history: %d %s", res.StatusCode, body)
	}
	res, body = f.do(t, "GET", "/admin/api/presence?channel=plain", "", true, page)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "presence is not enabled") {
		t.Errorf("presence without presence: %d %s", res.StatusCode, body)
	}
	res, body = f.do(t, "POST", "/admin/api/disconnect", `{"user":"ann"}`, true, page)
	if res.StatusCode != 200 || strings.TrimSpace(body) != "{}" {
		t.Errorf("disconnect: %d %s", res.StatusCode, body)
	}
	// The API's own checks answer as they do on /api/.
	res, body = f.do(t, "POST", "/admin/api/publish", `{"channel":"bad channel!","data":1}`, true, page)
	if res.StatusCode != 400 || !strings.Contains(body, `"code":"bad_request"`) {
		t.Errorf("a bad channel: %d %s", res.StatusCode, body)
	}
	res, body = f.do(t, "POST", "/admin/api/disconnect", `{}`, true, page)
	if res.StatusCode != 400 || !strings.Contains(body, "user is missing") {
		t.Errorf("disconnect without a user: %d %s", res.StatusCode, body)
	}
	res, _ = f.do(t, "GET", "/admin/api/publish", "", true, page)
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "POST" {
		t.Errorf("GET publish: %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
	res, _ = f.do(t, "POST", "/admin/api/broadcast", `{"channels":["a"],"data":1}`, true, page)
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("an API request the dashboard does not serve: %d, want 404", res.StatusCode)
	}
	if n := f.hub.Stats().MessagesPublished; n != 1 {
		t.Errorf("%d messages published, want 1", n)
	}
}

// A request a page of another site could make with the admin's saved
// credentials is refused, and publishes nothing.
func TestActionsRefuseCrossSiteRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sources{})
	publish := `{"channel":"h:news","data":"from elsewhere"}`
	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
	}{
		{"no page header (a form post)", "POST", "/admin/api/publish", map[string]string{"Content-Type": "text/plain"}},
		{"cross-site fetch", "POST", "/admin/api/publish", map[string]string{admin.Header: "1", "Sec-Fetch-Site": "cross-site"}},
		{"same-site, other origin", "POST", "/admin/api/disconnect", map[string]string{admin.Header: "1", "Sec-Fetch-Site": "same-site"}},
		{"other Origin", "POST", "/admin/api/publish", map[string]string{admin.Header: "1", "Origin": "https://evil.example"}},
		{"other Origin, cross-site", "POST", "/admin/api/publish", map[string]string{admin.Header: "1", "Origin": f.srv.URL, "Sec-Fetch-Site": "cross-site"}},
		{"null Origin", "POST", "/admin/api/publish", map[string]string{admin.Header: "1", "Origin": "null"}},
		{"cross-site feed", "GET", "/admin/feed", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"cross-site history", "GET", "/admin/api/history?channel=h:news", map[string]string{"Origin": "https://evil.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.method == "POST" {
				body = publish
				if strings.HasSuffix(tc.path, "disconnect") {
					body = `{"user":"ann"}`
				}
			}
			res, got := f.do(t, tc.method, tc.path, body, true, tc.header)
			if res.StatusCode != http.StatusForbidden || !strings.Contains(got, `"code":"forbidden"`) {
				t.Errorf("%d %s, want 403 forbidden", res.StatusCode, got)
			}
		})
	}
	if n := f.hub.Stats().MessagesPublished; n != 0 {
		t.Errorf("%d messages published by refused requests", n)
	}
	// The same request from the page itself (or a script that says
	// nothing of where it comes from) is served.
	for _, h := range []map[string]string{
		{admin.Header: "1", "Sec-Fetch-Site": "same-origin", "Origin": f.srv.URL},
		{admin.Header: "1", "Origin": f.srv.URL},
		// Behind a proxy that rewrites Host, the browser's word wins.
		{admin.Header: "1", "Sec-Fetch-Site": "same-origin", "Origin": "https://switchboard.example:8443"},
		{admin.Header: "1"},
	} {
		if res, body := f.do(t, "POST", "/admin/api/publish", publish, true, h); res.StatusCode != 200 {
			t.Errorf("%v: %d %s", h, res.StatusCode, body)
		}
	}
}
