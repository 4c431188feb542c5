package redistest

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill redis-server if the test process dies
// first, so that a crashed test leaves no server behind.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
