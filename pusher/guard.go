package pusher

import (
	"strings"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Guard wraps the node's Authorizer for the apps' channels: raw and native
// clients may never reach a private, presence or encrypted channel, nor a
// user's server-to-user channel, of any app (only the app's signatures
// open those, to Pusher clients, whose subscriptions the dialect grants
// itself). Public channels are left to next.
func (a *Apps) Guard(next hub.Authorizer) hub.Authorizer {
	return hub.AuthorizerFunc(func(id *hub.Identity, act hub.Action, channel string) error {
		if appID, name, ok := splitChannel(channel); ok && a.ByID(appID) != nil {
			if k := kindOf(name); k.private || k.presence || strings.HasPrefix(name, serverToUser) {
				return protocol.Errorf(protocol.CodeForbidden, channel+" is a Pusher channel that only the app's signature opens")
			}
		}
		return next.Authorize(id, act, channel)
	})
}

// ChannelOptions gives the apps' channels what their names ask for:
// presence- channels keep presence counted by user (member events), and
// cache- channels keep their last event. It is hub.Config.ChannelOptions.
func (a *Apps) ChannelOptions(channel string, o hub.NamespaceOptions) hub.NamespaceOptions {
	appID, name, ok := splitChannel(channel)
	if !ok || a.ByID(appID) == nil {
		return o
	}
	k := kindOf(name)
	if k.presence {
		o.Presence, o.Members = true, true
	}
	if app := a.ByID(appID); app.wants("channel_occupied") || app.wants("channel_vacated") {
		o.Occupancy = true
	}
	if k.cache && o.HistorySize < 1 {
		o.HistorySize = 1
	}
	return o
}
