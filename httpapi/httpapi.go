package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Config configures the API handlers.
type Config struct {
	// Hub publishes and reports. Required.
	Hub *hub.Hub
	// APIKey, when set, must be sent as "Authorization: Bearer <key>" on
	// every /api/ request; a wrong or missing key gets 401.
	APIKey string
	// MaxMessageBytes bounds a published message's data. Default 65536.
	MaxMessageBytes int
	// RequestTimeout bounds each broker call. Default 5s.
	RequestTimeout time.Duration
	// Metrics are the figures of the node's other parts (its transport,
	// its dialects), exported at /metrics after the hub's own.
	Metrics []func() []hub.Metric
	// Nodes lists the cluster's nodes for GET /api/nodes, each as the
	// JSON object it announced. Nil: the route answers 404.
	Nodes func(ctx context.Context) ([]json.RawMessage, error)
}

// Handler serves the HTTP API.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the API handler. It routes /api/publish, /api/broadcast,
// /api/channels, /healthz, /readyz and /metrics.
func New(cfg Config) *Handler {
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 65536
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	routes := []struct {
		method, path string
		fn           http.HandlerFunc
	}{
		{"POST", "/api/publish", h.publish},
		{"POST", "/api/broadcast", h.broadcast},
		{"GET", "/api/channels", h.channels},
		{"GET", "/api/nodes", h.nodes},
		{"GET", "/api/history", h.history},
		{"GET", "/api/presence", h.presence},
		{"POST", "/api/disconnect", h.disconnect},
		{"POST", "/api/unsubscribe", h.unsubscribeUser},
	}
	allow := map[string]string{}
	for _, rt := range routes {
		h.mux.HandleFunc(rt.method+" "+rt.path, h.auth(rt.fn))
		allow[rt.path] = rt.method
		if rt.method == http.MethodGet {
			allow[rt.path] += ", HEAD"
		}
	}
	h.mux.HandleFunc("/api/", h.auth(func(w http.ResponseWriter, r *http.Request) {
		if methods, ok := allow[r.URL.Path]; ok {
			w.Header().Set("Allow", methods)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]errorBody{"error": {
				Code:    "method_not_allowed",
				Message: r.URL.Path + " takes " + strings.ReplaceAll(methods, ", ", " or ") + ", not " + r.Method,
			}})
			return
		}
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "no such API request: "+r.Method+" "+r.URL.Path))
	}))
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /metrics", h.metrics)
	return h
}

// ServeHTTP routes the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// auth checks the API key, in constant time.
func (h *Handler) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.APIKey != "" {
			token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(h.cfg.APIKey)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
				writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "a valid API key is required as a bearer token"))
				return
			}
		}
		next(w, r)
	}
}

type publishRequest struct {
	Channel        string          `json:"channel"`
	Channels       []string        `json:"channels"`
	Data           json.RawMessage `json:"data"`
	IdempotencyKey string          `json:"idempotency_key"`
}

type positionReply struct {
	Channel string     `json:"channel,omitempty"`
	Epoch   string     `json:"epoch,omitempty"`
	Offset  uint64     `json:"offset,omitempty"`
	Error   *errorBody `json:"error,omitempty"`
}

func (h *Handler) decode(w http.ResponseWriter, r *http.Request) (publishRequest, bool) {
	var req publishRequest
	// The body may hold the data and a little JSON around it.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(h.cfg.MaxMessageBytes)+64*1024))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, protocol.Errorf(protocol.CodeTooLarge, "request body too large"))
		return req, false
	case err != nil:
		writeError(w, protocol.Errorf(protocol.CodeBadRequest, "cannot read request body"))
		return req, false
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, protocol.Errorf(protocol.CodeBadRequest, bodyError(err)))
		return req, false
	}
	if len(req.Data) == 0 {
		writeError(w, protocol.Errorf(protocol.CodeBadRequest, "data is missing"))
		return req, false
	}
	if len(req.IdempotencyKey) > protocol.MaxIdempotencyKeyLen {
		writeError(w, protocol.Errorf(protocol.CodeBadRequest, "idempotency_key is longer than 128 bytes"))
		return req, false
	}
	if len(req.Data) > h.cfg.MaxMessageBytes {
		writeError(w, protocol.Errorf(protocol.CodeTooLarge, "data is larger than the message limit"))
		return req, false
	}
	return req, true
}

