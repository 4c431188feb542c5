package natstest

import "syscall"

// procAttr makes the kernel kill nats-server if the test process dies
// first, so that a crashed test leaves no server behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
