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
		{name: "EscapedMark", payload: string(encodePlain([]byte("\x01x"))), want: broker.Message{Channel: "c", Data: []byte("\x01x")}},
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
			if err == nil && (got.Channel != tc.want.Channel || string(got.Data) != string(tc.want.Data) || got.Pos != tc.want.Pos) {
				t.Errorf("decode(%q) = %+v, want %+v", tc.payload, got, tc.want)
			}
		})
	}
}

func FuzzPayload(f *testing.F) {
	f.Add([]byte(`{"a":1}`))
	f.Add([]byte("\x01x"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decode("c", string(encodePlain(data)))
		if err != nil || string(m.Data) != string(data) || !m.Pos.IsZero() {
			t.Fatalf("round trip of %q: %+v, %v", data, m, err)
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
