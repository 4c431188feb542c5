package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rt/switchboard/internal/wait"
)

// binary is the switchboard binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "switchboard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "switchboard")
	// E2E_RACE=0 builds without the race detector, for figures (the
	// hostile-input test's, say) that the detector would slow.
	args := []string{"build", "-race", "-o", binary, "../cmd/switchboard"}
	if os.Getenv("E2E_RACE") == "0" {
		args = slices.Delete(args, 1, 2)
	}
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building switchboard:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// instance is one switchboard process.
type instance struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	args []string
	logs *logBuffer
	done chan struct{}
}

// logBuffer keeps a process's output for the failure report.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listeningRE = regexp.MustCompile(`switchboard listening on (\S+)`)

// startInstance starts switchboard with args (plus --addr on a free port
// unless args give one) and waits until it serves /healthz.
func startInstance(t testing.TB, args ...string) *instance {
	t.Helper()
	hasAddr := false
	for _, a := range args {
		if strings.HasPrefix(a, "--addr") {
			hasAddr = true
		}
	}
	if !hasAddr {
		args = append(args, "--addr", "127.0.0.1:0")
	}
	args = append(args, "--log-level", "debug", "--shutdown-timeout", "3s")
	in := &instance{t: t, args: args, logs: &logBuffer{}}
	in.start()
	t.Cleanup(func() {
		in.stop()
		if t.Failed() {
			t.Logf("logs of instance %s:\n%s", in.addr, in.logs)
		}
	})
	return in
}

func (in *instance) start() {
	t := in.t
	t.Helper()
	cmd := exec.Command(binary, in.args...)
	cmd.Stderr = in.logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.cmd = cmd
	in.done = make(chan struct{})
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
		_ = cmd.Wait()
		close(in.done)
	}()
	select {
	case in.addr = <-addrc:
	case <-in.done:
		t.Fatalf("switchboard %v exited at start:\n%s", in.args, in.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("switchboard %v did not start:\n%s", in.args, in.logs)
	}
	waitFor(t, 10*time.Second, func() bool {
		resp, err := http.Get(in.url("/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "instance healthy")
}

// stop asks the instance to shut down (SIGTERM) and waits for it.
func (in *instance) stop() {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(15 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.done
		in.t.Errorf("instance %s did not stop on SIGTERM", in.addr)
	}
}

// kill ends the instance with SIGKILL.
func (in *instance) kill() {
	_ = in.cmd.Process.Kill()
	<-in.done
}

func (in *instance) url(path string) string { return "http://" + in.addr + path }
func (in *instance) ws(path string) string  { return "ws://" + in.addr + path }

// waitFor waits until cond holds, failing after total.
func waitFor(t testing.TB, total time.Duration, cond func() bool, what string) {
	t.Helper()
	wait.For(t, total, func() error {
		if !cond() {
			return fmt.Errorf("timed out after %v waiting for %s", total, what)
		}
		return nil
	})
}

// wsClient is a real WebSocket client of either dialect.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
	mu   sync.Mutex
}

func dialWS(t testing.TB, url string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	conn.SetReadLimit(-1)
	t.Cleanup(func() { _ = conn.CloseNow() })
	return &wsClient{t: t, conn: conn}
}

func (c *wsClient) send(s string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, []byte(s))
}

func (c *wsClient) read(ctx context.Context) (string, error) {
	_, b, err := c.conn.Read(ctx)
	return string(b), err
}

// readJSON reads one frame as a JSON object.
func (c *wsClient) readJSON(ctx context.Context) (map[string]any, error) {
	s, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("frame %q: %w", s, err)
	}
	return m, nil
}

// native connects to /ws and reads the welcome frame.
func native(t testing.TB, url string) *wsClient {
	t.Helper()
	c := dialWS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := c.readJSON(ctx)
	if err != nil || m["op"] != "welcome" {
		t.Fatalf("welcome: %v %v", m, err)
	}
	return c
}

// request sends a request and reads frames until its reply, handing other
// frames to other (which may be nil).
func (c *wsClient) request(req string, id float64, other func(map[string]any)) (map[string]any, error) {
	if err := c.send(req); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		m, err := c.readJSON(ctx)
		if err != nil {
			return nil, err
		}
		if m["id"] == id {
			return m, nil
		}
		if other != nil {
			other(m)
		}
	}
}

// httpPost posts a JSON body and returns the status and body.
func httpPost(url, body string) (int, string, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}
