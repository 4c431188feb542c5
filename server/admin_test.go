package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/admin"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/server"
)

// adminRequest sends a request to the dashboard as its page does: with the
// admin's credentials (pass) and the page's header.
func adminRequest(t *testing.T, method, url, pass, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if pass != "" {
		req.SetBasicAuth(admin.User, pass)
	}
	req.Header.Set(admin.Header, "1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// The dashboard exists only with a password: without one, /admin/ is the
// page's, which has no such path.
func TestAdminOnlyWithAPassword(t *testing.T) {
	t.Parallel()
	off := start(t, server.Config{})
	for _, p := range []string{"/admin", "/admin/", "/admin/feed"} {
		if code, _ := adminRequest(t, "GET", off.url(p), "whatever", ""); code != http.StatusNotFound {
			t.Errorf("without a password, GET %s: %d, want 404", p, code)
		}
	}
	on := start(t, server.Config{AdminPassword: "s3cret"})
	if code, _ := adminRequest(t, "GET", on.url("/admin/"), "", ""); code != http.StatusUnauthorized {
		t.Errorf("with a password, GET /admin/ without credentials: %d, want 401", code)
	}
	if code, body := adminRequest(t, "GET", on.url("/admin/"), "s3cret", ""); code != 200 || !strings.Contains(body, "<title>Switchboard admin</title>") {
		t.Errorf("with the password, GET /admin/: %d %.80s", code, body)
	}
}

// The dashboard's actions reach the node's clients without the API key:
// a test message arrives to a subscriber, a disconnected user's connection
// is closed with 4001.
func TestAdminActionsReachClients(t *testing.T) {
	t.Parallel()
	secret := []byte("a-dev-secret-of-at-least-32-bytes!!")
	v, err := auth.New(auth.Config{HMACSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	n := start(t, server.Config{AdminPassword: "s3cret", APIKey: "api-key", Verifier: v, DevTokenSecret: secret})
	res, err := http.Get(n.url("/dev/token?user=ann"))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil || tok.Token == "" {
		t.Fatalf("dev token: %v %+v", err, tok)
	}
	res.Body.Close()
	ann := dial(t, n.ws("/ws?token="+url.QueryEscape(tok.Token)), nil)
	if w := ann.readJSON(); w["op"] != "welcome" {
		t.Fatalf("first frame %v", w)
	}
	if r := ann.request(`{"id":1,"op":"subscribe","channel":"news"}`); r["ok"] != true {
		t.Fatalf("subscribe: %v", r)
	}
	if code, body := httpPost(t, n.url("/api/publish"), `{"channel":"news","data":"no key"}`); code != http.StatusUnauthorized {
		t.Fatalf("/api/publish without the API key: %d %s", code, body)
	}
	if code, body := adminRequest(t, "POST", n.url("/admin/api/publish"), "s3cret", `{"channel":"news","data":{"text":"from the dashboard"}}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	if m := ann.readJSON(); m["channel"] != "news" || !equalJSON(m["data"], map[string]any{"text": "from the dashboard"}) {
		t.Fatalf("ann got %v", m)
	}
	if code, body := adminRequest(t, "POST", n.url("/admin/api/disconnect"), "s3cret", `{"user":"ann"}`); code != 200 {
		t.Fatalf("disconnect: %d %s", code, body)
	}
	ann.expectClose(4001)
}

// An open feed outlives the server's read timeout and does not hold a
// graceful shutdown: it ends as the shutdown begins.
func TestAdminFeedOutlivesReadTimeoutAndEndsOnShutdown(t *testing.T) {
	t.Parallel()
	n := start(t, server.Config{AdminPassword: "s3cret", NodeInterval: 100 * time.Millisecond,
		HTTP: server.HTTPLimits{ReadTimeout: 300 * time.Millisecond}})
	req, _ := http.NewRequest("GET", n.url("/admin/feed"), nil)
	req.SetBasicAuth(admin.User, "s3cret")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- s
			}
		}
	}()
	began := time.Now()
	for got := 0; time.Since(began) < 1500*time.Millisecond; got++ {
		select {
		case s, ok := <-events:
			if !ok {
				t.Fatalf("the feed ended after %v and %d events", time.Since(began), got)
			}
			var e struct {
				Nodes []server.NodeInfo `json:"nodes"`
			}
			if err := json.Unmarshal([]byte(s), &e); err != nil || len(e.Nodes) != 1 || e.Nodes[0].ID != n.srv.Hub().NodeID() {
				t.Fatalf("event %q: %v", s, err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no event for 3 s")
		}
	}
	stopped := time.Now()
	if err := n.shutdown(10 * time.Second); err != nil {
		t.Errorf("shutdown with an open feed: %v", err)
	}
	if d := time.Since(stopped); d > 3*time.Second {
		t.Errorf("shutdown took %v with an open feed", d)
	}
	for range events { // the stream ends
	}
}
