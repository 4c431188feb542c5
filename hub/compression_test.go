package hub_test

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/wsframe"
)

// inflateFrame reads a compressed frame's payload as a permessage-deflate
// client does.
func inflateFrame(t *testing.T, payload []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(payload), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// A message is compressed once per compression its subscribers negotiated,
// whatever their number, and every subscriber of a compression gets the
// same bytes; subscribers without compression get the plain frame.
func TestFanoutCompressesOncePerMessage(t *testing.T) {
	h, _ := newHub(t, hub.Config{})
	const perKind = 20
	kinds := []hub.Compression{hub.Uncompressed, hub.Deflate, hub.DeflateHuffman}
	fts := make(map[hub.Compression][]*fakeTransport)
	for i := range perKind * len(kinds) {
		kind := kinds[i%len(kinds)]
		c, ft := connect(t, h)
		c.SetCompression(kind)
		c.HandleText(fmt.Appendf(nil, `{"id":%d,"op":"subscribe","channel":"room"}`, i+1))
		ft.waitFrames(t, 2)
		fts[kind] = append(fts[kind], ft)
	}
	data := []byte(`"` + strings.Repeat("all work and no play makes jack a dull boy. ", 50) + `"`)
	want := `{"op":"message","channel":"room","data":` + string(data) + `}`
	before := h.Stats().MessagesDeflated
	if _, err := h.Publish(context.Background(), "room", data); err != nil {
		t.Fatal(err)
	}
	for _, kind := range kinds {
		var first *byte
		for i, ft := range fts[kind] {
			ft.waitFrames(t, 3)
			ft.mu.Lock()
			b := ft.frames[2]
			ft.mu.Unlock()
			f := decodeFrame(t, b)
			payload := f.payload
			if compressed := b[0]&wsframe.RSV1 != 0; compressed != (kind != hub.Uncompressed) {
				t.Fatalf("compression %d, subscriber %d: RSV1 is %v", kind, i, compressed)
			}
			if kind != hub.Uncompressed {
				if len(payload) >= len(want) {
					t.Errorf("compression %d: %d bytes compressed to %d", kind, len(want), len(payload))
				}
				payload = inflateFrame(t, payload)
			}
			// The event is want with the publish time added (ts).
			if !strings.HasPrefix(string(payload), strings.TrimSuffix(want, "}")) || !strings.Contains(string(payload), `"ts":`) {
				t.Fatalf("compression %d, subscriber %d got %.80s", kind, i, payload)
			}
			if first == nil {
				first = &b[0]
			} else if &b[0] != first {
				t.Errorf("compression %d: subscriber %d got its own copy of the frame", kind, i)
			}
		}
	}
	if got := h.Stats().MessagesDeflated - before; got != 2 {
		t.Fatalf("%d compressions for one message to %d subscribers of two compressions, want 2", got, 2*perKind)
	}
}

// A message whose event is under wsframe.MinDeflate (with its ts, some 60
// bytes) goes uncompressed, as the same frame as for the subscribers
// without compression.
func TestShortMessagesGoUncompressed(t *testing.T) {
	h, _ := newHub(t, hub.Config{})
	var fts []*fakeTransport
	for i, kind := range []hub.Compression{hub.Uncompressed, hub.Deflate} {
		c, ft := connect(t, h)
		c.SetCompression(kind)
		c.HandleText(fmt.Appendf(nil, `{"id":%d,"op":"subscribe","channel":"r"}`, i+1))
		ft.waitFrames(t, 2)
		fts = append(fts, ft)
	}
	if _, err := h.Publish(context.Background(), "r", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for _, ft := range fts {
		ft.waitFrames(t, 3)
		ft.mu.Lock()
		frames = append(frames, ft.frames[2])
		ft.mu.Unlock()
	}
	if &frames[0][0] != &frames[1][0] || frames[1][0]&wsframe.RSV1 != 0 {
		t.Fatal("a short message was compressed")
	}
}
