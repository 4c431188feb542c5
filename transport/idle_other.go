//go:build !linux

package transport

// idle is never asked elsewhere than Linux: sessions do not park there.
func (ss *session) idle() bool { return false }
