package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a Server. The zero value runs an in-memory Redis: a
// restart loses every key.
type Options struct {
	// Persistence turns on the append-only file with an fsync per write, so
	// that Kill loses no acknowledged write and Restart brings every key
	// back.
	Persistence bool
	// Password, when set, is required from clients (requirepass).
	Password string
	// Args are extra redis-server arguments, such as "--maxmemory", "10mb".
	Args []string
	// Cluster runs the server as a Redis Cluster node (cluster-enabled)
	// that owns every hash slot: a cluster of one, which answers like any
	// cluster node (cluster_enabled:1 in INFO).
	Cluster bool

	// clusterMember runs the server as a node of a cluster that
	// StartCluster builds: cluster-enabled, no slots of its own yet.
	clusterMember bool
}

// readyTimeout bounds the wait for a started redis-server to answer PING.
const readyTimeout = 15 * time.Second

// Server is a redis-server process run for a test.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	opts Options

	mu      sync.Mutex
	proc    *process // guarded by mu; nil while killed
	slotted bool     // guarded by mu; the cluster node was given its slots
}

// process is one run of redis-server.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned
	err    error         // cmd.Wait's result, set before exited is closed
}

// Start starts a redis-server for tb and stops it when tb ends. opts may be
// nil. It fails tb if redis-server is missing or does not become ready.
func Start(tb testing.TB, opts *Options) *Server {
	tb.Helper()
	s := New(tb, opts)
	// A free port may be taken again before redis-server binds it: retry.
	var lastErr error
	for i := range 5 {
		if i > 0 {
			port, err := freePort()
			if err != nil {
				tb.Fatalf("redistest: %v", err)
			}
			s.port = port
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	tb.Fatalf("redistest: %v", lastErr)
	return nil
}

// New returns a Server for tb on a free port without starting it, so that a
// test can start what must cope with a Redis that is not there yet; Restart
// starts it. It is stopped when tb ends. opts may be nil. It fails tb if
// redis-server is missing.
func New(tb testing.TB, opts *Options) *Server {
	tb.Helper()
	if opts == nil {
		opts = &Options{}
	}
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		bin = "redis-server"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		tb.Fatalf("redistest: %s not found (%v): Redis tests start real redis-server processes; "+
			"install it (apt-get install -y redis-server, or brew install redis) or set REDIS_SERVER to its path", bin, err)
	}
	s := &Server{tb: tb, bin: path, dir: tb.TempDir(), opts: *opts}
	tb.Cleanup(s.Kill)
	if s.port, err = freePort(); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return s
}

// freePort returns a loopback TCP port that is free now, never 6379, and at
// most 55535: a cluster node's bus listens 10,000 above its port, and
// redis-server refuses a port whose bus port would not exist.
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
		if port != 6379 && port <= 55535 {
			return port, nil
		}
	}
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns a redis:// URL for the server, with its password if any.
func (s *Server) URL() string {
	if s.opts.Password != "" {
		return fmt.Sprintf("redis://:%s@%s/0", s.opts.Password, s.Addr())
	}
	return fmt.Sprintf("redis://%s/0", s.Addr())
}

// Dir returns the server's working directory, where its data files are.
func (s *Server) Dir() string { return s.dir }

// Kill kills the server with SIGKILL, as a crash would, and waits for the
// process to end. Killing a killed server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.cmd.Process.Kill() // fails only when it already exited; kills a paused one too
	<-s.proc.exited
	s.proc = nil
}

// Pause stops the server's process (SIGSTOP) without closing its
// connections, as a network partition would: clients time out rather than
// see a closed connection. Resume undoes it. Both are for Unix only.
func (s *Server) Pause() { s.signal(sigStop) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(sigCont) }

func (s *Server) signal(sig os.Signal) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.tb.Fatalf("redistest: signal %v: the server is not running", sig)
	}
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("redistest: signal %v: %v", sig, err)
	}
}

// Restart starts the server again on the same port and in the same
// directory, killing it first if it runs, and waits until it is ready (a
// Server from New starts for the first time). With
// Options.Persistence it comes back with its data; without, empty.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.tb.Fatalf("redistest: restart: %v", err)
	}
}

// Running reports whether the server's process runs.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// args returns the redis-server command line arguments.
func (s *Server) args() []string {
	appendonly := "no"
	if s.opts.Persistence {
		appendonly = "yes"
	}
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--daemonize", "no",
		"--protected-mode", "no",
		"--save", "",
		"--appendonly", appendonly,
		"--appendfsync", "always",
		"--logfile", "redis.log",
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	if s.opts.Cluster || s.opts.clusterMember {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	}
	if s.opts.clusterMember {
		args = append(args, "--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout/time.Millisecond)),
			"--cluster-require-full-coverage", "no", "--cluster-replica-validity-factor", "0")
	}
	return append(args, s.opts.Args...)
}

// start runs redis-server and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Dir = s.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := s.ping()
		if err == nil && s.opts.Cluster {
			err = s.clusterUp()
		}
		if err == nil {
			s.proc = p
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("redis-server on port %d exited (%v) before it was ready: %s%s", s.port, p.err, out.String(), s.logTail())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-p.exited
			return fmt.Errorf("redis-server on port %d not ready after %v: %v%s", s.port, readyTimeout, err, s.logTail())
		}
	}
}

// logTail returns the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return "\nredis.log:\n" + strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// dial connects to the server for one short exchange (a second at most),
// authenticated when a password is set.
func (s *Server) dial() (net.Conn, *bufio.Reader, error) {
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(conn)
	if s.opts.Password != "" {
		if err := command(conn, r, "AUTH", s.opts.Password); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	return conn, r, nil
}

// ping sends PING and expects PONG: a
// Redis still loading its data answers -LOADING instead.
func (s *Server) ping() error {
	conn, r, err := s.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	return command(conn, r, "PING")
}

// clusterUp gives a cluster node every hash slot, the first time (its
// nodes.conf keeps them across restarts), and reports whether the node
// says its cluster is up. Called with s.mu held.
func (s *Server) clusterUp() error {
	conn, r, err := s.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	if !s.slotted {
		if err := command(conn, r, "CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE: %w", err)
		}
		s.slotted = true
	}
	if _, err := fmt.Fprint(conn, "*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n"); err != nil {
		return err
	}
	head, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if err != nil {
		return fmt.Errorf("CLUSTER INFO: %s", strings.TrimSpace(head))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	if !bytes.Contains(body, []byte("cluster_state:ok")) {
		return errors.New("the cluster is not up yet")
	}
	return nil
}

// command sends one command and reads a simple-string reply.
func command(conn net.Conn, r *bufio.Reader, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+") {
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}
