package pusher

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
)

// Webhooks sends the apps' webhooks: channel_occupied, channel_vacated,
// member_added, member_removed and client_event, batched (an event waits at
// most batchWait for others to share its request), signed as Pusher signs
// them (X-Pusher-Key, X-Pusher-Signature: the body's HMAC-SHA256 under the
// app's secret), and retried with backoff. Each event is sent by the one
// node that caused it (hub.Config.Observe), so the cluster sends it once.
//
// Its goroutines (the batcher, and one per request in flight) are its
// own; Close ends them. It is safe for concurrent use.
type Webhooks struct {
	apps   *Apps
	log    *slog.Logger
	client *http.Client
	queue  chan hookEvent // never closed
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	sem    chan struct{} // bounds the requests in flight
}

// hookEvent is one event of one app's webhooks.
type hookEvent struct {
	app *App
	e   map[string]any
}

// batchWait and batchMax bound a batch: by age, by size.
const (
	batchWait    = 100 * time.Millisecond
	batchMax     = 100
	hookAttempts = 6
)

// NewWebhooks returns the sender of apps' webhooks, started.
func NewWebhooks(apps *Apps, log *slog.Logger) *Webhooks {
	if log == nil {
		log = slog.Default()
	}
	w := &Webhooks{
		apps:   apps,
		log:    log,
		client: &http.Client{Timeout: 10 * time.Second},
		queue:  make(chan hookEvent, 10000),
		stop:   make(chan struct{}),
		sem:    make(chan struct{}, 16),
	}
	w.wg.Add(1)
	go w.batcher()
	return w
}

// Close stops sending: the batches in flight get until ctx is done.
func (w *Webhooks) Close(ctx context.Context) {
	w.once.Do(func() { close(w.stop) })
	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// wants reports whether an app has webhooks for kind.
func (app *App) wants(kind string) bool {
	for _, h := range app.Webhooks {
		if len(h.Events) == 0 || slices.Contains(h.Events, kind) {
			return true
		}
	}
	return false
}

// add queues an event of app; a full queue drops it, logged.
func (w *Webhooks) add(app *App, e map[string]any) {
	select {
	case w.queue <- hookEvent{app, e}:
	default:
		w.log.Warn("pusher: webhook queue full; event dropped", "app", app.ID, "event", e["name"])
	}
}

// Observe is hub.Config.Observe: it turns the hub's once-per-cluster
// events of the apps' channels into webhooks.
func (w *Webhooks) Observe(e hub.Event) {
	appID, name, ok := splitChannel(e.Channel)
	app := w.apps.ByID(appID)
	if !ok || app == nil {
		return
	}
	var kind string
	switch e.Op {
	case "occupied":
		kind = "channel_occupied"
	case "vacated":
		kind = "channel_vacated"
	case "member_added", "member_removed":
		kind = e.Op
	default:
		return
	}
	if !app.wants(kind) {
		return
	}
	ev := map[string]any{"name": kind, "channel": name}
	if e.User != "" {
		ev["user_id"] = e.User
	}
	w.add(app, ev)
}

// clientEvent queues a client_event webhook.
func (w *Webhooks) clientEvent(app *App, channel, event, data, socketID, userID string) {
	if !app.wants("client_event") {
		return
	}
	ev := map[string]any{"name": "client_event", "channel": channel, "event": event, "data": data, "socket_id": socketID}
	if userID != "" {
		ev["user_id"] = userID
	}
	w.add(app, ev)
}

// batcher gathers events per app and hands each batch to a sender.
func (w *Webhooks) batcher() {
	defer w.wg.Done()
	pending := map[*App][]map[string]any{}
	var first time.Time
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	flush := func() {
		for app, evs := range pending {
			w.send(app, evs)
		}
		clear(pending)
		first = time.Time{}
	}
	for {
		select {
		case <-w.stop:
			flush()
			return
		case he := <-w.queue:
			if first.IsZero() {
				first = time.Now()
				timer.Reset(batchWait)
			}
			pending[he.app] = append(pending[he.app], he.e)
			if len(pending[he.app]) >= batchMax {
				w.send(he.app, pending[he.app])
				delete(pending, he.app)
			}
		case <-timer.C:
			flush()
		}
	}
}

// send posts one batch to each of the app's webhooks that wants some of
// it, each on a goroutine of its own that retries with backoff.
func (w *Webhooks) send(app *App, events []map[string]any) {
	now := time.Now().UnixMilli()
	for _, hook := range app.Webhooks {
		var mine []map[string]any
		for _, e := range events {
			if len(hook.Events) == 0 || slices.Contains(hook.Events, e["name"].(string)) {
				mine = append(mine, e)
			}
		}
		if len(mine) == 0 {
			continue
		}
		body, _ := json.Marshal(map[string]any{"time_ms": now, "events": mine})
		w.wg.Add(1)
		go w.post(app, hook.URL, body)
	}
}

// post delivers one webhook request, retrying a failure (a network error
// or a status other than 2xx) with a doubling delay, hookAttempts times.
func (w *Webhooks) post(app *App, url string, body []byte) {
	defer w.wg.Done()
	w.sem <- struct{}{}
	defer func() { <-w.sem }()
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			w.log.Warn("pusher: bad webhook URL", "app", app.ID, "err", err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Pusher-Key", app.Key)
		req.Header.Set("X-Pusher-Signature", sign(app.Secret, string(body)))
		resp, err := w.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
		}
		if attempt == hookAttempts {
			w.log.Warn("pusher: webhook not delivered", "app", app.ID, "url", url, "attempts", attempt, "err", err)
			return
		}
		select {
		case <-w.stop:
			return
		case <-time.After(delay):
		}
		delay *= 2
	}
}
