//go:build !linux

// switchboard-bench reads its subscribers from epoll sets: it runs on Linux
// only. Elsewhere it says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "switchboard-bench runs on Linux only (its readers use epoll)")
	os.Exit(2)
}
