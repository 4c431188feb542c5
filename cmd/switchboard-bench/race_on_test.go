//go:build linux && race

package main

// raceEnabled: the test binary has the race detector, and the servers the
// soak test builds get it too.
const raceEnabled = true
