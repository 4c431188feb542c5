// Package wait is the tests' one way to wait for something to happen: poll
// a condition until it holds or a deadline passes. Tests never sleep to let
// something happen; they wait for it.
package wait

import (
	"testing"
	"time"
)

// For calls fn until it returns nil, and fails the test with fn's last
// error once total has passed. It polls at once, then after a millisecond,
// and at most every 10 ms after that.
func For(t testing.TB, total time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	step := time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(step)
		step = min(2*step, 10*time.Millisecond)
	}
}
