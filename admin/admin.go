package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

//go:embed index.html admin.js admin.css
var files embed.FS

// modTime is when this process started: the embedded files carry no time.
var modTime = time.Now()

// User is the user name the dashboard's Basic credentials carry.
const User = "admin"

// Realm is the Basic authentication realm the dashboard asks for.
const Realm = "switchboard admin"

// Header is the request header the page sends with every action; a
// request without it is refused, so that a page of another site cannot
// post a form to the actions with the browser's saved credentials.
const Header = "X-Switchboard-Admin"

// The defaults of Config.
const (
	DefaultInterval    = time.Second
	DefaultTopChannels = 20
)

// Config configures the dashboard. Password, Nodes, Channels and API are
// required.
type Config struct {
	// Password is the password of the user "admin".
	Password string
	// NodeID names the node that serves the dashboard (its feed says so).
	NodeID string
	// Nodes lists the cluster's live nodes, each the JSON object it
	// announced (server.NodeInfo): the source of GET /api/nodes.
	Nodes func(ctx context.Context) ([]json.RawMessage, error)
	// Channels returns the subscriber count of every channel across the
	// cluster (hub.Hub.ClusterChannels).
	Channels func(ctx context.Context) (map[string]int, error)
	// API serves the HTTP API's requests (httpapi.Handler) without an API
	// key of its own: /api/publish, /api/disconnect, /api/history and
	// /api/presence, which the dashboard serves under /admin/api/.
	API http.Handler
	// Interval is the time between two events of the feed. Default
	// DefaultInterval (a second).
	Interval time.Duration
	// TopChannels is how many channels the feed lists, the busiest first.
	// Default DefaultTopChannels.
	TopChannels int
	// RequestTimeout bounds the reading of one event's figures. Default 5s.
	RequestTimeout time.Duration
	// Logger receives the handler's logs. Default slog.Default().
	Logger *slog.Logger
}

// Handler serves the dashboard under /admin/.
type Handler struct {
	cfg       Config
	passHash  [sha256.Size]byte
	page      []byte
	script    []byte
	style     []byte
	closed    chan struct{} // closed by Close: every feed ends
	closeOnce sync.Once
}

// New returns the dashboard's handler. It fails when a required field of
// cfg is missing.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Password == "":
		return nil, errors.New("admin: a password is required")
	case cfg.Nodes == nil, cfg.Channels == nil, cfg.API == nil:
		return nil, errors.New("admin: Nodes, Channels and API are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.TopChannels <= 0 {
		cfg.TopChannels = DefaultTopChannels
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, passHash: sha256.Sum256([]byte(cfg.Password)), closed: make(chan struct{})}
	h.page = mustRead("index.html")
	h.script = mustRead("admin.js")
	h.style = mustRead("admin.css")
	return h, nil
}

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("admin: embedded file missing: " + name) // impossible: go:embed checked it at build time
	}
	return b
}

// Close ends every open feed, now and from now on; the page's files and
// actions are still served. Call it as the server's shutdown begins:
// http.Server.Shutdown waits for a streaming response to end.
func (h *Handler) Close() { h.closeOnce.Do(func() { close(h.closed) }) }

// ServeHTTP serves /admin (redirected to /admin/) and every path under
// /admin/, once the request carries the admin's credentials.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeUnauthorized, "the dashboard needs the admin's password (user "+User+")"))
		return
	}
	p := r.URL.Path
	switch {
	case p == "/admin":
		http.Redirect(w, r, "/admin/", http.StatusMovedPermanently)
	case p == "/admin/", p == "/admin/index.html":
		h.file(w, r, "index.html", "text/html; charset=utf-8", h.page)
	case p == "/admin/admin.js":
		h.file(w, r, "admin.js", "text/javascript; charset=utf-8", h.script)
	case p == "/admin/admin.css":
		h.file(w, r, "admin.css", "text/css; charset=utf-8", h.style)
	case p == "/admin/feed":
		if !methodIs(w, r, http.MethodGet) || !sameOrigin(w, r) {
			return
		}
		h.feed(w, r)
	case strings.HasPrefix(p, "/admin/api/"):
		h.api(w, r, strings.TrimPrefix(p, "/admin/api/"))
	default:
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeNotFound, "no such page of the dashboard: "+p))
	}
}

// authorized reports whether r carries the admin's Basic credentials. The
// user and the password are compared in constant time: the password as its
// hash, so that the comparison does not reveal its length either.
func (h *Handler) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	ph := sha256.Sum256([]byte(pass))
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(User))
	passOK := subtle.ConstantTimeCompare(ph[:], h.passHash[:])
	return userOK&passOK == 1
}

