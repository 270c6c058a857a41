package workers

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// workerProcAttr makes the kernel kill a worker the moment the thread that
// started it exits, which onSpawnThread makes the moment the supervisor
// dies: no worker keeps serving the port as an orphan. (os/exec also kills
// a child whose parent died before the setting took effect.) A worker gets
// a process group of its own, so that a Ctrl-C in a terminal reaches the
// supervisor alone, which stops the workers in order.
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// reusePort sets SO_REUSEPORT on a socket before it is bound.
func reusePort(network, address string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}

// ReservePort binds host:port with SO_REUSEPORT and does not listen: the
// port is the server's for as long as the returned file is open (a port 0
// is resolved), and worker processes bind it too, each with its own
// listening socket among which the kernel spreads connections. A socket
// that does not listen receives none. It returns the address workers are
// to bind. The address family follows net.Listen's choice for the same
// host: a wildcard host is IPv6 and IPv4 both.
//
// The port is first bound without SO_REUSEPORT, so that a port in use by
// anyone, another gocolytics with workers included, is refused as a single
// process would refuse it, rather than silently shared.
func ReservePort(host string, port int) (*os.File, string, error) {
	ta, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, "", err
	}
	wildcard := ta.IP == nil || ta.IP.IsUnspecified()
	family, sa := syscall.AF_INET6, syscall.Sockaddr(nil)
	switch ip4 := ta.IP.To4(); {
	case wildcard:
		sa = &syscall.SockaddrInet6{Port: ta.Port}
	case ip4 != nil:
		family = syscall.AF_INET
		a := &syscall.SockaddrInet4{Port: ta.Port}
		copy(a.Addr[:], ip4)
		sa = a
	default:
		a := &syscall.SockaddrInet6{Port: ta.Port}
		copy(a.Addr[:], ta.IP.To16())
		sa = a
	}
	probe, port, err := bindOnly(family, sa, wildcard, false)
	if err != nil {
		return nil, "", fmt.Errorf("bind %s: %w", ta, err)
	}
	probe.Close()
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		a.Port = port
	case *syscall.SockaddrInet6:
		a.Port = port
	}
	f, port, err := bindOnly(family, sa, wildcard, true)
	if err != nil {
		return nil, "", fmt.Errorf("bind %s: %w", ta, err)
	}
	if wildcard {
		return f, net.JoinHostPort(host, strconv.Itoa(port)), nil
	}
	return f, net.JoinHostPort(ta.IP.String(), strconv.Itoa(port)), nil
}

// bindOnly binds a TCP socket to sa, with SO_REUSEADDR as net.Listen sets
// it and SO_REUSEPORT when asked, and returns it with its bound port.
func bindOnly(family int, sa syscall.Sockaddr, dualStack, reuse bool) (*os.File, int, error) {
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "reserved port")
	opts := [][2]int{{syscall.SOL_SOCKET, syscall.SO_REUSEADDR}}
	if reuse {
		opts = append(opts, [2]int{syscall.SOL_SOCKET, unix.SO_REUSEPORT})
	}
	for _, o := range opts {
		if err := syscall.SetsockoptInt(fd, o[0], o[1], 1); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("setsockopt: %w", err)
		}
	}
	if family == syscall.AF_INET6 {
		v6only := 1
		if dualStack {
			v6only = 0
		}
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, v6only); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("setsockopt: %w", err)
		}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		f.Close()
		return nil, 0, err
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("getsockname: %w", err)
	}
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		return f, a.Port, nil
	case *syscall.SockaddrInet6:
		return f, a.Port, nil
	}
	f.Close()
	return nil, 0, fmt.Errorf("getsockname: unexpected %T", got)
}
