package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// fileConfig is the YAML configuration file (--config): per-namespace
// options. The namespace named "default" holds the options of channels
// without a namespace and of namespaces not listed.
//
//	namespaces:
//	  default: {history_size: 100, history_ttl: 10m}
//	  chat:    {history_size: 500, history_ttl: 1h}
//	  news:    {history_size: 50, read_only: true}
//	  rooms:   {presence: true, join_leave: true}
type fileConfig struct {
	Namespaces map[string]namespaceConfig `yaml:"namespaces"`
}

type namespaceConfig struct {
	HistorySize int           `yaml:"history_size"`
	HistoryTTL  time.Duration `yaml:"history_ttl"`
	ReadOnly    bool          `yaml:"read_only"`
	Presence    bool          `yaml:"presence"`
	JoinLeave   bool          `yaml:"join_leave"`
}

func (n namespaceConfig) options() hub.NamespaceOptions {
	return hub.NamespaceOptions{HistorySize: n.HistorySize, HistoryTTL: n.HistoryTTL, ReadOnly: n.ReadOnly,
		Presence: n.Presence, JoinLeave: n.JoinLeave}
}

// namespaces returns the default namespace's options and the others', from
// the file (if any) and then the flags, which win for the default
// namespace.
func (o *options) namespaces() (hub.NamespaceOptions, map[string]hub.NamespaceOptions, error) {
	var def hub.NamespaceOptions
	named := map[string]hub.NamespaceOptions{}
	if o.configFile != "" {
		b, err := os.ReadFile(o.configFile)
		if err != nil {
			return def, nil, fmt.Errorf("--config: %w", err)
		}
		var fc fileConfig
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
			return def, nil, fmt.Errorf("--config %s: %w", o.configFile, err)
		}
		for name, nc := range fc.Namespaces {
			if nc.HistorySize < 0 || nc.HistoryTTL < 0 {
				return def, nil, fmt.Errorf("--config %s: namespace %q: history_size and history_ttl must not be negative", o.configFile, name)
			}
			if name == "default" {
				def = nc.options()
				continue
			}
			if protocol.ValidateChannel(name) != nil || protocol.Namespace(name+":x") != name {
				return def, nil, fmt.Errorf("--config %s: %q is not a valid namespace name", o.configFile, name)
			}
			named[name] = nc.options()
		}
	}
	if o.given["history-size"] || o.configFile == "" {
		def.HistorySize = o.historySize
	}
	if o.given["history-ttl"] || o.configFile == "" {
		def.HistoryTTL = o.historyTTL
	}
	if o.given["presence"] || o.configFile == "" {
		def.Presence = o.presence
	}
	if o.given["join-leave"] || o.configFile == "" {
		def.JoinLeave = o.joinLeave
	}
	if def.HistorySize < 0 || def.HistoryTTL < 0 {
		return def, nil, errors.New("--history-size and --history-ttl must not be negative")
	}
	return def, named, nil
}
