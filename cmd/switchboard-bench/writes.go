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
	resp, err := metricsClient.Get(u)
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, false
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, cut := strings.Cut(sc.Text(), " ")
		if !cut {
			continue
		}
		var p *uint64
		switch name {
		case "switchboard_writes_total":
			p = &writes
		case "switchboard_frames_written_total":
			p = &frames
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, 0, false
		}
		*p = uint64(f)
		found++
	}
	return writes, frames, found == 2
}
