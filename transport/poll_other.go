//go:build !linux

package transport

import (
	"context"
	"errors"
	"time"
)

// poller is Linux only; elsewhere every session reads on a goroutine of
// its own and never parks.
type poller struct{}

func newPoller(time.Duration) *poller { return nil }

func (p *poller) arm(*session) error { return errors.ErrUnsupported }

func (p *poller) remove(*session) {}

func (p *poller) waitLoops(context.Context) error { return nil }

func (p *poller) parked() int { return 0 }
