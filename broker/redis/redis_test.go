package redis

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/testlog"
)

func TestMain(m *testing.M) {
	// rueidis's cluster client closes the connections a topology refresh
	// retired 5 seconds later, and starts a lazy refresh after a random
	// delay of up to about a second (DelayDo), each on a goroutine of its
	// own that Close does not wait for; both end by themselves.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"))
}

// newBroker returns a broker of srv, not started, closed when t ends.
func newBroker(t *testing.T, srv *redistest.Server, cfg Config) *Broker {
	t.Helper()
	cfg.URL = srv.URL()
	return newBrokerAt(t, cfg)
}

// newBrokerAt returns a broker of cfg.URL, not started, closed when t
// ends; its logs go to t's.
func newBrokerAt(t *testing.T, cfg Config) *Broker {
	t.Helper()
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
	srv := redistest.Start(t, nil)
	brokertest.Run(t, brokertest.Factory{
		New: func(t *testing.T) broker.Broker {
			return newBroker(t, srv, Config{})
		},
		Shared:   true,
		History:  true,
		Presence: true,
	})
}
