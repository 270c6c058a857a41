package gctest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// MemoryCgroup is a memory cgroup made for a test below the test process's
// own (so it only narrows what the test may use), with a hard limit: cgroup
// v1's memory controller (memory.limit_in_bytes) or cgroup v2's
// (memory.max). It is removed when the test ends, once its processes are
// gone.
type MemoryCgroup struct {
	Dir string
	v2  bool
}

var cgroupSeq atomic.Int64

// NewMemoryCgroup makes a memory cgroup limited to limit bytes, or skips
// the test when this machine has no memory controller the test may use.
func NewMemoryCgroup(tb testing.TB, limit int64) *MemoryCgroup {
	tb.Helper()
	c, err := TryMemoryCgroup(tb, limit)
	if err != nil {
		tb.Skipf("no memory cgroup here: %v", err)
	}
	return c
}

// TryMemoryCgroup is NewMemoryCgroup that returns why it could not make one
// instead of skipping.
func TryMemoryCgroup(tb testing.TB, limit int64) (*MemoryCgroup, error) {
	tb.Helper()
	v1, v2, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("gctest-%d-%d", os.Getpid(), cgroupSeq.Add(1))
	c := &MemoryCgroup{}
	limitFile := "memory.limit_in_bytes"
	switch {
	case v1 != "":
		c.Dir = filepath.Join("/sys/fs/cgroup/memory", v1, name)
	case v2 != "":
		// The parent must hand the memory controller down; it can only
		// if it holds no process itself, so this usually works only
		// where the test runs in a delegated subtree.
		parent := filepath.Join("/sys/fs/cgroup", v2)
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			return nil, fmt.Errorf("cgroup v2: enable memory below %s: %w", parent, err)
		}
		c.Dir, c.v2, limitFile = filepath.Join(parent, name), true, "memory.max"
	default:
		return nil, errors.New("neither cgroup v1's memory controller nor cgroup v2's is mounted for this process")
	}
	if err := os.Mkdir(c.Dir, 0o755); err != nil {
		return nil, err
	}
	tb.Cleanup(func() {
		for deadline := time.Now().Add(10 * time.Second); os.Remove(c.Dir) != nil && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err := os.WriteFile(filepath.Join(c.Dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		return nil, fmt.Errorf("set %s: %w", limitFile, err)
	}
	if got := c.read(limitFile); got != limit {
		return nil, fmt.Errorf("%s reads %d after writing %d", limitFile, got, limit)
	}
	if !c.v2 {
		// The memory a process already uses moves with it.
		os.WriteFile(filepath.Join(c.Dir, "memory.move_charge_at_immigrate"), []byte("1"), 0)
	}
	return c, nil
}

// ownCgroups returns this process's cgroup v1 memory path and cgroup v2
// path ("" where there is none with a memory controller).
func ownCgroups() (v1, v2 string, err error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[1] == "" && parts[0] == "0":
			if ctl, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(ctl), "memory") {
				v2 = parts[2]
			}
		case strings.Contains(","+parts[1]+",", ",memory,"):
			if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
				v1 = parts[2]
			}
		}
	}
	return v1, v2, sc.Err()
}

// Add moves process pid into the cgroup.
func (c *MemoryCgroup) Add(tb testing.TB, pid int) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(c.Dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		tb.Fatalf("move process %d into %s: %v", pid, c.Dir, err)
	}
}

// Command is exec.Command for a program that starts inside the cgroup.
func (c *MemoryCgroup) Command(name string, args ...string) *exec.Cmd {
	script := `echo $$ > "` + filepath.Join(c.Dir, "cgroup.procs") + `" && exec "$0" "$@"`
	return exec.Command("sh", append([]string{"-c", script, name}, args...)...)
}

// Peak is the most memory the cgroup's processes used at once, in bytes
// (-1 where the kernel does not say).
func (c *MemoryCgroup) Peak() int64 {
	if c.v2 {
		return c.read("memory.peak")
	}
	return c.read("memory.max_usage_in_bytes")
}

// OOMKills is the number of processes the kernel killed for the cgroup's
// limit.
func (c *MemoryCgroup) OOMKills() int64 {
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	b, _ := os.ReadFile(filepath.Join(c.Dir, file))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func (c *MemoryCgroup) read(file string) int64 {
	b, err := os.ReadFile(filepath.Join(c.Dir, file))
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}