// file serves one of the page's embedded files.
func (h *Handler) file(w http.ResponseWriter, r *http.Request, name, contentType string, body []byte) {
	if !methodIs(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-cache")
	if name == "index.html" {
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
	}
	http.ServeContent(w, r, name, modTime, bytes.NewReader(body))
}

// methodIs answers 405, as the HTTP API does, unless r's method is one of
// methods.
func methodIs(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusMethodNotAllowed)
	msg := r.URL.Path + " takes " + strings.Join(methods, " or ") + ", not " + r.Method
	_, _ = w.Write(append(protocol.AppendString([]byte(`{"error":{"code":"method_not_allowed","message":`), msg), "}}\n"...))
	return false
}

// sameOrigin refuses (403) a request that a browser says comes from
// another site: by Sec-Fetch-Site, which every current browser sends and
// which a proxy does not change, or else by an Origin whose host is not
// the request's. A request that says neither (curl, a script) passes.
func sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	ok := true
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		ok = site == "same-origin"
	} else if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		ok = err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
	if !ok {
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeForbidden, "the dashboard's requests must come from the dashboard's own page"))
	}
	return ok
}

// apiRoutes are the HTTP API's requests the dashboard serves, by name
// under /admin/api/, with their method.
var apiRoutes = map[string]string{
	"publish":    http.MethodPost,
	"disconnect": http.MethodPost,
	"history":    http.MethodGet,
	"presence":   http.MethodGet,
}

// api serves /admin/api/{name} as the HTTP API's /api/{name}. An action
// (POST) also needs the page's header, which a form of another site cannot
// send and a script of another site cannot send without the permission
// (CORS) the server never gives.
func (h *Handler) api(w http.ResponseWriter, r *http.Request, name string) {
	method, ok := apiRoutes[name]
	if !ok {
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeNotFound, "no such dashboard request: "+r.Method+" "+r.URL.Path))
		return
	}
	if !methodIs(w, r, method) || !sameOrigin(w, r) {
		return
	}
	if method == http.MethodPost && r.Header.Get(Header) == "" {
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeForbidden, "the dashboard's actions need the "+Header+" header its page sends"))
		return
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = "/api/"+name, ""
	r2.URL = &u
	r2.Header = r.Header.Clone()
	r2.Header.Del("Authorization") // the admin's credentials are not an API key
	h.cfg.API.ServeHTTP(w, r2)
}

// event is one event of the feed.
type event struct {
	Time     int64             `json:"time"` // ms since the epoch
	Node     string            `json:"node"` // the node serving the dashboard
	Nodes    []json.RawMessage `json:"nodes"`
	Channels []channelCount    `json:"channels"`       // the busiest, most subscribers first
	Total    int               `json:"channels_total"` // channels with subscribers in the cluster
	Errors   []string          `json:"errors,omitempty"`
}

type channelCount struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
}

// collect reads the cluster's figures for one event. What cannot be read
// is named in the event's errors, and the rest is still sent.
func (h *Handler) collect(ctx context.Context) event {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	e := event{Time: time.Now().UnixMilli(), Node: h.cfg.NodeID, Nodes: []json.RawMessage{}, Channels: []channelCount{}}
	if nodes, err := h.cfg.Nodes(ctx); err != nil {
		e.Errors = append(e.Errors, "nodes: "+err.Error())
	} else if nodes != nil {
		e.Nodes = nodes
	}
	counts, err := h.cfg.Channels(ctx)
	if err != nil {
		e.Errors = append(e.Errors, "channels: "+err.Error())
	}
	e.Channels, e.Total = top(counts, h.cfg.TopChannels)
	return e
}

// top returns the n channels with the most subscribers, by count then
// name, and how many channels have any.
func top(counts map[string]int, n int) ([]channelCount, int) {
	list := make([]channelCount, 0, len(counts))
	for ch, c := range counts {
		if c > 0 {
			list = append(list, channelCount{ch, c})
		}
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Subscribers != list[j].Subscribers {
			return list[i].Subscribers > list[j].Subscribers
		}
		return list[i].Channel < list[j].Channel
	})
	total := len(list)
	if len(list) > n {
		list = list[:n]
	}
	return list, total
}

// feed streams one "cluster" event every Interval until the client goes
// or Close is called.
func (h *Handler) feed(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // nginx: pass each event at once
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	var buf bytes.Buffer
	for {
		select {
		case <-h.closed:
			return
		default:
		}
		e := h.collect(r.Context())
		buf.Reset()
		buf.WriteString("event: cluster\ndata: ")
		if err := json.NewEncoder(&buf).Encode(e); err != nil { // ends with the "\n" of the data line
			h.cfg.Logger.Error("admin: cannot encode the feed's event", "err", err)
			return
		}
		buf.WriteString("\n")
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-h.closed:
			return
		case <-t.C:
		}
	}
}
