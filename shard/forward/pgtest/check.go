package pgtest

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
)

// NodeRows returns, for one node, how many times each src_id is in the
// event table (exactly-once means every acknowledged id once).
func NodeRows(t testing.TB, c *pgx.Conn, nodeID string) map[int64]int {
	t.Helper()
	rows, err := c.Query(context.Background(), "SELECT src_id, count(*) FROM event WHERE node_id = $1 GROUP BY src_id", nodeID)
	if err != nil {
		t.Fatalf("read event rows of %s: %v", nodeID, err)
	}
	out := map[int64]int{}
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Proxy is a TCP proxy on 127.0.0.1 in front of a server, whose
// connections a test can cut at any moment, as a network would.
type Proxy struct {
	ln       net.Listener
	target   string
	mu       sync.Mutex
	conns    []net.Conn
	upBytes  atomic.Int64
	cutAfter atomic.Int64 // cut every connection once this many bytes went up; 0 = never
	refuse   atomic.Bool  // close every new connection at once (the server is "down")
	Cuts     atomic.Int64
}

// NewProxy starts a proxy to target; it stops when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.CutAll() })
	go p.accept()
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// CutAfter makes the proxy cut all its connections once n more bytes have
// gone from clients to the server (mid-COPY, for a forwarder); 0 turns it
// off.
func (p *Proxy) CutAfter(n int64) {
	if n == 0 {
		p.cutAfter.Store(0)
		return
	}
	p.cutAfter.Store(p.upBytes.Load() + n)
}

// CutAll closes every connection through the proxy.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.Cuts.Add(1)
}

// Refuse, while on, closes every connection as soon as it is accepted,
// as if the server were down; turning it on cuts those open as well.
func (p *Proxy) Refuse(on bool) {
	p.refuse.Store(on)
	if on {
		p.CutAll()
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(s, c, true)
		go p.pipe(c, s, false)
	}
}

func (p *Proxy) pipe(dst, src net.Conn, up bool) {
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if up {
				total := p.upBytes.Add(int64(n))
				if at := p.cutAfter.Load(); at > 0 && total >= at {
					p.cutAfter.Store(0)
					p.CutAll()
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
}
