//go:build linux

package main

import (
	"bufio"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// writeCount is the servers' switchboard_writes_total and
// switchboard_frames_written_total, summed.
type writeCount struct {
	writes, frames uint64
	ok             bool
}

// metricsURLs returns the /metrics URL of each distinct server among the
// instance URLs (ws://host:port/... becomes http://host:port/metrics).
func metricsURLs(urls []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || seen[u.Host] {
			continue
		}
		seen[u.Host] = true
		scheme := "http"
		if u.Scheme == "wss" || u.Scheme == "https" {
			scheme = "https"
		}
		out = append(out, scheme+"://"+u.Host+"/metrics")
	}
	return out
}

var metricsClient = &http.Client{Timeout: 2 * time.Second}

// scrapeWrites reads the write counters of every server; ok is false when
// any of them does not export them (the seed, a proxy in front).
func scrapeWrites(urls []string) writeCount {
	c := writeCount{ok: len(urls) > 0}
	for _, u := range urls {
		w, f, ok := scrapeOne(u)
		if !ok {
			return writeCount{}
		}
		c.writes += w
		c.frames += f
	}
	return c
}

func scrapeOne(u string) (writes, frames uint64, ok bool) {
	m, ok := scrapeMetrics(u, "switchboard_writes_total", "switchboard_frames_written_total")
	if !ok {
		return 0, 0, false
	}
	return uint64(m[0]), uint64(m[1]), true
}

// scrapeMetrics reads the values of the named unlabelled metrics from a
// server's /metrics, in the order of names; ok is false unless all of them
// were there.
func scrapeMetrics(u string, names ...string) (vals []float64, ok bool) {
	resp, err := metricsClient.Get(u)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false
	}
	vals = make([]float64, len(names))
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, cut := strings.Cut(sc.Text(), " ")
		if !cut {
			continue
		}
		for i, n := range names {
			if n != name {
				continue
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return nil, false
			}
			vals[i] = f
			found++
		}
	}
	return vals, found == len(names)
}
