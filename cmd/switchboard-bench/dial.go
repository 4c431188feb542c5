//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// target is one server instance.
type target struct {
	host string // host:port
	base string // path prefix from the URL, without a trailing slash
}

func parseTargets(urls []string) ([]target, error) {
	var out []target
	for _, list := range urls {
		for _, s := range strings.Split(list, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			u, err := url.Parse(s)
			if err != nil {
				return nil, fmt.Errorf("--url %q: %w", s, err)
			}
			if u.Scheme != "ws" && u.Scheme != "http" {
				return nil, fmt.Errorf("--url %q: want ws:// or http:// (no TLS)", s)
			}
			if u.Port() == "" {
				u.Host += ":80"
			}
			out = append(out, target{host: u.Host, base: strings.TrimSuffix(u.Path, "/")})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no --url given")
	}
	return out, nil
}

// dialer opens benchmark connections, spreading them over source addresses
// when asked.
type dialer struct {
	dialect   string
	token     string
	pusherKey string
	srcs      []*net.TCPAddr
	next      atomic.Uint64
	timeout   time.Duration
}

// path returns the request path of a connection to channel ch on t.
func (d *dialer) path(t target, ch string) string {
	switch d.dialect {
	case "raw":
		if ch == "" {
			return t.base + "/"
		}
		return t.base + "/raw/" + ch
	case "centrifugo":
		return t.base + "/connection/websocket"
	case "pusher":
		return t.base + "/app/" + url.PathEscape(d.pusherKey) + "?protocol=7&client=switchboard-bench&version=1"
	default:
		p := t.base + "/ws"
		if d.token != "" {
			p += "?token=" + url.QueryEscape(d.token)
		}
		return p
	}
}

// setupConn is a connection during its setup: blocking reads through the
// standard library before its socket moves to an epoll reader.
type setupConn struct {
	nc  net.Conn
	buf []byte // received, not yet parsed
	id  int
}

// connect dials t, upgrades on path and returns the connection with any
// bytes already read past the handshake. It is what the connect scenario
// times.
func (d *dialer) connect(ctx context.Context, t target, path string) (*setupConn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	if len(d.srcs) > 0 {
		nd.LocalAddr = d.srcs[d.next.Add(1)%uint64(len(d.srcs))]
	}
	nc, err := nd.DialContext(ctx, "tcp", t.host)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(d.timeout))
	rest, err := handshake(nc, t.host, path, nil)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("%s%s: %w", t.host, path, err)
	}
	return &setupConn{nc: nc, buf: rest}, nil
}

// readMessage returns the next text message's payload (a copy), skipping
// control frames.
func (s *setupConn) readMessage() ([]byte, error) {
	tmp := make([]byte, 4096)
	for range 64 {
		f, n, err := parseFrame(s.buf)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			p := append([]byte(nil), f.payload...)
			s.buf = s.buf[n:]
			switch f.op {
			case opText, opBin:
				return p, nil
			case opClose:
				return nil, fmt.Errorf("closed by server: %q", p)
			}
			continue
		}
		m, err := s.nc.Read(tmp)
		s.buf = append(s.buf, tmp[:m]...)
		if err != nil {
			return nil, err
		}
	}
	return nil, errors.New("no message")
}

func (s *setupConn) send(p []byte) error {
	var st uint64
	_, err := s.nc.Write(appendFrame(nil, opText, p, maskKey(&st)))
	return err
}

// request sends a request and waits for the reply carrying its id,
// skipping other frames (at most a few).
func (s *setupConn) request(p []byte, id int) ([]byte, error) {
	if err := s.send(p); err != nil {
		return nil, err
	}
	want := []byte(`"id":` + strconv.Itoa(id))
	for range 32 {
		m, err := s.readMessage()
		if err != nil {
			return nil, err
		}
		for _, line := range bytes.Split(m, []byte("\n")) {
			if !bytes.Contains(line, want) {
				continue
			}
			if bytes.Contains(line, []byte(`"ok":false`)) || bytes.Contains(line, []byte(`"error":`)) {
				return nil, fmt.Errorf("refused: %s", line)
			}
			return line, nil
		}
	}
	return nil, fmt.Errorf("no reply to request %d", id)
}

