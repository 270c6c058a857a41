package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment of a worker process. A Supervisor sets them; ThisWorker reads
// them.
const (
	// WorkerEnv makes a process a worker; its value is the worker's
	// number, from 1.
	WorkerEnv = "GOCOLYTICS_WORKER"
	// workerListenEnv is the address a worker binds with SO_REUSEPORT, or
	// "fd" when it serves the socket passed as listenerFD.
	workerListenEnv = "GOCOLYTICS_WORKER_LISTEN"
)

// The descriptors a worker inherits.
const (
	linkFD     = 3 // its end of the socketpair to the supervisor
	listenerFD = 4 // the inherited listening socket, under socket activation
)

// Backoff between restarts of a worker that keeps dying.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	// stableAfter is how long a worker must have run for its next death
	// to be restarted after MinBackoff again.
	stableAfter = 30 * time.Second
)

// SupervisorConfig is what a Supervisor needs.
type SupervisorConfig struct {
	// Workers is the number of worker processes.
	Workers int
	// Args are the command-line arguments a worker starts with: the
	// supervisor's own, so that it reads the same settings.
	Args []string
	// Listener, when set, is the socket every worker serves (one systemd
	// passed). When nil each worker binds Addr itself with SO_REUSEPORT.
	Listener *os.File
	// Addr is the address workers bind, with its port resolved.
	Addr string
	// Stderr receives the workers' logs.
	Stderr io.Writer
	// ServeLink serves one worker's link until it closes (link.Serve); it
	// calls ready once the worker has said hello.
	ServeLink func(conn net.Conn, ready func()) error
	// MinBackoff and MaxBackoff bound the wait before a dead worker is
	// restarted; zero means DefaultMinBackoff, DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// Supervisor starts the worker processes, restarts the ones that die, and
// stops them. Each worker re-executes this program's binary; the kernel
// kills it when the supervisor dies (PR_SET_PDEATHSIG), and it exits on
// its own when its link reads EOF.
type Supervisor struct {
	cfg    SupervisorConfig
	logger *slog.Logger
	exe    string

	mu       sync.Mutex
	procs    []*os.Process
	stopping bool

	ready    chan int
	died     chan error
	stop     chan struct{}
	slots    sync.WaitGroup
	links    sync.WaitGroup
	stopOnce sync.Once
}

// NewSupervisor returns a Supervisor. It starts nothing.
func NewSupervisor(cfg SupervisorConfig, logger *slog.Logger) *Supervisor {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	return &Supervisor{
		cfg:    cfg,
		logger: logger.With("component", "supervisor"),
		procs:  make([]*os.Process, cfg.Workers),
		ready:  make(chan int, cfg.Workers),
		died:   make(chan error, cfg.Workers),
		stop:   make(chan struct{}),
	}
}

// Start starts every worker and waits until each has bound its socket and
// said hello over its link. When one exits before that, or ctx ends first,
// Start stops the others and returns the error.
func (s *Supervisor) Start(ctx context.Context) error {
	exe, err := executable()
	if err != nil {
		return err
	}
	s.exe = exe
	for i := range s.cfg.Workers {
		s.slots.Add(1)
		go s.keep(i)
	}
	waiting := map[int]bool{}
	for i := range s.cfg.Workers {
		waiting[i] = true
	}
	for len(waiting) > 0 {
		select {
		case i := <-s.ready:
			delete(waiting, i)
		case err := <-s.died:
			s.kill()
			return err
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("start workers: %w", ctx.Err())
		}
	}
	return nil
}

// executable is the binary to re-execute: this program's, as
// os.Executable finds it. Should the file have been replaced by an upgrade
// of another protocol version, the new worker is refused at its hello and
// the supervisor keeps restarting it with backoff, logging why: restart
// the service after an upgrade.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the executable to start workers: %w", err)
	}
	return exe, nil
}

