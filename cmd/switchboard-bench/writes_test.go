//go:build linux

package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestScrapeWrites reads the write counters the way a run does, from a
// server's /metrics, summing over servers, and gives up (ok false) when a
// server does not export them.
func TestScrapeWrites(t *testing.T) {
	metrics := func(writes, frames int) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "# HELP switchboard_writes_total Socket writes.\n# TYPE switchboard_writes_total counter\nswitchboard_writes_total %d\nswitchboard_frames_written_total %d\nswitchboard_other 7\n", writes, frames)
		}))
	}
	a, b := metrics(10, 45), metrics(5, 20)
	defer a.Close()
	defer b.Close()
	ws := func(s *httptest.Server) string { return "ws://" + strings.TrimPrefix(s.URL, "http://") + "/ws" }
	urls := metricsURLs([]string{ws(a), ws(b), ws(a)})
	if len(urls) != 2 || urls[0] != a.URL+"/metrics" {
		t.Fatalf("metrics URLs %q", urls)
	}
	if got := scrapeWrites(urls); !got.ok || got.writes != 15 || got.frames != 65 {
		t.Errorf("scrape: %+v, want 15 writes, 65 frames", got)
	}
	seed := httptest.NewServer(http.NotFoundHandler())
	defer seed.Close()
	if got := scrapeWrites(metricsURLs([]string{ws(a), ws(seed)})); got.ok {
		t.Errorf("scrape with a server without metrics: %+v, want not ok", got)
	}
}

// TestProcSyscalls reads this process's own system call counts.
func TestProcSyscalls(t *testing.T) {
	r0, w0, err := procSyscalls(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	r1, w1, err := procSyscalls(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if w1-w0 < 10 || r1 < r0 {
		t.Errorf("after 10 writes: syscw %d→%d, syscr %d→%d", w0, w1, r0, r1)
	}
}

// TestSVGPlot renders the plot from results as a run writes them: one
// well-formed SVG with a series per side in each chart, leaving out the
// steps that lost messages.
func TestSVGPlot(t *testing.T) {
	var results []Result
	for i, rate := range []float64{100, 150, 225} {
		results = append(results,
			Result{Label: "seed", Scenario: "ramp", Dialect: "raw", Subscribers: 1000, Rate: rate, Latency: &Latency{P99MS: 50 * float64(i+1)}, ServerCPUUSPerDeliv: 13},
			Result{Label: "switchboard", Scenario: "ramp", Dialect: "raw", Subscribers: 1000, Rate: rate, Latency: &Latency{P99MS: 20}, ServerCPUUSPerDeliv: 2.5, Lost: uint64(i / 2)})
	}
	path := t.TempDir() + "/plot.svg"
	if err := writeSVGFile(path, results); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 4 {
		t.Errorf("%d lines, want 4 (two sides in two charts)", polylines)
	}
	if n := strings.Count(string(b), "<circle"); n != 2*(3+2) {
		t.Errorf("%d points, want 10 (the switchboard step that lost messages left out)", n)
	}
	if err := writeSVGFile(path, nil); err == nil {
		t.Error("a plot of nothing: no error")
	}
}