// setup brings a connection to the point where it receives channel ch's
// messages (and those of more, subscribed one after the other): the native
// welcome and subscribe replies, Pusher's, or Centrifugo's connect and
// subscribe replies. Raw connections are subscribed by the upgrade itself,
// to one channel. An empty ch subscribes to nothing.
func (d *dialer) setup(s *setupConn, ch string, more ...string) error {
	if len(more) > 0 && d.dialect == "raw" {
		return errors.New("a raw connection has one channel")
	}
	if err := d.greet(s); err != nil {
		return err
	}
	if ch == "" {
		return nil
	}
	for _, c := range append([]string{ch}, more...) {
		if err := d.subscribe(s, c); err != nil {
			return err
		}
	}
	return nil
}

// greet reads what the server sends first (the native welcome, Pusher's
// connection_established) or makes Centrifugo's connect request.
func (d *dialer) greet(s *setupConn) error {
	switch d.dialect {
	case "native":
		w, err := s.readMessage()
		if err != nil {
			return fmt.Errorf("welcome: %w", err)
		}
		if !bytes.Contains(w, []byte(`"welcome"`)) {
			return fmt.Errorf("first frame %s, want welcome", w)
		}
	case "pusher":
		w, err := s.readMessage()
		if err != nil {
			return fmt.Errorf("connection_established: %w", err)
		}
		if !bytes.Contains(w, []byte(`"pusher:connection_established"`)) {
			return fmt.Errorf("first frame %s, want pusher:connection_established", w)
		}
	case "centrifugo":
		s.id++
		req := `{"id":1,"connect":{"name":"switchboard-bench"}}`
		if d.token != "" {
			req = `{"id":1,"connect":{"token":` + strconv.Quote(d.token) + `,"name":"switchboard-bench"}}`
		}
		if _, err := s.request([]byte(req), s.id); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
	}
	return nil
}

// subscribe subscribes a greeted native, Pusher or Centrifugo connection to
// ch and waits for the reply; a raw connection is left as it is.
func (d *dialer) subscribe(s *setupConn, ch string) error {
	switch d.dialect {
	case "native":
		s.id++
		if _, err := s.request([]byte(`{"id":`+strconv.Itoa(s.id)+`,"op":"subscribe","channel":`+strconv.Quote(ch)+`}`), s.id); err != nil {
			return fmt.Errorf("subscribe %s: %w", ch, err)
		}
	case "pusher":
		if err := s.send([]byte(`{"event":"pusher:subscribe","data":{"channel":` + strconv.Quote(ch) + `}}`)); err != nil {
			return err
		}
		for range 8 {
			m, err := s.readMessage()
			if err != nil {
				return fmt.Errorf("subscribe %s: %w", ch, err)
			}
			switch {
			case bytes.Contains(m, []byte(`"pusher_internal:subscription_succeeded"`)):
				return nil
			case bytes.Contains(m, []byte(`"pusher:subscription_error"`)), bytes.Contains(m, []byte(`"pusher:error"`)):
				return fmt.Errorf("subscribe %s: refused: %s", ch, m)
			}
		}
		return fmt.Errorf("subscribe %s: no pusher_internal:subscription_succeeded", ch)
	case "centrifugo":
		s.id++
		if _, err := s.request([]byte(`{"id":`+strconv.Itoa(s.id)+`,"subscribe":{"channel":`+strconv.Quote(ch)+`}}`), s.id); err != nil {
			return fmt.Errorf("subscribe %s: %w", ch, err)
		}
	}
	return nil
}

// detach takes the socket out of the standard library: it duplicates the
// descriptor, closes the net.Conn (which removes it from the runtime's
// poller) and returns a non-blocking conn holding any unparsed bytes.
func detach(s *setupConn) (*conn, error) {
	sc, ok := s.nc.(syscall.Conn)
	if !ok {
		_ = s.nc.Close()
		return nil, errors.New("not a TCP connection")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		_ = s.nc.Close()
		return nil, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(f uintptr) { fd, derr = unix.Dup(int(f)) }); err != nil {
		derr = err
	}
	_ = s.nc.Close()
	if derr != nil {
		return nil, derr
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	c := &conn{fd: fd, sub: true, id: s.id}
	if len(s.buf) > 0 {
		c.pending = append(c.pending, s.buf...)
	}
	return c, nil
}
