// Package jsclient embeds switchboard.js, the dependency-free JavaScript
// client of the native dialect, so that a switchboard node can serve it at
// /switchboard.js (package web does) without any file on disk.
//
// The file is a UMD script: in a browser it defines window.Switchboard, in
// Node it is a CommonJS module. Its API is described in README.md beside it.
package jsclient

import _ "embed"

// Source is the content of switchboard.js. It is read-only: callers must not
// modify it.
//
//go:embed switchboard.js
var Source []byte
