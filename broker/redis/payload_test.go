package redis

import (
	"testing"

	"github.com/switchboard-rt/switchboard/broker"
)

func TestPayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
		want    broker.Message
		wantErr bool
	}{
		{name: "Plain", payload: `{"a":1}`, want: broker.Message{Channel: "c", Data: []byte(`{"a":1}`)}},
		{name: "Empty", payload: ``, want: broker.Message{Channel: "c", Data: []byte{}}},
		{name: "Position", payload: "\x0142,k3x9ab,{\"a\":1}", want: broker.Message{Channel: "c", Data: []byte(`{"a":1}`), Pos: broker.Position{Epoch: "k3x9ab", Offset: 42}}},
		{name: "DataWithCommas", payload: "\x011,e,[1,2,3]", want: broker.Message{Channel: "c", Data: []byte(`[1,2,3]`), Pos: broker.Position{Epoch: "e", Offset: 1}}},
		{name: "EscapedMark", payload: string(encode([]byte("\x01x"), false, "")), want: broker.Message{Channel: "c", Data: []byte("\x01x")}},
		{name: "EscapedBinaryMark", payload: string(encode([]byte("\x02x"), false, "")), want: broker.Message{Channel: "c", Data: []byte("\x02x")}},
		{name: "Binary", payload: string(encode([]byte("\x00\xff,\x01"), true, "")), want: broker.Message{Channel: "c", Data: []byte("\x00\xff,\x01"), Binary: true}},
		{name: "BinaryEmpty", payload: "\x020,,", want: broker.Message{Channel: "c", Data: []byte{}, Binary: true}},
		{name: "BinaryPosition", payload: "\x027,k3x9ab,\x00\x01", want: broker.Message{Channel: "c", Data: []byte("\x00\x01"), Binary: true, Pos: broker.Position{Epoch: "k3x9ab", Offset: 7}}},
		{name: "BinaryNoEpoch", payload: "\x027", wantErr: true},
		{name: "EscapedSkipMark", payload: string(encode([]byte("\x03x"), false, "")), want: broker.Message{Channel: "c", Data: []byte("\x03x")}},
		{name: "Skip", payload: string(encode([]byte(`{"a":1}`), false, "12.34")), want: broker.Message{Channel: "c", Data: []byte(`{"a":1}`), Skip: "12.34"}},
		{name: "SkipPosition", payload: "\x03n-1,\x019,e,1", want: broker.Message{Channel: "c", Data: []byte(`1`), Skip: "n-1", Pos: broker.Position{Epoch: "e", Offset: 9}}},
		{name: "SkipBinary", payload: string(encode([]byte{0, 1}, true, "s")), want: broker.Message{Channel: "c", Data: []byte{0, 1}, Binary: true, Skip: "s"}},
		{name: "SkipNoEnd", payload: "\x03abc", wantErr: true},
		{name: "NoOffset", payload: "\x01", wantErr: true},
		{name: "BadOffset", payload: "\x01x,e,1", wantErr: true},
		{name: "NoEpoch", payload: "\x011", wantErr: true},
		{name: "NoData", payload: "\x011,e", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := decode("c", tc.payload)
			if (err != nil) != tc.wantErr {
				t.Fatalf("decode(%q): error %v, want error %v", tc.payload, err, tc.wantErr)
			}
			if err == nil && (got.Channel != tc.want.Channel || string(got.Data) != string(tc.want.Data) || got.Binary != tc.want.Binary || got.Pos != tc.want.Pos || got.Skip != tc.want.Skip) {
				t.Errorf("decode(%q) = %+v, want %+v", tc.payload, got, tc.want)
			}
		})
	}
}

// FuzzPayload round-trips data through the pub/sub payload, as JSON and as
// binary, with and without a client to skip, and checks that JSON data (which never starts with a mark) is
// its own payload, byte for byte, as before binary data existed.
func FuzzPayload(f *testing.F) {
	f.Add([]byte(`{"a":1}`), false)
	f.Add([]byte("\x01x"), false)
	f.Add([]byte("\x02x"), false)
	f.Add([]byte{}, false)
	f.Add([]byte{0, 0xff, ',', 1, 2}, true)
	f.Add([]byte{}, true)
	f.Add([]byte("\x03x"), false)
	f.Fuzz(func(t *testing.T, data []byte, binary bool) {
		for _, skip := range []string{"", "123.456"} {
			payload := encode(data, binary, skip)
			m, err := decode("c", string(payload))
			if err != nil || string(m.Data) != string(data) || m.Binary != binary || !m.Pos.IsZero() || m.Skip != skip {
				t.Fatalf("round trip of %q (binary %v, skip %q): %+v, %v", data, binary, skip, m, err)
			}
		}
		payload := encode(data, binary, "")
		if !binary && len(data) > 0 && data[0] != posMark && data[0] != binMark && data[0] != skipMark && string(payload) != string(data) {
			t.Fatalf("JSON-like data %q encoded as %q, not as itself", data, payload)
		}
	})
}

func TestParseID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id      string
		want    uint64
		wantErr bool
	}{
		{"1-0", 1, false},
		{"18446744073709551615-0", 1<<64 - 1, false},
		{"12", 0, true},
		{"x-0", 0, true},
	}
	for _, tc := range tests {
		got, err := parseID(tc.id)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("parseID(%q) = %d, %v; want %d, error %v", tc.id, got, err, tc.want, tc.wantErr)
		}
	}
}
