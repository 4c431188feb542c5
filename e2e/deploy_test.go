package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// service is one line of deploy/local-cluster.sh --print.
type service struct {
	name, port, flags string
}

// localCluster reads the topology deploy/local-cluster.sh runs, with env
// added to its environment.
func localCluster(t *testing.T, env ...string) []service {
	t.Helper()
	cmd := exec.Command("../deploy/local-cluster.sh", "--print")
	cmd.Env = append(os.Environ(), "REDIS_PORT=", "PORTS=", "NGINX_PORT=")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("local-cluster.sh --print: %v", err)
	}
	var list []service
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, " ", 3)
		s := service{name: f[0], port: f[1]}
		if len(f) == 3 {
			s.flags = f[2]
		}
		list = append(list, s)
	}
	return list
}

// The compose file and the local script run one topology: the same
// services, ports and flags, and nginx.conf balances over those ports.
func TestComposeMatchesLocalCluster(t *testing.T) {
	local := localCluster(t)
	b, err := os.ReadFile("../deploy/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command     []string
			Volumes     []string
			NetworkMode string `yaml:"network_mode"`
			Healthcheck struct{ Test []string }
		}
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range local {
		names = append(names, s.name)
	}
	var composed []string
	for n := range compose.Services {
		composed = append(composed, n)
	}
	slices.Sort(names)
	slices.Sort(composed)
	if !slices.Equal(names, composed) {
		t.Fatalf("services: local-cluster.sh %v, docker-compose.yml %v", names, composed)
	}
	conf, err := os.ReadFile("../deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	var upstream []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server 127\.0\.0\.1:(\d+) `).FindAllStringSubmatch(string(conf), -1) {
		upstream = append(upstream, m[1])
	}
	var instances []string
	for _, s := range local {
		c := compose.Services[s.name]
		if c.NetworkMode != "host" {
			t.Errorf("%s: network_mode %q, want host (the script's addresses)", s.name, c.NetworkMode)
		}
		switch {
		case s.name == "redis":
			if i := slices.Index(c.Command, "--port"); i < 0 || i+1 >= len(c.Command) || c.Command[i+1] != s.port {
				t.Errorf("redis: compose command %q, want --port %s", c.Command, s.port)
			}
		case strings.HasPrefix(s.name, "switchboard-"):
			instances = append(instances, s.port)
			if got := strings.Join(c.Command, " "); got != s.flags {
				t.Errorf("%s: compose flags\n  %s\nlocal-cluster.sh flags\n  %s", s.name, got, s.flags)
			}
			if want := []string{"CMD", "/switchboard", "healthcheck", "http://127.0.0.1:" + s.port + "/healthz"}; !slices.Equal(c.Healthcheck.Test, want) {
				t.Errorf("%s: healthcheck %q, want %q", s.name, c.Healthcheck.Test, want)
			}
		case s.name == "nginx":
			if !slices.ContainsFunc(c.Volumes, func(v string) bool { return strings.HasPrefix(v, "./nginx.conf:") }) {
				t.Errorf("nginx: volumes %q do not mount deploy/nginx.conf", c.Volumes)
			}
			if !strings.Contains(string(conf), "listen 127.0.0.1:"+s.port+";") {
				t.Errorf("nginx.conf does not listen on %s", s.port)
			}
		default:
			t.Errorf("a service this test does not know: %s", s.name)
		}
	}
	if !slices.Equal(upstream, instances) {
		t.Errorf("nginx.conf balances over %v, the instances listen on %v", upstream, instances)
	}
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM scratch", "USER 65532", `HEALTHCHECK`, `"/switchboard", "healthcheck"`, "CGO_ENABLED=0"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile: no %q", want)
		}
	}
}

// freeTCPPort returns a loopback port nobody listens on now.
func freeTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// TestLocalCluster runs deploy/local-cluster.sh on free ports: through its
// nginx, the three instances are listed, and a message published through
// one reaches a subscriber wherever nginx put it; SIGTERM stops it all.
func TestLocalCluster(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Fatal("nginx is not installed: apt-get install -y nginx-light (or nginx)")
		}
	}
	ports := []string{freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)}
	redisPort, nginxPort := freeTCPPort(t), freeTCPPort(t)
	env := []string{"REDIS_PORT=" + redisPort, "PORTS=" + strings.Join(ports, " "), "NGINX_PORT=" + nginxPort}
	cmd := exec.Command("../deploy/local-cluster.sh")
	cmd.Env = append(os.Environ(), append(env, "SWITCHBOARD="+binary, "WORK="+t.TempDir())...)
	logs := &logBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-done
		}
		if t.Failed() {
			t.Logf("local-cluster.sh:\n%s", logs)
		}
	})
	front := "127.0.0.1:" + nginxPort
	var r nodesReply
	waitFor(t, 20*time.Second, func() bool {
		resp, err := http.Get("http://" + front + "/api/nodes")
		if err != nil {
			return false // nginx not up yet
		}
		defer resp.Body.Close()
		r = nodesReply{}
		return json.NewDecoder(resp.Body).Decode(&r) == nil && len(r.Nodes) == 3
	}, "three nodes through the script's nginx")
	sub := native(t, "ws://"+front+"/ws")
	if resp, err := sub.request(`{"id":1,"op":"subscribe","channel":"deploy"}`, 1, nil); err != nil || resp["ok"] != true {
		t.Fatalf("subscribe: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		// Published through nginx, to whichever instance it picks; the
		// first tries may come before the subscription reached Redis.
		if code, body, err := httpPost("http://"+front+"/api/publish", fmt.Sprintf(`{"channel":"deploy","data":%d}`, i)); err != nil || code != 200 {
			t.Fatalf("publish: %d %s %v", code, body, err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		m, err := sub.readJSON(rctx)
		rcancel()
		if err == nil && m["op"] == "message" && m["channel"] == "deploy" {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no message through the cluster")
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		stopped = true
	case <-time.After(30 * time.Second):
		t.Fatal("local-cluster.sh did not stop on SIGTERM")
	}
	for _, p := range append(ports, redisPort, nginxPort) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+p, time.Second); err == nil {
			c.Close()
			t.Errorf("port %s still answers after the script stopped", p)
		}
	}
}

// Every metric deploy/grafana-dashboard.json graphs is one the server
// exports, so the dashboard cannot drift from /metrics unnoticed.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t)
	// One message through, so the per-namespace series exist.
	if code, body, err := httpPost(in.url("/api/publish"), `{"channel":"g","data":1}`); err != nil || code != 200 {
		t.Fatalf("publish: %d %s %v", code, body, err)
	}
	resp, err := http.Get(in.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	metric := regexp.MustCompile(`switchboard_[a-z_]+`)
	used := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q graphs nothing", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range metric.FindAllString(tg.Expr, -1) {
				used++
				if !regexp.MustCompile(`(?m)^` + name + `[ {]`).Match(text) {
					t.Errorf("panel %q: %s is not in /metrics", p.Title, name)
				}
			}
		}
	}
	if used < 10 {
		t.Errorf("the dashboard graphs %d metrics", used)
	}
}