// bodyError says what is wrong with a request body that does not decode,
// in the API's terms rather than Go's.
func bodyError(err error) string {
	const want = `body must be a JSON object, like {"channel":"news","data":{"text":"hi"}}`
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "body is not valid JSON (at byte " + strconv.FormatInt(syn.Offset, 10) + "): " + want
	case errors.As(err, &typ) && typ.Field != "":
		kind := map[string]string{"channel": "a string", "channels": "a list of strings", "idempotency_key": "a string"}[typ.Field]
		if kind == "" {
			kind = "of another type"
		}
		return typ.Field + " must be " + kind + ", not a JSON " + typ.Value
	}
	return want
}

// channelError is the error of a bad channel name, naming it.
func channelError(ch string) *protocol.Error {
	if ch == "" {
		return protocol.Errorf(protocol.CodeBadRequest, "channel is missing")
	}
	perr := protocol.ChannelError(ch)
	if perr == nil {
		return nil
	}
	return protocol.Errorf(perr.Code, "channel "+strconv.Quote(ch)+": "+perr.Message)
}

func (h *Handler) publish(w http.ResponseWriter, r *http.Request) {
	req, ok := h.decode(w, r)
	if !ok {
		return
	}
	if perr := channelError(req.Channel); perr != nil {
		writeError(w, perr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	pos, err := h.cfg.Hub.Publish(ctx, req.Channel, req.Data, hub.WithIdempotencyKey(req.IdempotencyKey))
	if err != nil {
		writeError(w, hub.ErrorOf(err))
		return
	}
	writeJSON(w, http.StatusOK, positionReply{Epoch: pos.Epoch, Offset: pos.Offset})
}

func (h *Handler) broadcast(w http.ResponseWriter, r *http.Request) {
	req, ok := h.decode(w, r)
	if !ok {
		return
	}
	if len(req.Channels) == 0 {
		writeError(w, protocol.Errorf(protocol.CodeBadRequest, "channels is missing"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	results := make([]positionReply, len(req.Channels))
	failed := 0
	var firstErr *protocol.Error
	for i, ch := range req.Channels {
		results[i].Channel = ch
		// A bad name fails its channel only: the others are published.
		e := channelError(ch)
		if e == nil {
			pos, err := h.cfg.Hub.Publish(ctx, ch, req.Data, hub.WithIdempotencyKey(req.IdempotencyKey))
			if err != nil {
				e = hub.ErrorOf(err)
			} else {
				results[i].Epoch, results[i].Offset = pos.Epoch, pos.Offset
			}
		}
		if e != nil {
			results[i].Error = &errorBody{Code: e.Code, Message: e.Message}
			failed++
			if firstErr == nil {
				firstErr = e
			}
		}
	}
	if failed == len(req.Channels) {
		// Nothing was published: the request failed as a whole.
		writeError(w, firstErr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// history returns a channel's newest messages: ?channel=c&limit=N.
func (h *Handler) history(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("channel")
	if perr := channelError(ch); perr != nil {
		writeError(w, perr)
		return
	}
	limit := -1
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, protocol.Errorf(protocol.CodeBadRequest, "limit must be a non-negative integer"))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	res, err := h.cfg.Hub.History(ctx, ch, limit)
	if err != nil {
		writeError(w, hub.ErrorOf(err))
		return
	}
	type message struct {
		Offset   uint64          `json:"offset"`
		Data     json.RawMessage `json:"data"`
		Encoding string          `json:"encoding,omitempty"` // "base64" for binary data, as in the native reply
		TS       int64           `json:"ts,omitempty"`       // publish time, ms since the Unix epoch
	}
	msgs := make([]message, len(res.Messages))
	for i, m := range res.Messages {
		msgs[i] = message{Offset: m.Pos.Offset, Data: m.Data, TS: m.Time}
		if m.Binary {
			msgs[i].Data = protocol.AppendString(nil, base64.StdEncoding.EncodeToString(m.Data))
			msgs[i].Encoding = "base64"
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"epoch": res.Pos.Epoch, "offset": res.Pos.Offset, "messages": msgs})
}

// presence lists who is in a channel across the cluster: ?channel=c.
func (h *Handler) presence(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("channel")
	if perr := channelError(ch); perr != nil {
		writeError(w, perr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	entries, err := h.cfg.Hub.Presence(ctx, ch)
	if err != nil {
		writeError(w, hub.ErrorOf(err))
		return
	}
	if entries == nil {
		entries = []broker.PresenceEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": entries})
}

// channels lists the channels with subscribers across the cluster, with
// their subscriber counts.
func (h *Handler) channels(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	counts, err := h.cfg.Hub.ClusterChannels(ctx)
	if err != nil {
		writeError(w, hub.ErrorOf(err))
		return
	}
	type entry struct {
		Channel     string `json:"channel"`
		Subscribers int    `json:"subscribers"`
	}
	list := make([]entry, 0, len(counts))
	for ch, n := range counts {
		list = append(list, entry{ch, n})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Channel < list[j].Channel })
	writeJSON(w, http.StatusOK, map[string]any{"channels": list})
}

// nodes lists the cluster's nodes, as they announced themselves.
func (h *Handler) nodes(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Nodes == nil {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	list, err := h.cfg.Nodes(ctx)
	if err != nil {
		writeError(w, hub.ErrorOf(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": list})
}

// userRequest is the body of /api/disconnect and /api/unsubscribe.
type userRequest struct {
	User    string `json:"user"`
	Channel string `json:"channel"`
}

func decodeUser(w http.ResponseWriter, r *http.Request) (userRequest, bool) {
	var req userRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		writeError(w, protocol.Errorf(protocol.CodeTooLarge, "request body too large"))
		return req, false
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, protocol.Errorf(protocol.CodeBadRequest, "body must be a JSON object like {\"user\":\"ann\"}"))
		return req, false
	}
	if req.User == "" {
		writeError(w, protocol.Errorf(protocol.CodeBadRequest, "user is missing"))
		return req, false
	}
	return req, true
}

// disconnect closes every connection of a user, on every node, with 4001.
func (h *Handler) disconnect(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeUser(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	if err := h.cfg.Hub.DisconnectUser(ctx, req.User); err != nil {
		writeError(w, hub.ErrorOf(err))
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// unsubscribeUser ends a user's subscriptions to a channel, on every node.
func (h *Handler) unsubscribeUser(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeUser(w, r)
	if !ok {
		return
	}
	if perr := channelError(req.Channel); perr != nil {
		writeError(w, perr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	if err := h.cfg.Hub.UnsubscribeUser(ctx, req.User, req.Channel); err != nil {
		writeError(w, hub.ErrorOf(err))
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// readyz answers 200 while the node is ready (listing the broker's shards
// that are down, if any), and 503 otherwise, with why
// in the message: unlike a client's errors it carries the broker's own
// error (what it cannot reach, what it was told), for the operator who
// reads a probe's output. It never holds a password: brokers name their
// servers by address.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if err := h.cfg.Hub.Ready(); err != nil {
		writeError(w, protocol.Errorf(hub.ErrorOf(err).Code, "not ready: "+err.Error()))
		return
	}
	body := readyBody{Status: "ready"}
	for _, sh := range h.cfg.Hub.BrokerShards() {
		if sh.Err != nil {
			body.Unavailable = append(body.Unavailable, shardState{Name: sh.Name, Addr: sh.Addr, Error: sh.Err.Error()})
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// readyBody is /readyz's answer while the node is ready. A node whose
// broker is sharded stays ready while one shard is up; the shards it cannot
// reach are listed, and only their channels' publishes fail.
type readyBody struct {
	Status      string       `json:"status"`
	Unavailable []shardState `json:"unavailable_shards,omitempty"`
}

type shardState struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	Error string `json:"error"`
}

type errorBody struct {
	Code    protocol.Code `json:"code"`
	Message string        `json:"message"`
}

// writeError writes e as the JSON error body with its HTTP status.
func writeError(w http.ResponseWriter, e *protocol.Error) { protocol.WriteHTTPError(w, e) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
