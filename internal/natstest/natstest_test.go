package natstest

import (
	"net"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t, nil)
	dial := func() error {
		c, err := net.Dial("tcp", s.Addr())
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("dial a started server: %v", err)
	}
	s.Stop()
	if s.Running() {
		t.Fatal("Running after Stop")
	}
	if err := dial(); err == nil {
		t.Fatal("dial a stopped server succeeded")
	}
	s.Wipe()
	s.Restart()
	if err := dial(); err != nil {
		t.Fatalf("dial a restarted server: %v", err)
	}
	s.Kill()
	if s.Running() {
		t.Fatal("Running after Kill")
	}
}
