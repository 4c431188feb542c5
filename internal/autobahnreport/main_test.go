package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeReport writes a report directory: index.json and, for each case,
// its own report with a result text.
func writeReport(t *testing.T, cases map[string][2]string) string {
	t.Helper()
	dir := t.TempDir()
	var index strings.Builder
	index.WriteString(`{"switchboard": {`)
	first := true
	for id, b := range cases {
		if !first {
			index.WriteString(",")
		}
		first = false
		file := "switchboard_case_" + strings.ReplaceAll(id, ".", "_") + ".json"
		index.WriteString(`"` + id + `": {"behavior": "` + b[0] + `", "behaviorClose": "` + b[1] + `", "duration": 3, "remoteCloseCode": 1000, "reportfile": "` + file + `"}`)
		detail := `{"result": "what happened in ` + id + `", "resultClose": "how it closed"}`
		if err := os.WriteFile(filepath.Join(dir, file), []byte(detail), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	index.WriteString("}}")
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(index.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRun(t *testing.T) {
	t.Parallel()
	passing := writeReport(t, map[string][2]string{"1.1.1": {"OK", "OK"}, "7.1.6": {"INFORMATIONAL", "INFORMATIONAL"}})
	other := writeReport(t, map[string][2]string{"12.1.1": {"OK", "OK"}})
	failing := writeReport(t, map[string][2]string{
		"9.1.10": {"OK", "OK"}, "9.1.9": {"NON-STRICT", "OK"}, "12.1.1": {"UNIMPLEMENTED", "OK"}, "2.5": {"OK", "WRONG CODE"},
	})
	tests := []struct {
		name   string
		args   []string
		status int
		out    []string // lines the output must hold
	}{
		{"all pass", []string{passing, other}, 0, []string{"3 cases", "behavior:      OK 2, INFORMATIONAL 1", "PASS: all 3 cases"}},
		{"the expected count", []string{"-cases", "3", passing, other}, 0, []string{"PASS"}},
		{"a case missing", []string{"-cases", "517", passing, other}, 1, []string{"FAIL: 3 cases ran, want 517"}},
		{"failures", []string{failing}, 1, []string{
			"behavior:      OK 2, NON-STRICT 1, UNIMPLEMENTED 1",
			"behaviorClose: OK 3, WRONG CODE 1",
			"FAILED 2.5: behavior OK, behaviorClose WRONG CODE (what happened in 2.5 / how it closed)",
			"FAILED 9.1.9: behavior NON-STRICT",
			"FAILED 12.1.1: behavior UNIMPLEMENTED",
		}},
		{"a case twice", []string{other, other}, 2, nil},
		{"no report", []string{t.TempDir()}, 2, nil},
		{"no argument", nil, 2, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if status := run(tc.args, &stdout, &stderr); status != tc.status {
				t.Fatalf("status %d, want %d\nstdout:\n%s\nstderr:\n%s", status, tc.status, stdout.String(), stderr.String())
			}
			for _, line := range tc.out {
				if !strings.Contains(stdout.String(), line) {
					t.Errorf("output lacks %q:\n%s", line, stdout.String())
				}
			}
			if tc.status == 1 && strings.Contains(stdout.String(), "PASS") {
				t.Errorf("a failing run says PASS:\n%s", stdout.String())
			}
		})
	}
	// Failures are listed in case order, 9.1.9 before 9.1.10 and 12.x last.
	var stdout bytes.Buffer
	run([]string{failing}, &stdout, &bytes.Buffer{})
	out := stdout.String()
	if i, j, k := strings.Index(out, "FAILED 2.5"), strings.Index(out, "FAILED 9.1.9"), strings.Index(out, "FAILED 12.1.1"); !(i < j && j < k) {
		t.Errorf("failures out of order:\n%s", out)
	}
}
