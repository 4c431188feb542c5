// Package admin serves switchboard's cluster dashboard at /admin/: a page
// for the people who operate a cluster, embedded in the binary (plain
// HTML, CSS and JavaScript, no build step, nothing fetched from elsewhere).
// It shows every live node with its figures, charts of connections and
// messages per second for the cluster and per node, the busiest channels,
// a channel's presence and recent history, and it can publish a test
// message and disconnect a user.
//
// Every path under /admin/ asks for HTTP Basic credentials (user "admin",
// Config.Password), compared in constant time: the page, its feed and its
// actions alike. The actions also refuse cross-site requests: they need
// the header the page sends (X-Switchboard-Admin) and, when the browser
// says where the request comes from (Sec-Fetch-Site, Origin), the same
// origin. Basic credentials travel in clear text: serve the dashboard over
// TLS only.
//
// The page's live data comes from its own feed, GET /admin/feed, a stream
// of Server-Sent Events: one "cluster" event a second with the nodes (as
// Config.Nodes lists them) and the busiest channels. The actions and the
// channel views are the HTTP API's requests (Config.API) under
// /admin/api/: publish, disconnect, history and presence.
//
// A Handler is safe for concurrent use. It starts no goroutine: each feed
// runs in the goroutine net/http gave its request, and ends when the
// client goes or Close is called, which the server does as its shutdown
// begins, so that an open dashboard never holds a graceful shutdown.
package admin
