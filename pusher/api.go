package pusher

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
)

// API serves Pusher's HTTP API, /apps/{app_id}/..., for the apps' back
// ends and their Pusher server SDKs: every request signed with the app's
// secret (HMAC-SHA256, auth_timestamp within 600 s, body_md5), every answer
// about the whole cluster. It is safe for concurrent use.
type API struct {
	apps    *Apps
	hub     *hub.Hub
	mux     *http.ServeMux
	timeout time.Duration
	now     func() time.Time
}

// NewAPI returns the HTTP API of apps on h.
func NewAPI(apps *Apps, h *hub.Hub) *API {
	a := &API{apps: apps, hub: h, mux: http.NewServeMux(), timeout: h.Config().RequestTimeout, now: time.Now}
	a.mux.HandleFunc("POST /apps/{app}/events", a.signed(a.events))
	a.mux.HandleFunc("POST /apps/{app}/batch_events", a.signed(a.batchEvents))
	a.mux.HandleFunc("GET /apps/{app}/channels", a.signed(a.channels))
	a.mux.HandleFunc("GET /apps/{app}/channels/{channel}", a.signed(a.channel))
	a.mux.HandleFunc("GET /apps/{app}/channels/{channel}/users", a.signed(a.users))
	a.mux.HandleFunc("POST /apps/{app}/users/{user}/terminate_connections", a.signed(a.terminate))
	a.mux.HandleFunc("/apps/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no such API request: "+r.Method+" "+r.URL.Path)
	})
	return a
}

// ServeHTTP routes a request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// apiError writes an error as Pusher's API does: a status and a text body.
func apiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// signedHandler is an API handler for an app whose request checked out.
type signedHandler func(w http.ResponseWriter, r *http.Request, app *App, body []byte)

// signed checks the app and the request's signature before h.
func (a *API) signed(h signedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		app := a.apps.ByID(r.PathValue("app"))
		if app == nil {
			apiError(w, http.StatusNotFound, "unknown app "+r.PathValue("app"))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			apiError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		if err := app.checkRequest(r.Method, r.URL.Path, r.URL.Query(), body, a.now()); err != nil {
			apiError(w, http.StatusUnauthorized, "Unauthorized: "+err.Error())
			return
		}
		h(w, r, app, body)
	}
}

// triggerRequest is one event to trigger.
type triggerRequest struct {
	Name     string   `json:"name"`
	Data     string   `json:"data"`
	Channels []string `json:"channels"`
	Channel  string   `json:"channel"`
	SocketID string   `json:"socket_id"`
	Info     string   `json:"info"`
}

// check checks an event against Pusher's limits, and returns its channels.
func (t *triggerRequest) check() ([]string, error) {
	chs := t.Channels
	if t.Channel != "" {
		chs = append(chs, t.Channel)
	}
	switch {
	case t.Name == "":
		return nil, errors.New("name is missing")
	case len(t.Name) > maxEventName:
		return nil, errors.New("event name is longer than 200 characters")
	case len(t.Data) > maxEventData:
		return nil, errTooLarge
	case len(chs) == 0:
		return nil, errors.New("channels is missing")
	case len(chs) > maxChannels:
		return nil, errors.New("an event goes to at most 100 channels")
	case t.SocketID != "" && !validSocketID(t.SocketID):
		return nil, errors.New("socket_id is not a socket id")
	}
	for _, ch := range chs {
		if !validChannel(ch) && !strings.HasPrefix(ch, serverToUser) {
			return nil, errors.New("invalid channel name " + ch)
		}
	}
	return chs, nil
}

var errTooLarge = errors.New("event data is larger than 10 KB")

// validSocketID reports whether s looks like a socket id: digits, a dot,
// digits.
func validSocketID(s string) bool {
	a, b, ok := strings.Cut(s, ".")
	return ok && a != "" && b != "" && strings.Trim(a, "0123456789") == "" && strings.Trim(b, "0123456789") == ""
}

// trigger publishes one checked event to its channels.
func (a *API) trigger(ctx context.Context, app *App, t triggerRequest, chs []string) error {
	data := envelope{Event: t.Name, Data: t.Data}.encode()
	var opts []hub.PublishOption
	if t.SocketID != "" {
		opts = append(opts, hub.WithSkip(t.SocketID))
	}
	for _, ch := range chs {
		if _, err := a.hub.Publish(ctx, app.hubChannel(ch), data, opts...); err != nil {
			return err
		}
	}
	return nil
}

