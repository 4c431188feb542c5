package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ClusterNodeTimeout is the cluster-node-timeout of StartCluster's nodes:
// how long a primary may be silent before the others mark it failed and a
// replica takes over. Short, so that failover tests are quick.
const ClusterNodeTimeout = 1000 * time.Millisecond

// clusterTimeout bounds each wait for a cluster to settle.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of redis-server processes run for a test:
// every node on a free loopback port, built with redis-cli --cluster
// create. Its nodes run with cluster-require-full-coverage no, so that the
// slots of live primaries keep working while another primary is down.
type Cluster struct {
	tb    testing.TB
	cli   string
	Nodes []*Server // every node, primaries first as created
}

// StartCluster starts a cluster of primaries primaries with
// replicasPerPrimary replicas each, and returns once every node says
// cluster_state:ok, agrees on who owns every slot, and every replica is in
// sync with its primary. The nodes are stopped when tb ends. It fails tb if
// redis-server or redis-cli is missing (REDIS_CLI may name the latter).
func StartCluster(tb testing.TB, primaries, replicasPerPrimary int) *Cluster {
	tb.Helper()
	if primaries < 1 || replicasPerPrimary < 0 {
		tb.Fatalf("redistest: StartCluster(%d, %d)", primaries, replicasPerPrimary)
	}
	if primaries < 3 && replicasPerPrimary > 0 {
		// redis-cli --cluster create wants 3 primaries, and a failover a
		// majority of them to vote.
		tb.Fatalf("redistest: StartCluster(%d, %d): replicas need at least 3 primaries", primaries, replicasPerPrimary)
	}
	bin := os.Getenv("REDIS_CLI")
	if bin == "" {
		bin = "redis-cli"
	}
	cli, err := exec.LookPath(bin)
	if err != nil {
		tb.Fatalf("redistest: %s not found (%v): cluster tests build their cluster with redis-cli; "+
			"install it (apt-get install -y redis-tools) or set REDIS_CLI to its path", bin, err)
	}
	var lastErr error
	for range 3 {
		c := &Cluster{tb: tb, cli: cli}
		for range primaries * (1 + replicasPerPrimary) {
			c.Nodes = append(c.Nodes, Start(tb, &Options{clusterMember: true}))
		}
		if lastErr = c.create(replicasPerPrimary); lastErr == nil {
			return c
		}
		for _, n := range c.Nodes {
			n.Kill()
		}
	}
	tb.Fatalf("redistest: start a cluster: %v", lastErr)
	return nil
}

// create joins the nodes with redis-cli --cluster create and waits until
// the cluster is settled.
func (c *Cluster) create(replicas int) error {
	if len(c.Nodes) < 3 {
		return c.createSmall()
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(c.cli, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return c.waitSettled()
}

// createSmall builds a cluster of one or two primaries, which redis-cli
// --cluster create refuses: each node takes an equal range of slots and
// meets the first.
func (c *Cluster) createSmall() error {
	n := len(c.Nodes)
	for i, node := range c.Nodes {
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if _, err := node.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			return fmt.Errorf("%s: CLUSTER ADDSLOTSRANGE: %w", node.Addr(), err)
		}
		if i > 0 {
			if _, err := node.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(c.Nodes[0].port)); err != nil {
				return fmt.Errorf("%s: CLUSTER MEET: %w", node.Addr(), err)
			}
		}
	}
	return c.waitSettled()
}

// URL returns a redis:// URL naming every node as a seed.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return "redis://" + strings.Join(addrs, ",")
}

// WaitSettled waits until every running node says cluster_state:ok, the
// running nodes agree on the owner of every slot and each live replica is
// in sync and has acknowledged every write its primary had made by then, so
// that a KillPrimary after it loses nothing; it fails the test
// after 30 seconds.
func (c *Cluster) WaitSettled() {
	c.tb.Helper()
	if err := c.waitSettled(); err != nil {
		c.tb.Fatalf("redistest: %v", err)
	}
}

func (c *Cluster) waitSettled() error {
	deadline := time.Now().Add(clusterTimeout)
	for {
		err := c.settled()
		if err == nil {
			return c.waitReplicated(deadline)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not settled after %v: %w", clusterTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settled returns nil when the running nodes are settled (see WaitSettled).
func (c *Cluster) settled() error {
	var first string
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", n.Addr(), err)
		}
		if !strings.Contains(info.(string), "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", n.Addr())
		}
		owners, err := c.ownersFrom(n)
		if err != nil {
			return err
		}
		if first == "" {
			first = owners
		} else if owners != first {
			return fmt.Errorf("%s disagrees on slot owners", n.Addr())
		}
		repl, err := n.Do("INFO", "replication")
		if err != nil {
			return fmt.Errorf("%s: INFO replication: %w", n.Addr(), err)
		}
		r := repl.(string)
		if strings.Contains(r, "role:slave") && !strings.Contains(r, "master_link_status:up") {
			return fmt.Errorf("replica %s not in sync", n.Addr())
		}
	}
	if first == "" {
		return errors.New("no node runs")
	}
	return nil
}

