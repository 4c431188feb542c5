package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startNginx runs nginx in front of insts with the project's
// deploy/nginx.conf, its upstreams and port rewritten for the test, and
// returns its address.
func startNginx(t *testing.T, insts []*instance) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("nginx is not installed: apt-get install -y nginx-light (or nginx)")
		}
	}
	conf, err := os.ReadFile("../deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var servers strings.Builder
	for _, in := range insts {
		fmt.Fprintf(&servers, "        server %s max_fails=1 fail_timeout=2s;\n", in.addr)
	}
	text := string(conf)
	start := strings.Index(text, "        server 127.0.0.1:8081")
	end := strings.Index(text, "    }\n\n    map")
	if start < 0 || end < 0 {
		t.Fatal("deploy/nginx.conf no longer has the upstream block this test rewrites")
	}
	text = text[:start] + servers.String() + text[end:]
	text = strings.Replace(text, "listen 127.0.0.1:8080;", "listen "+addr+";", 1)
	dir := t.TempDir()
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", path, "-p", dir, "-e", "stderr")
	logs := &logBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("nginx logs:\n%s", logs)
		}
	})
	waitFor(t, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "nginx listening")
	return addr
}
