//go:build !linux

package natstest

import "syscall"

// procAttr sets nothing: only Linux can tie a child's life to its parent's.
func procAttr() *syscall.SysProcAttr { return nil }
