package wait

import (
	"errors"
	"testing"
	"time"
)

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	start := time.Now()
	n := 0
	For(t, 5*time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("polled %d times, want 3", n)
	}
	if time.Since(start) > time.Second {
		t.Fatal("For waited long after the condition held")
	}
}

// fakeTB records a failure instead of stopping the test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatal(args ...any) {
	f.failed = args[0].(error).Error()
	panic(f)
}

func TestForFailsWithTheLastError(t *testing.T) {
	ft := &fakeTB{TB: t}
	func() {
		defer func() {
			if recover() != ft {
				t.Fatal("For did not fail the test")
			}
		}()
		For(ft, 20*time.Millisecond, func() error { return errors.New("still not") })
	}()
	if ft.failed != "still not" {
		t.Fatalf("failed with %q, want the condition's error", ft.failed)
	}
}
