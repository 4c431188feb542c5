//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// topology is the soak scenario's own cluster: a private redis-server and
// switchboard instances, all on loopback, all children of this process
// (which the kernel kills with it). Its methods are called by the run's
// one control goroutine.
type topology struct {
	dir       string // logs and Redis's data
	serverBin string
	redis     *proc
	redisArgs []string
	redisPort int
	instances []*instance
	httpc     *http.Client
	log       func(format string, args ...any)
}

// instance is one switchboard process of the topology.
type instance struct {
	id        string // --node-id
	port      int
	debugPort int // --debug-addr, for the live heap after a forced GC
	args      []string
	proc      *proc
}

func (in *instance) wsURL() string   { return "ws://127.0.0.1:" + strconv.Itoa(in.port) }
func (in *instance) httpURL() string { return "http://127.0.0.1:" + strconv.Itoa(in.port) }
func (in *instance) debugURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(in.debugPort)
}

// proc is one run of a child process.
type proc struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{} // closed once cmd.Wait returned
	err    error         // cmd.Wait's result, set before exited is closed
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// startProc starts bin with args, its output appended to logPath. The
// kernel kills the child when this process dies (Pdeathsig).
func startProc(bin string, args []string, dir, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, log: f, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop sends sig and waits up to grace for the process to end, then kills
// it. It reports whether the process ended by itself.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) bool {
	select {
	case <-p.exited:
		return true
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
		return false
	}
}

// freePorts returns n distinct loopback ports that are free now, below the
// kernel's ephemeral range (32768 up on Linux) so that the load tool's own
// outgoing connections cannot take one while its instance or Redis is down
// and about to come back on it.
func freePorts(n int) ([]int, error) {
	var out []int
	taken := map[int]bool{}
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		p := 20000 + rand.IntN(12000)
		if taken[p] || p == 6379 {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		_ = ln.Close()
		taken[p] = true
		out = append(out, p)
	}
	if len(out) < n {
		return nil, errors.New("soak: no free loopback ports in 20000-31999")
	}
	return out, nil
}

// buildServer builds cmd/switchboard into dir with go build (no race
// detector: the soak measures the server as it is deployed).
func buildServer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "switchboard")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/switchboard-rt/switchboard/cmd/switchboard")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("soak: go build ./cmd/switchboard (run from the repository, or give --server-bin): %w\n%s", err, out)
	}
	return bin, nil
}

// startTopology starts Redis and n instances and waits until every
// instance is ready.
func startTopology(ctx context.Context, cfg *Config, logf func(string, ...any)) (*topology, error) {
	dir, err := os.MkdirTemp("", "switchboard-soak-")
	if err != nil {
		return nil, err
	}
	t := &topology{dir: dir, serverBin: cfg.ServerBin, log: logf,
		httpc: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}}
	ok := false
	defer func() {
		if !ok {
			t.close()
		}
	}()
	if t.serverBin == "" {
		logf("building cmd/switchboard")
		if t.serverBin, err = buildServer(ctx, dir); err != nil {
			return nil, err
		}
	}
	redisBin, err := exec.LookPath(cfg.RedisBin)
	if err != nil {
		return nil, fmt.Errorf("soak: %s not found (%w): install it (apt-get install -y redis-server) or give --redis-bin", cfg.RedisBin, err)
	}
	ports, err := freePorts(1 + 2*cfg.Instances)
	if err != nil {
		return nil, err
	}
	t.redisPort = ports[0]
	appendonly := "yes"
	if cfg.RedisVolatile {
		appendonly = "no"
	}
	t.redisArgs = []string{redisBin, "--port", strconv.Itoa(t.redisPort), "--bind", "127.0.0.1",
		"--dir", dir, "--daemonize", "no", "--protected-mode", "no", "--save", "",
		"--appendonly", appendonly, "--appendfsync", "always", "--logfile", "redis.log"}
	if err := t.startRedis(ctx); err != nil {
		return nil, err
	}
	redisURL := "redis://127.0.0.1:" + strconv.Itoa(t.redisPort) + "/0"
	for i := range cfg.Instances {
		in := &instance{id: "soak-" + strconv.Itoa(i+1), port: ports[1+2*i], debugPort: ports[2+2*i]}
		in.args = append([]string{
			"--addr", "127.0.0.1:" + strconv.Itoa(in.port),
			"--debug-addr", "127.0.0.1:" + strconv.Itoa(in.debugPort),
			"--redis", redisURL,
			"--history-size", strconv.Itoa(cfg.HistorySize),
			"--node-id", in.id,
			"--log-level", "warn",
		}, cfg.ServerArgs...)
		t.instances = append(t.instances, in)
		if err := t.startInstance(ctx, in); err != nil {
			return nil, err
		}
	}
	ok = true
	return t, nil
}

