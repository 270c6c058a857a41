package ingest

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocolytics/gocolytics/ingest/ratelimit"
)

// connCap caps the open connections per client prefix: an IPv4 address, or
// an IPv6 /64, since one host is usually given a whole /64 and could open
// the cap from each of its 2^64 addresses. It replaces fasthttp's
// MaxConnsPerIP, which counts single addresses. Connections over the cap
// are closed as soon as they are accepted. Connections that are not TCP (a
// Unix socket from systemd) are not counted.
type connCap struct {
	max  int
	mu   sync.Mutex
	open map[netip.Prefix]int
}

func newConnCap(max int) *connCap {
	return &connCap{max: max, open: make(map[netip.Prefix]int)}
}

// listener wraps ln so that its connections are counted.
func (c *connCap) listener(ln net.Listener) net.Listener {
	return &capListener{Listener: ln, cap: c}
}

// admit counts a new connection from key; false when the cap is reached.
func (c *connCap) admit(key netip.Prefix) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] >= c.max {
		return false
	}
	c.open[key]++
	return true
}

func (c *connCap) done(key netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] <= 1 {
		delete(c.open, key)
		return
	}
	c.open[key]--
}

var tooManyConns = func() []byte {
	body := `{"detail":"Too many open connections from your network"}`
	return []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

type capListener struct {
	net.Listener
	cap *connCap
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tcp, ok := conn.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return conn, nil
		}
		key := ratelimit.ClientPrefix(tcp.AddrPort().Addr())
		if !l.cap.admit(key) {
			// As fasthttp's MaxConnsPerIP did: a 429, then close. A
			// fresh connection's send buffer takes it at once; the
			// deadline is for a peer that never reads.
			conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			conn.Write(tooManyConns)
			conn.Close()
			continue
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			// fasthttp turns TCP keep-alive on only for a bare
			// *net.TCPConn, which it no longer sees.
			tc.SetKeepAlive(true)
		}
		return &cappedConn{Conn: conn, cap: l.cap, key: key}, nil
	}
}

// cappedConn gives its place back when closed (once).
type cappedConn struct {
	net.Conn
	cap  *connCap
	key  netip.Prefix
	once sync.Once
	// linger says the client may still be sending a refused body: Close
	// lingers (lingerClose).
	linger atomic.Bool
}

func (c *cappedConn) Close() error {
	if c.linger.Swap(false) {
		lingerClose(c.Conn)
	}
	err := c.Conn.Close()
	c.once.Do(func() { c.cap.done(c.key) })
	return err
}

// lingerOnClose has conn, if it is one of the server's TCP connections,
// close gently (lingerClose) once it is closed.
func lingerOnClose(conn net.Conn) {
	if c, ok := conn.(*cappedConn); ok {
		c.linger.Store(true)
	}
}

// How long and how much a connection closed on a refused body is read
// before it is closed for good.
const (
	lingerTime  = time.Second
	lingerBytes = 256 << 10
)

// lingerClose ends the sending side of conn (after the answer, already
// written), then reads and drops what the client still sends until it
// closes its side, for at most lingerTime and lingerBytes. Closing at once
// with unread bytes would send a reset that may reach the client before it
// has read the answer, and some systems then drop the answer; reading the
// whole body would cost what the refusal saves. Past the bounds, Close
// resets the connection.
func lingerClose(conn net.Conn) {
	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	conn.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, conn, lingerBytes)
}
