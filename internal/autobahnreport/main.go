// Command autobahnreport judges the reports of an Autobahn TestSuite run
// (wstest -m fuzzingclient): it reads the index.json of each report
// directory given (one per wstest process when a run is split), counts the
// cases by behavior and by close behavior, prints the counts, and fails
// when a case is neither OK nor INFORMATIONAL, on either count, or when the
// run does not hold exactly the expected number of cases (-cases), so that
// a case that did not run cannot pass unseen. scripts/autobahn.sh (make
// autobahn) runs it.
//
//	go run ./internal/autobahnreport -cases 517 reports/0 reports/1
//
// Exit status: 0 when every case passed, 1 when one did not, 2 when the
// reports cannot be read.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("autobahnreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	want := fs.Int("cases", 0, "the number of cases the run must hold; 0 takes any")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: autobahnreport [-cases N] REPORT_DIR...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cases, err := load(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "autobahnreport: %v\n", err)
		return 2
	}
	s := summarize(cases)
	s.print(stdout)
	ok := len(s.failed) == 0
	if *want > 0 && len(cases) != *want {
		fmt.Fprintf(stdout, "FAIL: %d cases ran, want %d\n", len(cases), *want)
		ok = false
	}
	if !ok {
		return 1
	}
	fmt.Fprintf(stdout, "PASS: all %d cases OK or INFORMATIONAL\n", len(cases))
	return 0
}

// result is one case's entry in a report's index.json.
type result struct {
	Behavior      string `json:"behavior"`
	BehaviorClose string `json:"behaviorClose"`
	Duration      int    `json:"duration"` // milliseconds
	Reportfile    string `json:"reportfile"`

	dir string // the report directory it came from
}

// load reads every directory's index.json (agent -> case -> result) and
// returns the results by case id. A case found twice is an error: the
// directories must come from disjoint sets of cases.
func load(dirs []string) (map[string]result, error) {
	cases := make(map[string]result)
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "index.json"))
		if err != nil {
			return nil, err
		}
		var index map[string]map[string]result
		if err := json.Unmarshal(b, &index); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "index.json"), err)
		}
		for agent, results := range index {
			for id, r := range results {
				if _, dup := cases[id]; dup {
					return nil, fmt.Errorf("case %s is reported twice (agent %s in %s)", id, agent, dir)
				}
				r.dir = dir
				cases[id] = r
			}
		}
	}
	if len(cases) == 0 {
		return nil, errors.New("the reports hold no case")
	}
	return cases, nil
}

// passes reports whether a behavior is a pass: OK, or INFORMATIONAL (a
// case that only reports what the server did, e.g. the close reason).
func passes(behavior string) bool { return behavior == "OK" || behavior == "INFORMATIONAL" }

// summary is a run's counts and the cases that failed, in case order.
type summary struct {
	total         int
	behavior      map[string]int
	behaviorClose map[string]int
	failed        []string
	cases         map[string]result
	millis        int
}

func summarize(cases map[string]result) summary {
	s := summary{total: len(cases), behavior: map[string]int{}, behaviorClose: map[string]int{}, cases: cases}
	for id, r := range cases {
		s.behavior[r.Behavior]++
		s.behaviorClose[r.BehaviorClose]++
		s.millis += r.Duration
		if !passes(r.Behavior) || !passes(r.BehaviorClose) {
			s.failed = append(s.failed, id)
		}
	}
	slices.SortFunc(s.failed, compareIDs)
	return s
}

func (s summary) print(w io.Writer) {
	fmt.Fprintf(w, "%d cases (%.0f s of case time)\n", s.total, float64(s.millis)/1000)
	fmt.Fprintf(w, "behavior:      %s\n", counts(s.behavior))
	fmt.Fprintf(w, "behaviorClose: %s\n", counts(s.behaviorClose))
	for i, id := range s.failed {
		if i == maxListed {
			fmt.Fprintf(w, "... and %d more failed cases\n", len(s.failed)-maxListed)
			break
		}
		r := s.cases[id]
		fmt.Fprintf(w, "FAILED %s: behavior %s, behaviorClose %s%s\n", id, r.Behavior, r.BehaviorClose, why(r))
	}
}

// maxListed is how many failed cases are listed one by one.
const maxListed = 40

// counts formats behavior counts, most frequent first.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + strconv.Itoa(m[k])
	}
	return strings.Join(parts, ", ")
}

// why returns what a failed case's own report says went wrong, if it can
// be read.
func why(r result) string {
	if r.Reportfile == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(r.dir, filepath.Base(r.Reportfile)))
	if err != nil {
		return ""
	}
	var detail struct {
		Result      string `json:"result"`
		ResultClose string `json:"resultClose"`
	}
	if json.Unmarshal(b, &detail) != nil {
		return ""
	}
	return fmt.Sprintf(" (%s / %s)", detail.Result, detail.ResultClose)
}

// compareIDs orders case ids ("9.1.10" after "9.1.9") by their numbers.
func compareIDs(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, errx := strconv.Atoi(as[i])
		y, erry := strconv.Atoi(bs[i])
		if errx != nil || erry != nil {
			if c := strings.Compare(as[i], bs[i]); c != 0 {
				return c
			}
			continue
		}
		if x != y {
			return x - y
		}
	}
	return len(as) - len(bs)
}
