package main

import (
	"errors"
	"log/slog"

	"github.com/switchboard-rt/switchboard/broker"
)

func newRedisBroker(url string, log *slog.Logger) (broker.Broker, error) {
	return nil, errors.New("redis broker: not built yet")
}
