package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// raiseFDLimit raises this process's open-file limit to at least need (the
// server, started after, inherits it) or skips.
func raiseFDLimit(t *testing.T, need uint64) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < need {
		t.Skipf("the open-file limit is %d, the test needs %d (raise ulimit -n)", lim.Max, need)
	}
	if lim.Cur < need {
		lim.Cur = need
	}
	// Set even when high enough: a child process then inherits this limit
	// rather than the one this process started with.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot raise the open-file limit to %d: %v", need, err)
	}
	return lim.Cur
}

// procLimit reads one line of /proc/PID/limits, such as "Max open files".
func procLimit(pid int, name string) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name) {
			return strings.Join(strings.Fields(line[len(name):]), " ")
		}
	}
	return "?"
}

// The kinds of slow client.
const (
	slowIdle      = iota // connects and sends nothing
	slowHeader           // trickles a request header, a byte every 250 ms
	slowBody             // sends a header, then trickles the body
	slowKeepAlive        // sends one request, then keeps the connection idle
	slowKinds
)

// slowConn is one slow client's connection.
type slowConn struct {
	conn   net.Conn
	closed chan []byte // what the server sent before it closed the connection
}

func openSlow(t *testing.T, addr string, kind int, stop <-chan struct{}) (*slowConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	s := &slowConn{conn: c, closed: make(chan []byte, 1)}
	t.Cleanup(func() { c.Close() })
	go func() {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		b, _ := io.ReadAll(c)
		s.closed <- b
	}()
	var now, slow string
	switch kind {
	case slowHeader:
		slow = "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nX-Slow: " + strings.Repeat("a", 1000)
	case slowBody:
		body := gctest.NewEvent("never").JSON()
		now = "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		slow = body
	case slowKeepAlive:
		body := gctest.NewEvent(fmt.Sprintf("keepalive-%p", s)).JSON()
		now = "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	if now != "" {
		if _, err := io.WriteString(c, now); err != nil {
			return nil, err
		}
	}
	if slow != "" {
		go func() {
			for _, b := range []byte(slow) {
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
			}
		}()
	}
	return s, nil
}

// TestFault_SlowClients: 2,000 connections that stay idle, trickle a header
// or a body byte by byte (slowloris), or stay open after a request, do not
// keep a normal client from its 204, and the read and idle timeouts close
// every one of them.
func TestFault_SlowClients(t *testing.T) {
	gctest.NeedFault(t)
	const n = 2000
	fdLimit := raiseFDLimit(t, 2*n+1000)
	p := gctest.Start(t, "", "--read-timeout", "4s", "--idle-timeout", "4s", "--max-conns-per-ip", "4096")
	pid := p.PID()
	t.Logf("open-file limit: test %d, server %s", fdLimit, procLimit(pid, "Max open files"))

	stop := make(chan struct{})
	defer close(stop)
	slow := make([]*slowConn, n)
	for i := range slow {
		var err error
		if slow[i], err = openSlow(t, p.Addr, i%slowKinds, stop); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if code, body := gctest.Post(t, client, p.URL("/v1.0/event"), gctest.NewEvent("among-slow-clients").JSON()); code != 204 {
		t.Fatalf("a normal client among %d slow ones: got %d %s, want 204", n, code, body)
	}
	fds := openFDs(pid)
	if fds < n {
		t.Errorf("the server holds %d descriptors: the slow connections were not all open during the request", fds)
	}

	// The timeouts close them all: the read timeout those that never sent
	// a whole request (with a 408), the idle timeout the kept-alive ones
	// (after their 204).
	var got [slowKinds]map[string]int
	for k := range got {
		got[k] = map[string]int{}
	}
	for i, s := range slow {
		select {
		case b := <-s.closed:
			status, _, _ := strings.Cut(string(b), "\r\n")
			got[i%slowKinds][status]++
		case <-time.After(30 * time.Second):
			got[i%slowKinds]["still open"]++
		}
	}
	want := []string{slowIdle: "HTTP/1.1 408 Request Timeout", slowHeader: "HTTP/1.1 408 Request Timeout", slowBody: "HTTP/1.1 408 Request Timeout", slowKeepAlive: "HTTP/1.1 204 No Content"}
	for k, w := range want {
		if got[k][w] != n/slowKinds || len(got[k]) != 1 {
			t.Errorf("slow clients of kind %d: got %v, want all %d closed after %q", k, got[k], n/slowKinds, w)
		}
	}
	// A new connection: the server has closed the client's idle one too.
	client.CloseIdleConnections()
	if code, body := gctest.Post(t, client, p.URL("/v1.0/event"), gctest.NewEvent("after-slow-clients").JSON()); code != 204 {
		t.Fatalf("after the slow clients: got %d %s, want 204", code, body)
	}
	_, stored := gctest.Check(t, p.DBPath)
	if !stored["among-slow-clients"] || !stored["after-slow-clients"] || len(stored) != 2+n/slowKinds {
		t.Errorf("stored %d events, want the %d acknowledged", len(stored), 2+n/slowKinds)
	}
	t.Logf("slow clients: %d (idle, header trickle, body trickle, kept alive); server held %d descriptors; all closed by the timeouts; server VmHWM %d KiB",
		n, fds, procStatusKiB(pid, "VmHWM"))
}

// TestFault_ConnCap: one address cannot hold more than MAX_CONNS_PER_IP
// connections; those over the cap are refused at once, and a client from
// another address is served.
func TestFault_ConnCap(t *testing.T) {
	gctest.NeedFault(t)
	const limit, n = 100, 150
	raiseFDLimit(t, 1000)
	p := gctest.Start(t, "", "--max-conns-per-ip", "100", "--read-timeout", "30s")
	stop := make(chan struct{})
	defer close(stop)
	slow := make([]*slowConn, n)
	for i := range slow {
		var err error
		if slow[i], err = openSlow(t, p.Addr, slowIdle, stop); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	refused := 0
	refuse := func(b []byte) {
		if !bytes.HasPrefix(b, []byte("HTTP/1.1 429")) {
			t.Errorf("a refused connection got %q, want a 429", b)
		}
		refused++
	}
	wait := time.After(2 * time.Second)
	for _, s := range slow {
		select {
		case b := <-s.closed:
			refuse(b)
			continue
		case <-wait:
		}
		break
	}
	for _, s := range slow {
		select {
		case b := <-s.closed:
			refuse(b)
		default:
		}
	}
	if refused != n-limit {
		t.Errorf("%d of %d connections refused, want %d", refused, n, n-limit)
	}
	// Another address of the loopback network is not affected.
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	if c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).Dial("tcp", p.Addr); err != nil {
		t.Skipf("cannot connect from 127.0.0.2: %v", err)
	} else {
		c.Close()
	}
	if code, body := gctest.Post(t, client, p.URL("/v1.0/event"), gctest.NewEvent("other-address").JSON()); code != 204 {
		t.Errorf("from 127.0.0.2: got %d %s, want 204", code, body)
	}
}