func (a *API) events(w http.ResponseWriter, r *http.Request, app *App, body []byte) {
	var t triggerRequest
	if err := json.Unmarshal(body, &t); err != nil {
		apiError(w, http.StatusBadRequest, "body must be a JSON object {name, data, channels}")
		return
	}
	chs, err := t.check()
	if err != nil {
		status := http.StatusBadRequest
		if err == errTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		apiError(w, status, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	if err := a.trigger(ctx, app, t, chs); err != nil {
		e := hub.ErrorOf(err)
		apiError(w, e.Code.HTTPStatus(), e.Message)
		return
	}
	if t.Info == "" {
		writeJSON(w, struct{}{})
		return
	}
	out := map[string]any{}
	for _, ch := range chs {
		out[ch] = a.info(ctx, app, ch, t.Info)
	}
	writeJSON(w, map[string]any{"channels": out})
}

func (a *API) batchEvents(w http.ResponseWriter, r *http.Request, app *App, body []byte) {
	var b struct {
		Batch []triggerRequest `json:"batch"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		apiError(w, http.StatusBadRequest, "body must be a JSON object {batch: [...]}")
		return
	}
	if len(b.Batch) > maxBatch {
		apiError(w, http.StatusBadRequest, "a batch holds at most 10 events")
		return
	}
	chans := make([][]string, len(b.Batch))
	for i := range b.Batch {
		chs, err := b.Batch[i].check()
		if err != nil {
			status := http.StatusBadRequest
			if err == errTooLarge {
				status = http.StatusRequestEntityTooLarge
			}
			apiError(w, status, "batch event "+itoa(i)+": "+err.Error())
			return
		}
		chans[i] = chs
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	var infos []any
	for i, t := range b.Batch {
		if err := a.trigger(ctx, app, t, chans[i]); err != nil {
			e := hub.ErrorOf(err)
			apiError(w, e.Code.HTTPStatus(), e.Message)
			return
		}
		if t.Info != "" {
			infos = append(infos, a.info(ctx, app, chans[i][0], t.Info))
		} else {
			infos = append(infos, struct{}{})
		}
	}
	for _, t := range b.Batch {
		if t.Info != "" {
			writeJSON(w, map[string]any{"batch": infos})
			return
		}
	}
	writeJSON(w, struct{}{})
}

// clusterCounts returns the subscriber count of each of app's channels,
// across the cluster, by Pusher name.
func (a *API) clusterCounts(ctx context.Context, app *App) (map[string]int, error) {
	all, err := a.hub.ClusterChannels(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for hubName, n := range all {
		if id, name, ok := splitChannel(hubName); ok && id == app.ID && n > 0 {
			out[name] = n
		}
	}
	return out, nil
}

// users returns the distinct users of a presence channel.
func (a *API) userIDs(ctx context.Context, app *App, channel string) ([]string, error) {
	entries, err := a.hub.Presence(ctx, app.hubChannel(channel))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var ids []string
	for _, e := range entries {
		if e.User != "" && !seen[e.User] {
			seen[e.User] = true
			ids = append(ids, e.User)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// info answers a channel's info attributes (user_count, subscription_count).
func (a *API) info(ctx context.Context, app *App, channel, attrs string) map[string]any {
	out := map[string]any{}
	for attr := range strings.SplitSeq(attrs, ",") {
		switch strings.TrimSpace(attr) {
		case "user_count":
			if kindOf(channel).presence {
				if ids, err := a.userIDs(ctx, app, channel); err == nil {
					out["user_count"] = len(ids)
				}
			}
		case "subscription_count":
			if counts, err := a.clusterCounts(ctx, app); err == nil {
				out["subscription_count"] = counts[channel]
			}
		}
	}
	return out
}

func (a *API) channels(w http.ResponseWriter, r *http.Request, app *App, _ []byte) {
	q := r.URL.Query()
	prefix, attrs := q.Get("filter_by_prefix"), q.Get("info")
	if strings.Contains(attrs, "user_count") && !strings.HasPrefix(prefix, "presence-") {
		apiError(w, http.StatusBadRequest, "info=user_count needs filter_by_prefix=presence-")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	counts, err := a.clusterCounts(ctx, app)
	if err != nil {
		e := hub.ErrorOf(err)
		apiError(w, e.Code.HTTPStatus(), e.Message)
		return
	}
	out := map[string]any{}
	for name := range counts {
		if !strings.HasPrefix(name, prefix) || strings.HasPrefix(name, serverToUser) {
			continue
		}
		entry := map[string]any{}
		if strings.Contains(attrs, "user_count") {
			if ids, err := a.userIDs(ctx, app, name); err == nil {
				entry["user_count"] = len(ids)
			}
		}
		out[name] = entry
	}
	writeJSON(w, map[string]any{"channels": out})
}

func (a *API) channel(w http.ResponseWriter, r *http.Request, app *App, _ []byte) {
	name := r.PathValue("channel")
	if !validChannel(name) {
		apiError(w, http.StatusBadRequest, "invalid channel name")
		return
	}
	attrs := r.URL.Query().Get("info")
	if strings.Contains(attrs, "user_count") && !kindOf(name).presence {
		apiError(w, http.StatusBadRequest, "user_count is for presence channels")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	counts, err := a.clusterCounts(ctx, app)
	if err != nil {
		e := hub.ErrorOf(err)
		apiError(w, e.Code.HTTPStatus(), e.Message)
		return
	}
	out := map[string]any{"occupied": counts[name] > 0}
	for k, v := range a.info(ctx, app, name, attrs) {
		out[k] = v
	}
	writeJSON(w, out)
}

func (a *API) users(w http.ResponseWriter, r *http.Request, app *App, _ []byte) {
	name := r.PathValue("channel")
	if !kindOf(name).presence || !validChannel(name) {
		apiError(w, http.StatusBadRequest, "users are listed for presence channels only")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	ids, err := a.userIDs(ctx, app, name)
	if err != nil {
		e := hub.ErrorOf(err)
		apiError(w, e.Code.HTTPStatus(), e.Message)
		return
	}
	users := make([]map[string]string, len(ids))
	for i, id := range ids {
		users[i] = map[string]string{"id": id}
	}
	writeJSON(w, map[string]any{"users": users})
}

func (a *API) terminate(w http.ResponseWriter, r *http.Request, app *App, _ []byte) {
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	if err := a.hub.DisconnectUser(ctx, userOf(app, r.PathValue("user"))); err != nil {
		e := hub.ErrorOf(err)
		apiError(w, e.Code.HTTPStatus(), e.Message)
		return
	}
	writeJSON(w, struct{}{})
}

func itoa(i int) string { return strconv.Itoa(i) }
