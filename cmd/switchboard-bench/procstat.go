//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the user+system CPU time pid has used
// (/proc/<pid>/stat utime and stime; 10 ms resolution).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields restart after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := bytes.Fields(b[i+1:])
	// After ')': state is field 3, utime 14, stime 15 (1-based in proc(5)).
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procRSS returns pid's resident set size in bytes (/proc/<pid>/status
// VmRSS).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(string(f[0]), 10, 64)
				if err != nil {
					return 0, err
				}
				return kb * 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// selfCPU returns this process's user+system CPU time (getrusage).
func selfCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// raiseFDLimit raises RLIMIT_NOFILE's soft limit to the hard limit and
// returns the new soft limit.
func raiseFDLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
		_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}

// procSyscalls returns how many read-family and write-family system calls
// pid has made (/proc/<pid>/io syscr and syscw: read, readv, write,
// writev and their kin on files and sockets, not epoll or futex calls).
// Reading another process's io file needs the same user or root.
func procSyscalls(pid int) (r, w uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return 0, 0, err
	}
	found := 0
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		n, perr := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		switch string(k) {
		case "syscr":
			r, err, found = n, perr, found+1
		case "syscw":
			w, err, found = n, perr, found+1
		}
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/io: %w", pid, err)
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("/proc/%d/io: no syscr/syscw", pid)
	}
	return r, w, nil
}

// cpuMeter measures the CPU time used by this process and by the server
// processes over an interval, with the servers' system calls and, from
// their /metrics, their writes and the frames those carried.
type cpuMeter struct {
	pids    []int
	metrics []string // the servers' /metrics URLs
	start   time.Time
	self    time.Duration
	srv     []time.Duration
	io      ioCount
	writes  writeCount
}

// ioCount is the servers' read and write system calls, summed.
type ioCount struct {
	r, w uint64
	ok   bool
}

func readIO(pids []int) ioCount {
	c := ioCount{ok: len(pids) > 0}
	for _, p := range pids {
		r, w, err := procSyscalls(p)
		if err != nil {
			return ioCount{}
		}
		c.r += r
		c.w += w
	}
	return c
}

func startCPU(pids []int, urls []string) *cpuMeter {
	m := &cpuMeter{pids: pids, metrics: metricsURLs(urls), start: time.Now(), self: selfCPU(), srv: make([]time.Duration, len(pids))}
	for i, p := range pids {
		m.srv[i], _ = procCPU(p)
	}
	m.io = readIO(pids)
	m.writes = scrapeWrites(m.metrics)
	return m
}

// cpuUse is the CPU used over an interval.
type cpuUse struct {
	Wall      time.Duration
	Bench     time.Duration
	Server    time.Duration   // sum over the server pids
	PerServer []time.Duration // by pid, in --server-pid order
	// The servers' read and write system calls, when /proc told them.
	SysRead, SysWrite uint64
	SysOK             bool
	// The servers' writes to connections and the frames they carried,
	// when every server's /metrics told them (switchboard only).
	Writes, Frames uint64
	WritesOK       bool
}

func (m *cpuMeter) stop() cpuUse {
	u := cpuUse{Wall: time.Since(m.start), Bench: selfCPU() - m.self}
	for i, p := range m.pids {
		d, err := procCPU(p)
		if err != nil {
			d = m.srv[i]
		}
		u.PerServer = append(u.PerServer, d-m.srv[i])
		u.Server += d - m.srv[i]
	}
	if io := readIO(m.pids); io.ok && m.io.ok {
		u.SysRead, u.SysWrite, u.SysOK = io.r-m.io.r, io.w-m.io.w, true
	}
	if wc := scrapeWrites(m.metrics); wc.ok && m.writes.ok {
		u.Writes, u.Frames, u.WritesOK = wc.writes-m.writes.writes, wc.frames-m.writes.frames, true
	}
	return u
}
