// Package pusher is the Pusher Channels dialect: existing pusher-js,
// Laravel Echo and Pusher server SDK users point them at a switchboard
// and change nothing else. It serves the Pusher WebSocket protocol
// (version 7) on /app/{key} as a hub.Dialect, on the hub's public verbs, and
// the Pusher HTTP API (/apps/{id}/...) with its request signatures.
//
// Each app is its own channel space: the Pusher channel "my-channel" of app
// "app1" is the hub channel "app1:my-channel", so that raw and native
// clients reach it under that name (and only there), and so that each app's
// channels are a namespace with options of their own. Private, presence
// and encrypted channels are closed to raw and native clients (Guard); only
// the signatures of the app's secret open them.
//
// A Dialect and its Apps are safe for concurrent use; the hub calls the
// dialect's handlers from each client's reader, one message at a time.
package pusher

import (
	"errors"
	"fmt"
	"strings"

	"github.com/switchboard-rt/switchboard/protocol"
)

// App is one Pusher app: its credentials and its settings.
type App struct {
	// ID names the app in the HTTP API's paths and is the namespace of its
	// channels; it may use the characters of a channel name but ':'.
	ID string `yaml:"id"`
	// Key is public: clients connect to /app/{key}.
	Key string `yaml:"key"`
	// Secret signs channel authorizations, user sign-ins and HTTP API
	// requests. It never leaves the server.
	Secret string `yaml:"secret"`
	// ClientEvents lets clients send client-* events on the private and
	// presence channels they are in. Off by default, as in Pusher.
	ClientEvents bool `yaml:"client_events"`
	// MaxConnections bounds the app's connections on this node (4100 over
	// capacity beyond); zero sets no limit.
	MaxConnections int `yaml:"max_connections"`
	// AllowedOrigins, when set, are the only browser origins that may open
	// the app's connections (the node's own origin policy applies first).
	AllowedOrigins []string `yaml:"allowed_origins"`
	// Webhooks receive the app's channel and member events.
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is one endpoint of an app's webhooks.
type Webhook struct {
	URL string `yaml:"url"`
	// Events are the kinds sent: channel_occupied, channel_vacated,
	// member_added, member_removed, client_event. Empty sends all.
	Events []string `yaml:"events"`
}

// Apps are the apps a node serves. It is read-only once made.
type Apps struct {
	byKey map[string]*App
	byID  map[string]*App
	list  []*App
}

// NewApps checks the apps and returns them, indexed.
func NewApps(apps []App) (*Apps, error) {
	a := &Apps{byKey: map[string]*App{}, byID: map[string]*App{}}
	for i := range apps {
		app := apps[i]
		switch {
		case app.ID == "" || app.Key == "" || app.Secret == "":
			return nil, fmt.Errorf("pusher: app %q: id, key and secret are required", app.ID)
		case strings.Contains(app.ID, ":") || protocol.ValidateChannel(app.ID) != nil:
			return nil, fmt.Errorf("pusher: app id %q: use 1 to 200 of A-Z a-z 0-9 _ - = @ , . ;", app.ID)
		case a.byID[app.ID] != nil:
			return nil, fmt.Errorf("pusher: two apps have the id %q", app.ID)
		case a.byKey[app.Key] != nil:
			return nil, fmt.Errorf("pusher: two apps have the key %q", app.Key)
		}
		for _, w := range app.Webhooks {
			if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
				return nil, fmt.Errorf("pusher: app %q: webhook URL %q is not http(s)", app.ID, w.URL)
			}
			for _, e := range w.Events {
				if !webhookEvents[e] {
					return nil, fmt.Errorf("pusher: app %q: unknown webhook event %q", app.ID, e)
				}
			}
		}
		a.byKey[app.Key], a.byID[app.ID] = &app, &app
		a.list = append(a.list, &app)
	}
	if len(a.list) == 0 {
		return nil, errors.New("pusher: no app")
	}
	return a, nil
}

// ByKey returns the app with key, or nil.
func (a *Apps) ByKey(key string) *App { return a.byKey[key] }

// ByID returns the app with id, or nil.
func (a *Apps) ByID(id string) *App { return a.byID[id] }

// All returns every app.
func (a *Apps) All() []*App { return a.list }

// HaveWebhooks reports whether some app has webhooks.
func (a *Apps) HaveWebhooks() bool {
	for _, app := range a.list {
		if len(app.Webhooks) > 0 {
			return true
		}
	}
	return false
}

// webhookEvents are the kinds of webhook events.
var webhookEvents = map[string]bool{
	"channel_occupied": true, "channel_vacated": true, "member_added": true, "member_removed": true, "client_event": true,
}

// The limits of Pusher's documentation.
const (
	maxChannelName   = 164      // characters of a channel name
	maxEventName     = 200      // characters of an event name
	maxEventData     = 10 << 10 // bytes of an event's data
	maxChannels      = 100      // channels of one triggered event
	maxBatch         = 10       // events of one batch
	maxPresenceUsers = 100      // members of a presence channel
	maxUserData      = 1000     // bytes of a presence member's channel_data
	clientEventRate  = 10       // client events a second per connection
	activityTimeout  = 120      // seconds, advertised to clients
	serverToUser     = "#server-to-user-"
	hubServerToUser  = "server-to-user-" // its hub channel's prefix, after the app's namespace
)

// channelKind is what a channel's name says it is.
type channelKind struct {
	private, presence, encrypted, cache bool
}

func kindOf(name string) channelKind {
	var k channelKind
	switch {
	case strings.HasPrefix(name, "private-encrypted-"):
		k.private, k.encrypted = true, true
		name = strings.TrimPrefix(name, "private-encrypted-")
	case strings.HasPrefix(name, "private-"):
		k.private = true
		name = strings.TrimPrefix(name, "private-")
	case strings.HasPrefix(name, "presence-"):
		k.presence = true
		name = strings.TrimPrefix(name, "presence-")
	}
	k.cache = strings.HasPrefix(name, "cache-")
	return k
}

// validChannel reports whether name is a Pusher channel name a client may
// subscribe to: A-Z a-z 0-9 _ - = @ , . ; and at most 164 characters.
func validChannel(name string) bool {
	if name == "" || len(name) > maxChannelName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-=@,.;", c) >= 0) {
			return false
		}
	}
	return true
}

// hubChannel is the hub channel of app's channel name.
func (app *App) hubChannel(name string) string {
	if rest, ok := strings.CutPrefix(name, serverToUser); ok {
		return app.ID + ":" + hubServerToUser + rest
	}
	return app.ID + ":" + name
}

// splitChannel returns the app id and the Pusher name of a hub channel; ok
// is false for a channel outside every app's namespace.
func splitChannel(hubName string) (appID, name string, ok bool) {
	appID, name, ok = strings.Cut(hubName, ":")
	if !ok {
		return "", "", false
	}
	if rest, isUser := strings.CutPrefix(name, hubServerToUser); isUser {
		name = serverToUser + rest
	}
	return appID, name, true
}
