package hub

import (
	"testing"
	"time"
	"unsafe"
)

// simulateAuto plays a client receiving one frame every period for the
// given duration through the adaptive window's rule (autoWindow and
// dueTime, as push and flushNow apply them, writes taking no time) and
// returns the frames per write and the longest a frame waited.
func simulateAuto(period, duration time.Duration) (framesPerWrite float64, maxWait time.Duration) {
	var (
		lastWrite, due int64
		window         uint8
		queued         []int64 // arrival times of the frames waiting
		writes, frames int
	)
	flush := func(now int64) {
		if lastWrite != 0 {
			window = autoWindow(window, len(queued), now-lastWrite)
		}
		lastWrite = now
		for _, at := range queued {
			maxWait = max(maxWait, time.Duration(now-at))
		}
		writes++
		frames += len(queued)
		queued, due = queued[:0], 0
	}
	start := int64(time.Second) // monotime is never 0 once running
	for now := start; now < start+int64(duration); now += int64(period) {
		if due != 0 && due <= now {
			flush(due)
		}
		queued = append(queued, now)
		if due == 0 {
			if due = dueTime(lastWrite, int64(window)*int64(time.Millisecond), now); due == 0 {
				flush(now)
			}
		}
	}
	return float64(frames) / float64(writes), maxWait
}

// TestAutoWindow checks the adaptive write delay's rule at the rates the
// benchmarks use: a connection that gets a message now and then never
// waits, a steady stream gathers several frames per write and waits no
// longer than AutoWriteDelayMax (plus the rounding of due times).
func TestAutoWindow(t *testing.T) {
	for _, tc := range []struct {
		rate          int // frames per second
		minFrames     float64
		maxFrames     float64
		maxWait       time.Duration
		expectNoDelay bool
	}{
		{rate: 1, minFrames: 1, maxFrames: 1, expectNoDelay: true},
		{rate: 5, minFrames: 1, maxFrames: 1, expectNoDelay: true},
		{rate: 50, minFrames: 1, maxFrames: 1, expectNoDelay: true},
		{rate: 200, minFrames: 3.5, maxFrames: 6, maxWait: AutoWriteDelayMax + 7*time.Millisecond},
		{rate: 1000, minFrames: 3.5, maxFrames: 8, maxWait: 8 * time.Millisecond},
		{rate: 10000, minFrames: 3.5, maxFrames: 16, maxWait: 3 * time.Millisecond},
	} {
		fpw, wait := simulateAuto(time.Second/time.Duration(tc.rate), 10*time.Second)
		if fpw < tc.minFrames || fpw > tc.maxFrames {
			t.Errorf("%d frames/s: %.2f frames per write, want %.1f to %.1f", tc.rate, fpw, tc.minFrames, tc.maxFrames)
		}
		if tc.expectNoDelay && wait != 0 {
			t.Errorf("%d frames/s: a frame waited %v, want none", tc.rate, wait)
		}
		if !tc.expectNoDelay && wait > tc.maxWait {
			t.Errorf("%d frames/s: a frame waited %v, want at most %v", tc.rate, wait, tc.maxWait)
		}
	}
}

// TestAutoWindowPingPong checks the client that sends its next message
// only once it got the echo of the last: waiting gathers nothing for it, so
// it must not wait, or every round trip grows by the window.
func TestAutoWindowPingPong(t *testing.T) {
	const rtt = int64(time.Millisecond) // client's think and network time
	var (
		now, lastWrite int64 = int64(time.Second), 0
		window         uint8
		waited         time.Duration
	)
	for range 1000 {
		// The echo is queued now; it leaves at its due time or at once.
		at := now
		if due := dueTime(lastWrite, int64(window)*int64(time.Millisecond), now); due != 0 {
			at = due
		}
		waited += time.Duration(at - now)
		if lastWrite != 0 {
			window = autoWindow(window, 1, at-lastWrite)
		}
		lastWrite = at
		now = at + rtt // the client reads it and sends the next
	}
	if avg := waited / 1000; avg > 2*time.Millisecond {
		t.Errorf("a ping-pong client waited %v per message on average, want at most 2ms", avg)
	}
}

// TestAutoWindowForgets checks that a connection whose stream stops goes
// back to being written at once: after a pause, the window shrinks on
// every write, and a pause longer than the window costs no wait at all.
func TestAutoWindowForgets(t *testing.T) {
	w := uint8(AutoWriteDelayMax / time.Millisecond)
	for range 6 {
		w = autoWindow(w, 1, int64(time.Second))
	}
	if w != 0 {
		t.Errorf("window after six writes a second apart: %d ms, want 0", w)
	}
	now := int64(10 * time.Second)
	if d := dueTime(now-int64(30*time.Millisecond), int64(AutoWriteDelayMax), now); d != 0 {
		t.Errorf("due time 30ms after the last write with a 25ms window: %d, want now (0)", d)
	}
}

// TestClientSize keeps the client in the 256-byte size class: a million
// idle connections pay for every word.
func TestClientSize(t *testing.T) {
	if n := unsafe.Sizeof(Client{}); n > 256 {
		t.Errorf("Client is %d bytes, want at most 256", n)
	}
}
