//go:build !unix

package redistest

import "os"

// Elsewhere than Unix a process cannot be paused: Windows delivers no
// signal but Kill, so signalling these fails the test that asks, saying
// so.
var sigStop, sigCont os.Signal = os.Interrupt, os.Interrupt
