//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

func f1(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func f3(v float64) string { return fmt.Sprintf("%.3f", v) }

// tableRows returns the header and rows of results, grouped in tables by
// kind: delivery scenarios, idle, connect, ramp summaries.
func tableRows(results []Result) map[string][][]string {
	t := map[string][][]string{}
	add := func(kind string, header, row []string) {
		if len(t[kind]) == 0 {
			t[kind] = append(t[kind], header)
		}
		t[kind] = append(t[kind], row)
	}
	for _, r := range results {
		name := r.Scenario
		if r.Step > 0 {
			name = fmt.Sprintf("%s#%d", r.Scenario, r.Step)
		}
		switch r.Scenario {
		case "broadcast", "ramp", "rooms":
			l := r.Latency
			if l == nil {
				l = &Latency{}
			}
			pass := ""
			if r.Pass != nil {
				pass = map[bool]string{true: "pass", false: "FAIL"}[*r.Pass]
			}
			add("delivery", []string{"label", "scenario", "dialect", "subs", "rate", "sent/s", "expected", "delivered", "lost", "dup", "ooo", "deliv/s",
				"p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "srv cpu s", "srv µs/deliv", "syscalls/deliv", "frames/write", "bench cpu s", "disc", "", ""},
				[]string{r.Label, name, r.Dialect, fmt.Sprint(r.Subscribers), f1(r.Rate), f1(r.SentRate), fmt.Sprint(r.Expected), fmt.Sprint(r.Delivered),
					fmt.Sprint(r.Lost), fmt.Sprint(r.Duplicated), fmt.Sprint(r.OutOfOrder), f1(r.DeliveriesPerSec),
					f3(l.P50MS), f3(l.P90MS), f3(l.P99MS), f3(l.P999MS), f3(l.MaxMS),
					f1(r.ServerCPUSec), f3(r.ServerCPUUSPerDeliv), f3(r.SyscallsPerDeliv), f3(r.FramesPerWrite), f1(r.BenchCPUSec), fmt.Sprint(r.Disconnects), pass, r.FirstError})
		case "ramp-summary":
			add("ramp", []string{"label", "scenario", "dialect", "subs", "sustained rate msg/s", "sustained deliveries/s", "srv µs/deliv there", "p99 bound ms"},
				[]string{r.Label, r.Scenario, r.Dialect, fmt.Sprint(r.Subscribers), f1(r.SustainedRate), f1(r.SustainedDeliveriesSec), f3(r.ServerCPUUSPerDeliv), f1(r.P99MaxMS)})
		case "idle":
			var before, after int64
			for _, s := range r.Servers {
				before += s.RSSKB0
				after += s.RSSKB
			}
			add("idle", []string{"label", "scenario", "dialect", "conns", "conn errors", "disconnects", "server RSS before KB", "after KB", "server bytes/conn", "handshakes/s", "hold cpu %", "srv cpu s", "bench cpu s", ""},
				[]string{r.Label, r.Scenario, r.Dialect, fmt.Sprint(r.Conns), fmt.Sprint(r.ConnErrors), fmt.Sprint(r.Disconnects), fmt.Sprint(before), fmt.Sprint(after),
					f1(r.BytesPerConn), f1(r.HandshakesPerSec), f3(r.HoldCPUPercent), f1(r.ServerCPUSec), f1(r.BenchCPUSec), r.FirstError})
		case "connect":
			l := r.Handshake
			if l == nil {
				l = &Latency{}
			}
			add("connect", []string{"label", "scenario", "dialect", "conns", "errors", "handshakes/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "srv µs/handshake", "bench cpu s", ""},
				[]string{r.Label, r.Scenario, r.Dialect, fmt.Sprint(r.Conns), fmt.Sprint(r.ConnErrors), f1(r.HandshakesPerSec), f3(l.P50MS), f3(l.P90MS), f3(l.P99MS), f3(l.MaxMS),
					f1(r.ServerCPUUSPerHandsh), f1(r.BenchCPUSec), r.FirstError})
		}
	}
	return t
}

var tableOrder = []string{"delivery", "ramp", "idle", "connect"}

// writeTable prints results as aligned tables.
func writeTable(w io.Writer, results []Result) {
	t := tableRows(results)
	for _, kind := range tableOrder {
		rows := t[kind]
		if len(rows) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	for i := range results {
		writeSoakSummary(w, &results[i])
	}
}

// writeJSONLines appends one JSON object per result to path ("-" is
// stdout).
func writeJSONLines(path string, stdout io.Writer, results []Result) error {
	w := stdout
	if path != "-" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	enc := json.NewEncoder(w)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

func readJSONLines(path string) ([]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

func runReport(in, out, svg string, stdout, stderr io.Writer) int {
	if in == "" {
		fmt.Fprintln(stderr, "report: --in results.jsonl is required")
		return 2
	}
	results, err := readJSONLines(in)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	writeTable(stdout, results)
	if out != "" {
		if err := writeHTMLFile(out, results); err != nil {
			fmt.Fprintln(stderr, "report:", err)
			return 1
		}
	}
	if svg != "" {
		if err := writeSVGFile(svg, results); err != nil {
			fmt.Fprintln(stderr, "report:", err)
			return 1
		}
	}
	return 0
}

// writeSVGFile writes the plot of docs/benchmarks.md: p99 latency and
// server CPU per delivery against offered deliveries/s (publish rate times
// subscribers), a series per label and dialect, from the ramp steps and
// broadcast runs of results; one standalone SVG.
func writeSVGFile(path string, results []Result) error {
	p99 := map[string]*series{}
	cpu := map[string]*series{}
	var names []string
	for _, r := range results {
		if (r.Scenario != "ramp" && r.Scenario != "broadcast") || r.Latency == nil || r.Subscribers == 0 || r.Lost > 0 {
			continue
		}
		name := r.Label + " " + r.Dialect
		if p99[name] == nil {
			names = append(names, name)
			p99[name], cpu[name] = &series{name: name}, &series{name: name}
		}
		x := r.Rate * float64(r.Subscribers)
		p99[name].x, p99[name].y = append(p99[name].x, x), append(p99[name].y, r.Latency.P99MS)
		if r.ServerCPUUSPerDeliv > 0 {
			cpu[name].x, cpu[name].y = append(cpu[name].x, x), append(cpu[name].y, r.ServerCPUUSPerDeliv)
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("no ramp or broadcast results without loss to plot")
	}
	var ps, cs []series
	for _, n := range names {
		sortSeries(p99[n])
		sortSeries(cpu[n])
		ps, cs = append(ps, *p99[n]), append(cs, *cpu[n])
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif">`+"\n", 2*chartW, chartH, 2*chartW, chartH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	fmt.Fprint(&b, lineChart("p99 delivery latency (every message delivered)", "offered deliveries/s", "p99 (ms, log)", ps, true))
	fmt.Fprintf(&b, `<g transform="translate(%d,0)">`+"\n", chartW)
	fmt.Fprint(&b, lineChart("server CPU per delivery", "offered deliveries/s", "µs per delivery (log)", cs, true))
	b.WriteString("</g></svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// sortSeries orders a series by x.
func sortSeries(s *series) {
	idx := make([]int, len(s.x))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return s.x[idx[a]] < s.x[idx[b]] })
	x, y := make([]float64, len(idx)), make([]float64, len(idx))
	for i, j := range idx {
		x[i], y[i] = s.x[j], s.y[j]
	}
	s.x, s.y = x, y
}

func writeHTMLFile(path string, results []Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	writeHTML(f, results)
	return f.Close()
}

var palette = []string{"#1f6feb", "#d1495b", "#2a9d8f", "#e9a03b", "#7b61ff", "#555"}

// writeHTML writes a self-contained report: the tables, a latency
// histogram per delivery result and the ramp as charts (inline SVG).
func writeHTML(w io.Writer, results []Result) {
	fmt.Fprint(w, `<!doctype html><html><head><meta charset="utf-8"><title>switchboard-bench report</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 24px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}
td:first-child,td:nth-child(2){text-align:left}svg{background:#fff;border:1px solid #eee;margin:4px 12px 12px 0}
.charts{display:flex;flex-wrap:wrap}</style></head><body><h1>switchboard-bench report</h1>
`)
	t := tableRows(results)
	for _, kind := range tableOrder {
		rows := t[kind]
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "<h2>%s</h2><table>", kind)
		for i, row := range rows {
			fmt.Fprint(w, "<tr>")
			for _, c := range row {
				tag := "td"
				if i == 0 {
					tag = "th"
				}
				fmt.Fprintf(w, "<%s>%s</%s>", tag, html.EscapeString(c), tag)
			}
			fmt.Fprint(w, "</tr>\n")
		}
		fmt.Fprint(w, "</table>\n")
	}
	for i := range results {
		if results[i].Soak != nil {
			var b strings.Builder
			writeSoakSummary(&b, &results[i])
			fmt.Fprintf(w, "<h2>soak</h2><pre>%s</pre>\n", html.EscapeString(b.String()))
		}
	}

	// The ramp: deliveries/s and p99 against the publish rate, a series
	// per label.
	type pt struct{ x, y float64 }
	deliv := map[string][]pt{}
	p99 := map[string][]pt{}
	var labels []string
	for _, r := range results {
		if r.Scenario != "ramp" || r.Latency == nil {
			continue
		}
		name := r.Label + " " + r.Dialect
		if _, ok := deliv[name]; !ok {
			labels = append(labels, name)
		}
		deliv[name] = append(deliv[name], pt{r.Rate, r.DeliveriesPerSec})
		p99[name] = append(p99[name], pt{r.Rate, r.Latency.P99MS})
	}
	if len(labels) > 0 {
		fmt.Fprint(w, "<h2>ramp</h2><div class=charts>")
		var ds, ps []series
		for _, l := range labels {
			var a, b series
			a.name, b.name = l, l
			for _, p := range deliv[l] {
				a.x, a.y = append(a.x, p.x), append(a.y, p.y)
			}
			for _, p := range p99[l] {
				b.x, b.y = append(b.x, p.x), append(b.y, p.y)
			}
			ds, ps = append(ds, a), append(ps, b)
		}
		fmt.Fprint(w, lineChart("deliveries/s by publish rate", "publish rate (msg/s)", "deliveries/s", ds, false))
		fmt.Fprint(w, lineChart("p99 latency by publish rate", "publish rate (msg/s)", "p99 (ms, log)", ps, true))
		fmt.Fprint(w, "</div>")
	}

	fmt.Fprint(w, "<h2>latency histograms</h2><div class=charts>")
	for _, r := range results {
		l := r.Latency
		what := "delivery latency"
		if r.Handshake != nil {
			l, what = r.Handshake, "handshake latency"
		}
		if l == nil || len(l.Hist) == 0 {
			continue
		}
		title := fmt.Sprintf("%s %s %s", r.Label, r.Scenario, r.Dialect)
		if r.Step > 0 {
			title += fmt.Sprintf(" step %d", r.Step)
		}
		if r.Rate > 0 {
			title += fmt.Sprintf(" @%s msg/s", f1(r.Rate))
		}
		fmt.Fprint(w, histChart(title+": "+what, l))
	}
	fmt.Fprint(w, "</div></body></html>\n")
}

type series struct {
	name string
	x, y []float64
}

const (
	chartW, chartH = 560, 320
	padL, padR     = 70, 20
	padT, padB     = 30, 50
)

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step/1e9 && len(out) < 50; v += step {
		out = append(out, v)
	}
	return out
}

// lineChart draws series on a log x axis (rates) and a linear or log y
// axis.
func lineChart(title, xl, yl string, ss []series, logY bool) string {
	var b strings.Builder
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for i := range s.x {
			minX, maxX = math.Min(minX, s.x[i]), math.Max(maxX, s.x[i])
			y := s.y[i]
			if logY {
				y = math.Max(y, 0.001)
			}
			minY, maxY = math.Min(minY, y), math.Max(maxY, y)
		}
	}
	if math.IsInf(minX, 1) {
		return ""
	}
	lx := func(v float64) float64 { return math.Log10(math.Max(v, 1e-9)) }
	x0, x1 := lx(minX), lx(maxX)
	if x1 <= x0 {
		x1 = x0 + 1
	}
	var y0, y1 float64
	ty := func(v float64) float64 { return v }
	if logY {
		ty = lx
		y0, y1 = math.Floor(lx(minY)), math.Ceil(lx(maxY))
	} else {
		y0, y1 = 0, maxY*1.1
	}
	if y1 <= y0 {
		y1 = y0 + 1
	}
	px := func(v float64) float64 { return padL + (lx(v)-x0)/(x1-x0)*(chartW-padL-padR) }
	py := func(v float64) float64 {
		if logY {
			v = math.Max(v, 0.001)
		}
		return chartH - padB - (ty(v)-y0)/(y1-y0)*(chartH-padT-padB)
	}
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg" font-size="11">`, chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">%s</text>`, padL, html.EscapeString(title))
	// y grid
	if logY {
		for e := y0; e <= y1; e++ {
			y := chartH - padB - (e-y0)/(y1-y0)*(chartH-padT-padB)
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`,
				padL, chartW-padR, y, y, padL-4, y+4, f1(math.Pow(10, e)))
		}
	} else {
		for _, v := range niceTicks(y0, y1, 5) {
			y := py(v)
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`,
				padL, chartW-padR, y, y, padL-4, y+4, human(v))
		}
	}
	// x ticks at the data points of the first series
	for _, v := range ss[0].x {
		x := px(v)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#f3f3f3"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`,
			x, x, padT, chartH-padB, x, chartH-padB+14, human(v))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, (chartW+padL)/2, chartH-12, html.EscapeString(xl))
	fmt.Fprintf(&b, `<text transform="translate(14 %d) rotate(-90)" text-anchor="middle">%s</text>`, chartH/2, html.EscapeString(yl))
	for i, s := range ss {
		col := palette[i%len(palette)]
		var pts []string
		for j := range s.x {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.x[j]), py(s.y[j])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, col, strings.Join(pts, " "))
		for j := range s.x {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s → %s</title></circle>`, px(s.x[j]), py(s.y[j]), col,
				html.EscapeString(s.name), human(s.x[j]), f1(s.y[j]))
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`,
			padL+10, padT+4+i*16, col, padL+24, padT+13+i*16, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// human formats a number with k/M suffixes.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return f1(v/1e6) + "M"
	case v >= 1e3:
		return f1(v/1e3) + "k"
	}
	return f1(v)
}

// histChart draws a latency histogram on a log time axis with the
// percentiles marked.
func histChart(title string, l *Latency) string {
	var b strings.Builder
	lo, hi := math.Inf(1), 0.0
	var maxC uint64
	for _, k := range l.Hist {
		lo = math.Min(lo, float64(max(k.LoNS, 1000)))
		hi = math.Max(hi, float64(k.HiNS+1))
		maxC = max(maxC, k.Count)
	}
	e0, e1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if e1 <= e0 {
		e1 = e0 + 1
	}
	px := func(ns float64) float64 {
		return padL + (math.Log10(math.Max(ns, math.Pow(10, e0)))-e0)/(e1-e0)*(chartW-padL-padR)
	}
	py := func(c float64) float64 { return chartH - padB - c/float64(maxC)*(chartH-padT-padB) }
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg" font-size="11">`, chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">%s</text>`, padL, html.EscapeString(title))
	for e := e0; e <= e1; e++ {
		x := px(math.Pow(10, e))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`,
			x, x, padT, chartH-padB, x, chartH-padB+14, durLabel(math.Pow(10, e)))
	}
	for _, v := range niceTicks(0, float64(maxC), 4) {
		y := py(v)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-4, y+4, human(v))
	}
	for _, k := range l.Hist {
		x0, x1 := px(float64(k.LoNS)), px(float64(k.HiNS+1))
		y := py(float64(k.Count))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f6feb"><title>%s–%s: %d</title></rect>`,
			x0, y, math.Max(x1-x0-0.5, 0.5), chartH-padB-y, durLabel(float64(k.LoNS)), durLabel(float64(k.HiNS)), k.Count)
	}
	marks := []struct {
		name string
		ms   float64
	}{{"p50", l.P50MS}, {"p99", l.P99MS}, {"p99.9", l.P999MS}, {"max", l.MaxMS}}
	for i, m := range marks {
		x := px(m.ms * 1e6)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#d1495b" stroke-dasharray="3,3"/><text x="%.1f" y="%d" fill="#d1495b">%s</text>`,
			x, x, padT, chartH-padB, x+2, padT+10+i*12, m.name)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">latency (log); %d samples; p50 %s ms, p99 %s ms, max %s ms</text>`,
		(chartW+padL)/2, chartH-12, l.Count, f3(l.P50MS), f3(l.P99MS), f3(l.MaxMS))
	b.WriteString("</svg>\n")
	return b.String()
}

func durLabel(ns float64) string {
	switch {
	case ns >= 1e9:
		return f1(ns/1e9) + "s"
	case ns >= 1e6:
		return f1(ns/1e6) + "ms"
	case ns >= 1e3:
		return f1(ns/1e3) + "µs"
	}
	return f1(ns) + "ns"
}
