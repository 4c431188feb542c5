package web_test

import (
	"net/http"

	"github.com/switchboard-rt/switchboard/web"
)

// The demo page is an ordinary http.Handler: mount it on the paths the node
// does not route itself.
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	srv := &http.Server{Addr: ":8080", Handler: mux}
	_ = srv // srv.ListenAndServe()
}
