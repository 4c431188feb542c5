package nats

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/natstest"
	"github.com/switchboard-rt/switchboard/internal/testlog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newBroker returns a broker of srv, not started, closed when t ends.
func newBroker(t *testing.T, srv *natstest.Server, cfg Config) *Broker {
	t.Helper()
	cfg.URL = srv.URL()
	if cfg.Logger == nil {
		cfg.Logger = testlog.New(t)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func TestConformance(t *testing.T) {
	srv := natstest.Start(t, nil)
	brokertest.Run(t, brokertest.Factory{
		New: func(t *testing.T) broker.Broker {
			return newBroker(t, srv, Config{})
		},
		Shared:   true,
		History:  true,
		Presence: true,
	})
}
