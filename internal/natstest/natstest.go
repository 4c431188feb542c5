package natstest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// readyTimeout bounds the wait for a started nats-server to be ready.
const readyTimeout = 15 * time.Second

// Options configure a Server. The zero value runs JetStream with its
// store on disk.
type Options struct {
	// NoJetStream runs the server without JetStream, as a misconfigured
	// one would be.
	NoJetStream bool
}

// Server is a nats-server process run for a test.
type Server struct {
	opts    Options
	tb      testing.TB
	bin     string
	dir     string // the JetStream store is dir/js
	port    int    // client port
	monitor int    // HTTP monitoring port (/healthz)
	mu      sync.Mutex
	proc    *process // guarded by mu; nil while stopped
}

type process struct {
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{}
	err    error // set before exited is closed
}

// Start starts a nats-server -js for tb on free ports and stops it when tb
// ends. opts may be nil. It fails tb if nats-server is missing or does not
// get ready.
func Start(tb testing.TB, opts *Options) *Server {
	tb.Helper()
	s := New(tb, opts)
	s.Restart()
	return s
}

// New returns a Server for tb on free ports without starting it; Restart
// starts it. It is stopped when tb ends. It fails tb if nats-server is
// missing. opts may be nil.
func New(tb testing.TB, opts *Options) *Server {
	tb.Helper()
	if opts == nil {
		opts = &Options{}
	}
	bin := os.Getenv("NATS_SERVER")
	if bin == "" {
		bin = "nats-server"
	}
	path, err := exec.LookPath(bin)
	if err != nil && bin == "nats-server" {
		// Debian's package installs it in /usr/sbin, which a user's PATH
		// may lack.
		path, err = exec.LookPath("/usr/sbin/nats-server")
	}
	if err != nil {
		tb.Fatalf("natstest: %s not found (%v): NATS tests start real nats-server processes; "+
			"install it (apt-get install -y nats-server) or set NATS_SERVER to its path", bin, err)
	}
	s := &Server{opts: *opts, tb: tb, bin: path, dir: tb.TempDir()}
	tb.Cleanup(s.Kill)
	if s.port, err = freePort(); err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	if s.monitor, err = freePort(); err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	return s
}

// freePort returns a loopback TCP port that is free now, never 4222.
func freePort() (int, error) {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		if port != 4222 {
			return port, nil
		}
	}
}

// Addr returns the server's client host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns a nats:// URL for the server.
func (s *Server) URL() string { return "nats://" + s.Addr() }

// Dir returns the server's directory; its JetStream store is Dir()/js.
func (s *Server) Dir() string { return s.dir }

// Kill kills the server with SIGKILL, as a crash would, and waits for the
// process to end. Killing a stopped server does nothing.
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

// Stop stops the server gracefully (SIGTERM: it closes its connections and
// flushes its store) and waits for the process to end.
func (s *Server) Stop() { s.stop(syscall.SIGTERM) }

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.cmd.Process.Signal(sig) // fails only when it already exited
	select {
	case <-s.proc.exited:
	case <-time.After(10 * time.Second):
		_ = s.proc.cmd.Process.Kill()
		<-s.proc.exited
	}
	s.proc = nil
}

// Restart starts the server again on the same ports with the same store,
// stopping it gracefully first if it runs, and waits until it is ready. A
// Server from New starts for the first time.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.tb.Fatalf("natstest: restart: %v", err)
	}
}

// Wipe deletes the JetStream store of a stopped server, so that the next
// Restart comes back empty, as a NATS without persistent storage would.
func (s *Server) Wipe() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.tb.Fatal("natstest: Wipe of a running server")
	}
	if err := os.RemoveAll(filepath.Join(s.dir, "js")); err != nil {
		s.tb.Fatalf("natstest: wipe: %v", err)
	}
}

// Running reports whether the server's process runs.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// args returns the nats-server command line arguments.
func (s *Server) args() []string {
	args := []string{
		"-a", "127.0.0.1",
		"-p", strconv.Itoa(s.port),
		"-m", strconv.Itoa(s.monitor),
		"-l", filepath.Join(s.dir, "nats.log"),
	}
	if !s.opts.NoJetStream {
		args = append(args, "-js", "-sd", filepath.Join(s.dir, "js"))
	}
	return args
}

// start runs nats-server and waits until /healthz says it is ready, which
// includes JetStream having loaded its store.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Dir = s.dir
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		err := s.healthy(client)
		if err == nil {
			s.proc = p
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("nats-server on port %d exited (%v) before it was ready: %s%s", s.port, p.err, out.String(), s.logTail())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-p.exited
			return fmt.Errorf("nats-server on port %d not ready after %v: %v%s", s.port, readyTimeout, err, s.logTail())
		}
	}
}

// healthy asks the monitoring endpoint whether the server and JetStream
// are up, then checks that the client port accepts connections.
func (s *Server) healthy(client *http.Client) error {
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", s.monitor))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", resp.Status)
	}
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

// logTail returns the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "nats.log"))
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return "\nnats.log:\n" + string(bytes.Join(lines[max(0, len(lines)-10):], []byte("\n")))
}
