package web_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsclient "github.com/switchboard-rt/switchboard/clients/js"
	"github.com/switchboard-rt/switchboard/web"
)

func TestHandlerServesFiles(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)

	tests := []struct {
		name        string
		path        string
		contentType string
		contains    string
	}{
		{"page", "/", "text/html; charset=utf-8", `<script src="switchboard.js"></script>`},
		{"app", "/app.js", "text/javascript; charset=utf-8", "new Switchboard.Client("},
		{"page auth banner", "/", "text/html; charset=utf-8", `id="auth-banner"`},
		{"app dev tokens", "/app.js", "text/javascript; charset=utf-8", "'/dev/token?user='"},
		{"style", "/style.css", "text/css; charset=utf-8", ".messages"},
		{"client", "/switchboard.js", "text/javascript; charset=utf-8", "root.Switchboard = factory()"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatalf("GET %s: %v", tc.path, err)
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatalf("read %s: %v", tc.path, err)
			}
			if res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: status %d, want 200", tc.path, res.StatusCode)
			}
			if got := res.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.contentType)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", tc.path, got)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("GET %s: body does not contain %q", tc.path, tc.contains)
			}
		})
	}
}

func TestHandlerServesTheEmbeddedClient(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	web.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/switchboard.js", nil))
	if !bytes.Equal(rec.Body.Bytes(), jsclient.Source) {
		t.Fatalf("/switchboard.js is not jsclient.Source (%d bytes, want %d)", rec.Body.Len(), len(jsclient.Source))
	}
	if len(jsclient.Source) == 0 {
		t.Fatal("jsclient.Source is empty")
	}
}

func TestHandlerRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		path   string
		status int
	}{
		{"unknown path", http.MethodGet, "/nope.js", http.StatusNotFound},
		{"embed source", http.MethodGet, "/web.go", http.StatusNotFound},
		{"post", http.MethodPost, "/", http.StatusMethodNotAllowed},
		{"index redirect", http.MethodGet, "/index.html", http.StatusMovedPermanently},
	}
	h := web.Handler()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.status {
				t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, rec.Code, tc.status)
			}
		})
	}
}

func TestHandlerHead(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	web.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/app.js", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Fatalf("HEAD /app.js: status %d, %d body bytes; want 200 and none", rec.Code, rec.Body.Len())
	}
}

// The page's lobby is the server's raw channel, written in its meta tag.
func TestLobbyIsTheRawChannel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  web.Config
		want string
	}{
		{web.Config{}, `<meta name="switchboard-lobby" content="chat_messages">`},
		{web.Config{Lobby: "news:front"}, `<meta name="switchboard-lobby" content="news:front">`},
	} {
		rec := httptest.NewRecorder()
		web.New(tc.cfg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%+v: page lacks %s", tc.cfg, tc.want)
		}
	}
}