// replication reads a node's INFO replication: for a primary, its
// replication offset and, for each replica connected to it, the offset that
// replica has acknowledged (-1 while it is not online); ok is false for a
// replica.
func replication(info string) (primary int64, replicas map[string]int64, ok bool) {
	if !strings.Contains(info, "role:master") {
		return 0, nil, false
	}
	replicas = make(map[string]int64)
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if v, found := strings.CutPrefix(line, "master_repl_offset:"); found {
			primary, _ = strconv.ParseInt(v, 10, 64)
			continue
		}
		name, fields, found := strings.Cut(line, ":")
		if !found || !strings.HasPrefix(name, "slave") || !strings.Contains(fields, "state=") {
			continue
		}
		var ip, port, state string
		offset := int64(-1)
		for _, f := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			case "state":
				state = v
			case "offset":
				offset, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if state != "online" {
			offset = -1
		}
		replicas[ip+":"+port] = offset
	}
	return primary, replicas, true
}

// waitReplicated waits until every replica connected to a running primary
// has acknowledged the writes that primary had made when it was called.
// Replication is asynchronous, so a primary killed before that loses its
// last writes; a replica acknowledges once a second, so this takes about a
// second at most, however busy the primary stays meanwhile.
func (c *Cluster) waitReplicated(deadline time.Time) error {
	targets := make(map[*Server]int64)
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		info, err := n.Do("INFO", "replication")
		if err != nil {
			return fmt.Errorf("%s: INFO replication: %w", n.Addr(), err)
		}
		if offset, _, ok := replication(info.(string)); ok {
			targets[n] = offset
		}
	}
	for {
		var lagging error
		for n, target := range targets {
			info, err := n.Do("INFO", "replication")
			if err != nil {
				return fmt.Errorf("%s: INFO replication: %w", n.Addr(), err)
			}
			_, replicas, _ := replication(info.(string))
			for addr, offset := range replicas {
				if offset < target {
					lagging = fmt.Errorf("replica %s of %s has acknowledged offset %d of %d", addr, n.Addr(), offset, target)
				}
			}
		}
		if lagging == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replicas behind after %v: %w", clusterTimeout, lagging)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ownersFrom returns n's view of the slot owners, as text to compare.
func (c *Cluster) ownersFrom(n *Server) (string, error) {
	v, err := n.Do("CLUSTER", "SLOTS")
	if err != nil {
		return "", fmt.Errorf("%s: CLUSTER SLOTS: %w", n.Addr(), err)
	}
	ranges, _ := v.([]any)
	var b strings.Builder
	covered := int64(0)
	for _, r := range ranges {
		e, _ := r.([]any)
		if len(e) < 3 {
			return "", fmt.Errorf("%s: CLUSTER SLOTS: bad entry", n.Addr())
		}
		lo, hi := e[0].(int64), e[1].(int64)
		covered += hi - lo + 1
		p, _ := e[2].([]any)
		if len(p) < 2 {
			return "", fmt.Errorf("%s: CLUSTER SLOTS: bad node", n.Addr())
		}
		fmt.Fprintf(&b, "%d-%d:%v;", lo, hi, p[1])
	}
	_ = covered // down slots are allowed (full coverage is not required)
	return b.String(), nil
}

// nodeByPort returns the node listening on port, or nil.
func (c *Cluster) nodeByPort(port int64) *Server {
	for _, n := range c.Nodes {
		if int64(n.port) == port {
			return n
		}
	}
	return nil
}

// anyRunning returns a running node, failing the test when none runs.
func (c *Cluster) anyRunning() *Server {
	c.tb.Helper()
	for _, n := range c.Nodes {
		if n.Running() {
			return n
		}
	}
	c.tb.Fatal("redistest: no cluster node runs")
	return nil
}

// Slot returns the hash slot of key (CLUSTER KEYSLOT).
func (c *Cluster) Slot(key string) int {
	c.tb.Helper()
	v, err := c.anyRunning().Do("CLUSTER", "KEYSLOT", key)
	if err != nil {
		c.tb.Fatalf("redistest: CLUSTER KEYSLOT: %v", err)
	}
	return int(v.(int64))
}

// Owner returns the primary that owns slot, as a running node sees it.
func (c *Cluster) Owner(slot int) *Server {
	c.tb.Helper()
	v, err := c.anyRunning().Do("CLUSTER", "SLOTS")
	if err != nil {
		c.tb.Fatalf("redistest: CLUSTER SLOTS: %v", err)
	}
	for _, r := range v.([]any) {
		e := r.([]any)
		if int64(slot) >= e[0].(int64) && int64(slot) <= e[1].(int64) {
			return c.nodeByPort(e[2].([]any)[1].(int64))
		}
	}
	c.tb.Fatalf("redistest: slot %d has no owner", slot)
	return nil
}

// Primaries returns the running primaries that own slots.
func (c *Cluster) Primaries() []*Server {
	c.tb.Helper()
	v, err := c.anyRunning().Do("CLUSTER", "SLOTS")
	if err != nil {
		c.tb.Fatalf("redistest: CLUSTER SLOTS: %v", err)
	}
	seen := make(map[*Server]bool)
	var out []*Server
	for _, r := range v.([]any) {
		n := c.nodeByPort(r.([]any)[2].([]any)[1].(int64))
		if n != nil && n.Running() && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// ID returns the node's cluster ID (CLUSTER MYID).
func (s *Server) ID() string {
	s.tb.Helper()
	v, err := s.Do("CLUSTER", "MYID")
	if err != nil {
		s.tb.Fatalf("redistest: CLUSTER MYID: %v", err)
	}
	return v.(string)
}

// MoveSlot moves slot, and the keys in it, from its owner to primary to,
// the way redis-cli --cluster reshard does: IMPORTING on the target,
// MIGRATING on the source, MIGRATE of every key, then NODE on both and on
// every other primary. Clients of the source see ASK while it runs, and
// sharded subscribers of the slot get SUNSUBSCRIBE at the end.
func (c *Cluster) MoveSlot(slot int, to *Server) {
	c.tb.Helper()
	from := c.Owner(slot)
	if from == to {
		return
	}
	sl := strconv.Itoa(slot)
	fromID, toID := from.ID(), to.ID()
	must := func(n *Server, args ...string) any {
		c.tb.Helper()
		v, err := n.Do(args...)
		if err != nil {
			c.tb.Fatalf("redistest: move slot %d: %s on %s: %v", slot, strings.Join(args, " "), n.Addr(), err)
		}
		return v
	}
	must(to, "CLUSTER", "SETSLOT", sl, "IMPORTING", fromID)
	must(from, "CLUSTER", "SETSLOT", sl, "MIGRATING", toID)
	for {
		keys, _ := must(from, "CLUSTER", "GETKEYSINSLOT", sl, "100").([]any)
		if len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", "127.0.0.1", strconv.Itoa(to.port), "", "0", "5000", "KEYS"}
		for _, k := range keys {
			args = append(args, k.(string))
		}
		must(from, args...)
	}
	must(to, "CLUSTER", "SETSLOT", sl, "NODE", toID)
	must(from, "CLUSTER", "SETSLOT", sl, "NODE", toID)
	for _, p := range c.Primaries() {
		if p != from && p != to {
			_, _ = p.Do("CLUSTER", "SETSLOT", sl, "NODE", toID) // gossip spreads it anyway
		}
	}
}

// ReplicaOf returns a running replica of primary, or nil.
func (c *Cluster) ReplicaOf(primary *Server) *Server {
	c.tb.Helper()
	id := primary.ID()
	for _, n := range c.Nodes {
		if n == primary || !n.Running() {
			continue
		}
		v, err := n.Do("CLUSTER", "NODES")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(v.(string), "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && strings.Contains(f[2], "myself") && strings.Contains(f[2], "slave") && f[3] == id {
				return n
			}
		}
	}
	return nil
}

// Failover makes a replica of primary take its place at once (CLUSTER
// FAILOVER, which waits for the replica to catch up: nothing acknowledged
// is lost), and waits until the cluster is settled.
func (c *Cluster) Failover(primary *Server) *Server {
	c.tb.Helper()
	r := c.ReplicaOf(primary)
	if r == nil {
		c.tb.Fatalf("redistest: %s has no replica to fail over to", primary.Addr())
	}
	if _, err := r.Do("CLUSTER", "FAILOVER"); err != nil {
		c.tb.Fatalf("redistest: CLUSTER FAILOVER on %s: %v", r.Addr(), err)
	}
	c.WaitSettled()
	return r
}

// KillPrimary kills primary (SIGKILL) and, when it has a replica, waits
// until the replica has taken over and the cluster is settled again; it
// returns that replica (nil without one: the primary's slots stay down
// until Restart). Writes made before the last WaitSettled survive on the
// replica; later ones may be lost, as with any crash of a primary.
func (c *Cluster) KillPrimary(primary *Server) *Server {
	c.tb.Helper()
	r := c.ReplicaOf(primary)
	primary.Kill()
	if r == nil {
		return nil
	}
	c.WaitSettled()
	return r
}

// Do sends one command to the server and returns its reply: a string
// (simple or bulk; "" for a null), an int64, or a []any of those; an
// error reply is returned as an error. It takes a second at most.
func (s *Server) Do(args ...string) (any, error) {
	conn, r, err := s.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	return readReply(r)
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, errors.New(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return []any(nil), err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("bad reply line %q", line)
}
