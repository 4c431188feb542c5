package transport_test

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboard-rt/switchboard/hub"
)

// The close handshake as RFC 6455 (section 7) and the Autobahn TestSuite
// (cases 2.5, 5.x, 7.x) want it when the client breaks the protocol: the
// server answers with its close code, skips what is left of the refused
// frame, and closes the TCP connection as soon as the client's close frame
// has arrived, or at once when the refused frame was the client's close.
// The hub's close grace is a minute here, so a connection that is cut
// promptly was cut by the read loop, not by the grace timer.
func TestRefusedFramesCloseTheConnectionPromptly(t *testing.T) {
	n := startNode(t, hub.Config{CloseGrace: time.Minute})
	closeFrame := func(code int, reason string) []byte {
		p := binary.BigEndian.AppendUint16(nil, uint16(code))
		return maskedFrame(byte(ws.OpClose), true, append(p, reason...))
	}
	long := make([]byte, 124)
	for i := range long {
		long[i] = '*'
	}
	tests := []struct {
		name        string
		frames      []byte
		code        int
		clientClose bool // the refused frame was not a close: the client sends one after the server's
	}{
		{name: "PingOver125", frames: maskedFrame(byte(ws.OpPing), true, make([]byte, 126)), code: 1002, clientClose: true},
		{name: "ContinuationWithoutStart", frames: maskedFrame(byte(ws.OpContinuation), true, []byte("nothing to continue")), code: 1002, clientClose: true},
		{name: "ReservedOpcode", frames: maskedFrame(0x3, true, []byte("reserved")), code: 1002, clientClose: true},
		{name: "ReservedBits", frames: func() []byte { b := maskedFrame(byte(ws.OpText), true, []byte("rsv")); b[0] |= 0x20; return b }(), code: 1002, clientClose: true},
		{name: "CloseCode999", frames: closeFrame(999, ""), code: 1002},
		{name: "CloseCode1005", frames: closeFrame(1005, ""), code: 1002},
		{name: "CloseReasonNotUTF8", frames: closeFrame(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"), code: 1007},
		{name: "CloseOver125", frames: closeFrame(1000, string(long)), code: 1002},
		{name: "CloseOneByte", frames: maskedFrame(byte(ws.OpClose), true, []byte{3}), code: 1002},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := n.dial(t, "/raw/rfc")
			c.write(tc.frames)
			if code := c.closeCode(); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
			if tc.clientClose {
				c.write(closeFrame(1000, ""))
			}
			c.expectEOF()
		})
	}
}

// A client's valid close is answered with its code and the server closes
// the connection at once.
func TestClientCloseIsEchoedAndTheServerHangsUp(t *testing.T) {
	n := startNode(t, hub.Config{CloseGrace: time.Minute})
	c := n.dial(t, "/raw/rfc")
	c.write(maskedFrame(byte(ws.OpClose), true, []byte{0x0f, 0xa0, 'b', 'y', 'e'})) // 4000
	if code := c.closeCode(); code != 4000 {
		t.Fatalf("close code %d, want 4000", code)
	}
	c.expectEOF()
}

// expectEOF reads until the server closes the connection, failing when it
// does not within 5 seconds.
func (c *wsClient) expectEOF() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatal("the server did not close the connection")
	}
}

// Text is checked as UTF-8 while its frame arrives (Autobahn 6.4.x): the
// first bytes of a frame that can never be valid UTF-8 close the
// connection with 1007 although the rest of the frame never comes.
func TestInvalidUTF8FailsBeforeItsFrameEnds(t *testing.T) {
	n := startNode(t, hub.Config{CloseGrace: time.Minute})
	for _, tc := range []struct {
		name    string
		payload []byte
		sent    int // bytes of the payload sent
	}{
		{name: "FirstFrame", payload: []byte("κόσμε\xf4\x90\x80\x80edited"), sent: 15},
		{name: "Surrogate", payload: []byte("ab\xed\xa0\x80cdefgh"), sent: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := n.dial(t, "/raw/utf8")
			frame := maskedFrame(byte(ws.OpText), true, tc.payload)
			header := len(frame) - len(tc.payload)
			c.write(frame[:header+tc.sent])
			if code := c.closeCode(); code != 1007 {
				t.Fatalf("close code %d, want 1007", code)
			}
		})
	}
}