// startRedis starts redis-server and waits until it answers PING (after
// loading its append-only file, when it has one).
func (t *topology) startRedis(ctx context.Context) error {
	p, err := startProc(t.redisArgs[0], t.redisArgs[1:], t.dir, filepath.Join(t.dir, "redis.out"))
	if err != nil {
		return err
	}
	t.redis = p
	addr := "127.0.0.1:" + strconv.Itoa(t.redisPort)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := redisPing(addr)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("soak: redis-server exited at start (%v); see %s", p.err, filepath.Join(t.dir, "redis.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("soak: redis-server not ready: %w", err)
		}
	}
}

// redisPing sends PING and expects +PONG (a Redis loading its data answers
// -LOADING).
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}

// startInstance starts in and waits until its /readyz answers 200.
func (t *topology) startInstance(ctx context.Context, in *instance) error {
	p, err := startProc(t.serverBin, in.args, t.dir, filepath.Join(t.dir, in.id+".log"))
	if err != nil {
		return err
	}
	in.proc = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		if t.ready(in) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("soak: %s exited at start (%v); see %s", in.id, p.err, filepath.Join(t.dir, in.id+".log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("soak: %s not ready after 30s; see %s", in.id, filepath.Join(t.dir, in.id+".log"))
		}
	}
}

// ready reports whether in's /readyz answers 200.
func (t *topology) ready(in *instance) bool {
	resp, err := t.httpc.Get(in.httpURL() + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// restartInstance stops in with sig: SIGTERM, as a deploy does (its
// graceful shutdown closes its clients with 1012), or SIGKILL, as a crash;
// waits for it to end, starts it again on the same port and waits until it
// is ready. It returns how long the old process took to end and how long
// the instance was away.
func (t *topology) restartInstance(ctx context.Context, in *instance, sig syscall.Signal) (stopped, away time.Duration, err error) {
	start := time.Now()
	if !in.proc.stop(sig, 60*time.Second) {
		t.log("%s did not end within 60s of SIGTERM: killed", in.id)
	}
	stopped = time.Since(start)
	err = t.startInstance(ctx, in)
	return stopped, time.Since(start), err
}

// restartRedis kills Redis (SIGKILL, as a crash), leaves it down for
// downtime, starts it again on the same port, and waits until it answers
// and then until every instance is ready again. It returns when Redis
// answered and when the last instance was ready, both from the kill.
func (t *topology) restartRedis(ctx context.Context, downtime time.Duration) (back, ready time.Duration, err error) {
	start := time.Now()
	t.redis.stop(syscall.SIGKILL, 10*time.Second)
	sleepCtx(ctx, downtime)
	if err := t.startRedis(ctx); err != nil {
		return 0, 0, err
	}
	back = time.Since(start)
	deadline := time.Now().Add(60 * time.Second)
	for _, in := range t.instances {
		for !t.ready(in) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return back, time.Since(start), fmt.Errorf("soak: %s not ready again after the Redis restart", in.id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return back, time.Since(start), nil
}

// close stops the instances (SIGTERM) and Redis, and removes the
// directory unless keep.
func (t *topology) close() {
	var wg sync.WaitGroup
	for _, in := range t.instances {
		if in.proc != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in.proc.stop(syscall.SIGTERM, 30*time.Second)
			}()
		}
	}
	wg.Wait()
	if t.redis != nil {
		t.redis.stop(syscall.SIGKILL, 10*time.Second)
	}
	t.httpc.CloseIdleConnections()
}