// keep runs worker slot i, and again each time it dies, until Shutdown.
func (s *Supervisor) keep(i int) {
	defer s.slots.Done()
	backoff, everReady := s.cfg.MinBackoff, false
	for {
		started, first := time.Now(), !everReady
		readied := make(chan struct{})
		cmd, err := s.spawn(i, func() {
			close(readied)
			if first {
				s.ready <- i
			}
		})
		if err == nil {
			err = cmd.Wait()
			if err == nil {
				err = errors.New("exited")
			}
		}
		select {
		case <-readied:
			everReady = true
		default:
		}
		s.mu.Lock()
		s.procs[i] = nil
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			return
		}
		if !everReady {
			// A worker that cannot even start (the port taken, a bad
			// certificate) will not do better the next time.
			s.died <- fmt.Errorf("worker %d did not start: %v", i+1, err)
			return
		}
		if time.Since(started) > stableAfter {
			backoff = s.cfg.MinBackoff
		}
		s.logger.Error("worker died; restarting it", "worker", i+1, "err", err, "after", backoff.String())
		select {
		case <-time.After(backoff):
		case <-s.stop:
			return
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// spawn starts worker slot i with a new link and serves the link.
func (s *Supervisor) spawn(i int, ready func()) (*exec.Cmd, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "link"), os.NewFile(uintptr(fds[1]), "link")
	defer mine.Close()
	cmd := exec.Command(s.exe, s.cfg.Args...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = s.workerEnv(i)
	cmd.ExtraFiles = []*os.File{theirs}
	if s.cfg.Listener != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, s.cfg.Listener)
	}
	cmd.Stderr = s.cfg.Stderr
	cmd.SysProcAttr = workerProcAttr()
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		theirs.Close()
		return nil, errors.New("stopping")
	}
	err = onSpawnThread(cmd.Start)
	if err == nil {
		s.procs[i] = cmd.Process
	}
	s.mu.Unlock()
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("start worker %d: %w", i+1, err)
	}
	conn, err := net.FileConn(mine)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("worker %d link: %w", i+1, err)
	}
	pid := cmd.Process.Pid
	s.links.Add(1)
	go func() {
		defer s.links.Done()
		err := s.cfg.ServeLink(conn, func() {
			s.logger.Info("worker started", "worker", i+1, "pid", pid)
			ready()
		})
		if err != nil {
			s.logger.Warn("worker link failed", "worker", i+1, "pid", pid, "err", err)
			// A worker that breaks the protocol is not to be trusted.
			cmd.Process.Kill()
		}
	}()
	return cmd, nil
}

// workerEnv is the supervisor's environment for worker slot i, without
// what belongs to the supervisor alone (systemd's sockets and notify
// socket, which only the main process may use).
func (s *Supervisor) workerEnv(i int) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "LISTEN_"), strings.HasPrefix(name, "WATCHDOG_"),
			name == "NOTIFY_SOCKET", strings.HasPrefix(name, WorkerEnv):
			continue
		}
		env = append(env, kv)
	}
	listen := s.cfg.Addr
	if s.cfg.Listener != nil {
		listen = "fd"
	}
	return append(env, fmt.Sprintf("%s=%d", WorkerEnv, i+1), workerListenEnv+"="+listen)
}

// Signal sends sig to every worker running (SIGHUP: reload).
func (s *Supervisor) Signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p != nil {
			p.Signal(sig)
		}
	}
}

// PIDs are the process ids of the workers running, by slot (0 when none).
func (s *Supervisor) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	pids := make([]int, len(s.procs))
	for i, p := range s.procs {
		if p != nil {
			pids[i] = p.Pid
		}
	}
	return pids
}

// Shutdown sends SIGTERM to every worker, which stops accepting and drains
// its requests (they still get their commit outcomes), and waits for the
// workers to exit and for their links to finish. When ctx ends first the
// remaining workers are killed, and their requests under way are never
// acknowledged. The writer may be closed once Shutdown returns.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopping = true
		s.mu.Unlock()
		close(s.stop)
	})
	s.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		s.slots.Wait()
		s.links.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("workers did not stop in time; killed: %w", ctx.Err())
	}
}

// kill stops every worker at once (a failed start).
func (s *Supervisor) kill() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
}

// spawnThread runs every fork of a worker on one OS thread that never
// exits: the kernel sends a child its parent-death signal when the thread
// that forked it exits, not the process, and Go may end idle threads.
var spawnThread struct {
	once sync.Once
	reqs chan func()
}

func onSpawnThread(f func() error) error {
	spawnThread.once.Do(func() {
		spawnThread.reqs = make(chan func())
		go func() {
			runtime.LockOSThread()
			for f := range spawnThread.reqs {
				f()
			}
		}()
	})
	done := make(chan error, 1)
	spawnThread.reqs <- func() { done <- f() }
	return <-done
}
