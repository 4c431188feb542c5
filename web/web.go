// Package web serves Switchboard's demo chat page: index.html, app.js and
// style.css, embedded in the binary, plus the JavaScript client at
// /switchboard.js (from package jsclient). The page speaks the native
// dialect on /ws of the same origin, one channel "chat:<room>" per room,
// except its lobby, which is the raw dialect's channel (Config.Lobby), where
// the seed's chat page and other raw clients are.
// On a server that checks tokens it takes ?token= from its own URL, or a
// development token from GET /dev/token (--dev-token-secret), and says so
// when it has neither.
//
// Handler and New's handlers are safe for concurrent use; the files are
// read-only.
package web

import (
	"bytes"
	"embed"
	"html"
	"io/fs"
	"net/http"
	"strings"
	"time"

	jsclient "github.com/switchboard-rt/switchboard/clients/js"
)

//go:embed index.html app.js style.css
var files embed.FS

// Files returns the page's embedded files (index.html, app.js, style.css).
func Files() fs.FS { return files }

// modTime is when this process started: the embedded files carry no time,
// and a restart may serve new ones, so caches revalidate against it.
var modTime = time.Now()

// Config configures the page.
type Config struct {
	// Lobby is the channel of the page's lobby: the raw dialect's default
	// channel (server.Config.RawChannel), so that raw pages on ws://host/
	// and the demo meet. Default "chat_messages".
	Lobby string
}

// DefaultLobby is the lobby's channel when Config.Lobby is empty.
const DefaultLobby = "chat_messages"

// Handler returns the demo page's handler with the default Config.
func Handler() http.Handler { return New(Config{}) }

// New returns the demo page's handler: index.html at "/", app.js and
// style.css by name, the JS client at "/switchboard.js", and 404 for every
// other path. It answers GET and HEAD only (405 otherwise). The page learns
// cfg.Lobby from a meta tag of index.html.
func New(cfg Config) http.Handler {
	if cfg.Lobby == "" {
		cfg.Lobby = DefaultLobby
	}
	mux := http.NewServeMux()
	serve := func(name, contentType string, body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			h := w.Header()
			h.Set("Content-Type", contentType)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Cache-Control", "no-cache")
			if strings.HasSuffix(name, ".html") {
				h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'")
				h.Set("Referrer-Policy", "no-referrer")
			}
			http.ServeContent(w, r, name, modTime, bytes.NewReader(body))
		}
	}
	mustRead := func(name string) []byte {
		b, err := files.ReadFile(name)
		if err != nil {
			panic("web: embedded file missing: " + name) // impossible: go:embed checked it at build time
		}
		return b
	}
	page := bytes.Replace(mustRead("index.html"), []byte(`content="`+DefaultLobby+`"`),
		[]byte(`content="`+html.EscapeString(cfg.Lobby)+`"`), 1)
	mux.Handle("/{$}", serve("index.html", "text/html; charset=utf-8", page))
	mux.Handle("/index.html", http.RedirectHandler("/", http.StatusMovedPermanently))
	mux.Handle("/app.js", serve("app.js", "text/javascript; charset=utf-8", mustRead("app.js")))
	mux.Handle("/style.css", serve("style.css", "text/css; charset=utf-8", mustRead("style.css")))
	mux.Handle("/switchboard.js", serve("switchboard.js", "text/javascript; charset=utf-8", jsclient.Source))
	return mux
}
