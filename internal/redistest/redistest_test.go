package redistest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// do runs one command on a fresh connection and returns the reply line.
func do(t *testing.T, s *Server, args ...string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr(), err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(conn)
	if s.opts.Password != "" {
		if err := command(conn, r, "AUTH", s.opts.Password); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
		line, err = r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(line)
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    *Options
		wantKey string // GET k after a restart
	}{
		{name: "InMemory", opts: nil, wantKey: "$-1"},
		{name: "Persistent", opts: &Options{Persistence: true}, wantKey: "v"},
		{name: "Password", opts: &Options{Password: "s3cret"}, wantKey: "$-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tc.opts)
			if strings.HasSuffix(s.Addr(), ":6379") {
				t.Fatal("started on the default port")
			}
			if got := do(t, s, "SET", "k", "v"); got != "+OK" {
				t.Fatalf("SET: %s", got)
			}
			addr := s.Addr()
			s.Kill()
			if s.Running() {
				t.Fatal("running after Kill")
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Fatal("still accepting connections after Kill")
			}
			s.Kill() // a no-op
			s.Restart()
			if s.Addr() != addr {
				t.Fatalf("restarted on %s, was %s", s.Addr(), addr)
			}
			if got := do(t, s, "GET", "k"); got != tc.wantKey {
				t.Errorf("GET after restart: %s, want %s", got, tc.wantKey)
			}
			if tc.opts != nil && tc.opts.Password != "" {
				if !strings.Contains(s.URL(), ":s3cret@") {
					t.Errorf("URL %s lacks the password", s.URL())
				}
			}
		})
	}
}

// New gives a port with no server on it until Restart starts one.
func TestNewStartsNothing(t *testing.T) {
	t.Parallel()
	s := New(t, nil)
	if s.Running() {
		t.Fatal("running before Restart")
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		// The port was free when New took it, and tests run side by side:
		// another test's server, or a cluster node's bus, may have taken it
		// since. Only a redis-server working in this Server's directory is
		// this Server's.
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$3\r\ndir\r\n"))
		reply, _ := io.ReadAll(io.LimitReader(c, 4096))
		c.Close()
		if bytes.Contains(reply, []byte(s.Dir())) {
			t.Fatal("the Server's redis-server runs before Restart")
		}
	}
	s.Restart()
	if got := do(t, s, "PING"); got != "+PONG" {
		t.Fatalf("PING after Restart: %s", got)
	}
}

// A Cluster server is a cluster node owning every slot, across restarts.
func TestCluster(t *testing.T) {
	t.Parallel()
	s := Start(t, &Options{Cluster: true})
	for i := range 2 {
		if i > 0 {
			s.Restart()
		}
		if got := do(t, s, "SET", "k", "v"); got != "+OK" {
			t.Fatalf("SET on the cluster node: %s", got)
		}
		if got := do(t, s, "CLUSTER", "MYID"); len(got) != 40 {
			t.Fatalf("CLUSTER MYID: %q", got)
		}
	}
}

// StartCluster builds a settled cluster; a slot moves with its keys, and a
// killed primary's replica takes over.
func TestStartCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3, 1)
	if n := len(c.Primaries()); n != 3 {
		t.Fatalf("%d primaries, want 3", n)
	}
	slot := c.Slot("{x}")
	from := c.Owner(slot)
	if _, err := from.Do("SET", "{x}k", "v"); err != nil {
		t.Fatal(err)
	}
	var to *Server
	for _, p := range c.Primaries() {
		if p != from {
			to = p
			break
		}
	}
	c.MoveSlot(slot, to)
	c.WaitSettled()
	if got := c.Owner(slot); got != to {
		t.Fatalf("slot %d owned by %s after the move, want %s", slot, got.Addr(), to.Addr())
	}
	if v, err := to.Do("GET", "{x}k"); err != nil || v != "v" {
		t.Fatalf("GET after the move: %v %v", v, err)
	}
	r := c.KillPrimary(to)
	if r == nil || c.Owner(slot) != r {
		t.Fatalf("slot %d not taken over by the replica %v", slot, r)
	}
	if v, err := r.Do("GET", "{x}k"); err != nil || v != "v" {
		t.Fatalf("GET after the failover: %v %v", v, err)
	}
}

// Clusters of one and two primaries, which redis-cli cannot create, are
// built by hand.
func TestStartSmallCluster(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2} {
		c := StartCluster(t, n, 0)
		if got := len(c.Primaries()); got != n {
			t.Fatalf("%d primaries, want %d", got, n)
		}
	}
}

// TestReplication reads the offsets WaitSettled compares from INFO
// replication as Redis 7 writes it.
func TestReplication(t *testing.T) {
	primaryInfo := "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n" +
		"slave0:ip=127.0.0.1,port=7001,state=online,offset=5210,lag=0\r\n" +
		"slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n" +
		"master_failover_state:no-failover\r\nmaster_replid:0123\r\n" +
		"master_repl_offset:5321\r\nsecond_repl_offset:-1\r\n"
	offset, replicas, ok := replication(primaryInfo)
	if !ok || offset != 5321 {
		t.Fatalf("primary: offset %d, ok %v; want 5321, true", offset, ok)
	}
	want := map[string]int64{"127.0.0.1:7001": 5210, "127.0.0.1:7002": -1}
	if len(replicas) != len(want) {
		t.Fatalf("replicas %v, want %v", replicas, want)
	}
	for addr, o := range want {
		if replicas[addr] != o {
			t.Errorf("replica %s: offset %d, want %d", addr, replicas[addr], o)
		}
	}
	replicaInfo := "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n" +
		"master_port:7000\r\nslave_repl_offset:5321\r\nmaster_repl_offset:5321\r\n"
	if _, _, ok := replication(replicaInfo); ok {
		t.Error("a replica's INFO read as a primary's")
	}
}
