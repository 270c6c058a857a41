package main

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/shard"
)

// floodDialer dials from the loopback address 127.0.0.(2+i%4), so that a
// flood comes from several addresses, as the attacker did.
func floodDialer(i int) *net.Dialer {
	ip := net.IPv4(127, 0, 0, byte(2+i%4))
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
}

// normalClient posts one event marked marker from 127.0.0.1 and returns the
// status (0: no answer within limit).
func normalClient(t *testing.T, s *gctest.Server, marker string, limit time.Duration) int {
	t.Helper()
	// A transport of its own: a connection dialled for a request that
	// timed out must not be reused by the next one.
	c := &http.Client{Timeout: limit, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	start := time.Now()
	resp, err := c.Post(s.URL("/v1.0/event"), "application/json", strings.NewReader(gctest.NewEvent(marker).JSON()))
	if err != nil {
		t.Logf("normal client %s: %v after %v", marker, err, time.Since(start).Round(time.Millisecond))
		return 0
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	t.Logf("normal client %s: %d in %v", marker, resp.StatusCode, time.Since(start).Round(time.Millisecond))
	return resp.StatusCode
}

// TestFault_HeadersOnlyFlood: 200 connections from four loopback addresses
// each announce an 8 MiB body and send one byte of it. The server holds a
// few KiB for each, not the announced size: its peak RSS stays under
// 100 MB and a normal client's event is stored within a second.
func TestFault_HeadersOnlyFlood(t *testing.T) {
	gctest.NeedFault(t)
	needLoopbackClients(t)
	cg := floodCgroup(t)
	s := gctest.Start(t, "")
	cg.add(t, s)
	const conns = 200
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for i := range conns {
		c, err := floodDialer(i).Dial("tcp", s.Addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		held = append(held, c)
		fmt.Fprintf(c, "POST /v1.0/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n[", 8<<20-1)
	}
	if code := normalClient(t, s, "during-headers-flood", time.Second); code != 204 {
		t.Errorf("normal client during the flood: got %d, want 204 within 1 s", code)
	}
	hwm := procStatusKiB(s.PID(), "VmHWM")
	t.Logf("headers-only flood, %d connections announcing 8 MiB: server VmHWM %d KiB", conns, hwm)
	if hwm > 100_000 {
		t.Errorf("server VmHWM %d KiB, want at most 100 MB", hwm)
	}
	if !gctest.Stored(t, s.DBPath)["during-headers-flood"] {
		t.Error("the normal client's event is not stored")
	}
	cg.check(t)
}

// memoryMax is the shipped unit's MemoryMax=.
const memoryMax = 256 << 20

// floodCgroup is a memory cgroup of the unit's MemoryMax= (256 MiB) for
// the server of a flood test, so that the flood runs under a limit the
// kernel enforces (gctest's TestMemoryCgroup_Enforced shows it is); nil
// where this machine has none, and the flood runs without.
func floodCgroup(t *testing.T) *floodLimit {
	cg, err := gctest.TryMemoryCgroup(t, memoryMax)
	if err != nil {
		t.Logf("the flood runs without a memory cgroup: %v", err)
		return nil
	}
	return &floodLimit{cg}
}

type floodLimit struct{ cg *gctest.MemoryCgroup }

func (l *floodLimit) add(t *testing.T, s *gctest.Server) {
	if l != nil {
		l.cg.Add(t, s.PID())
	}
}

// check fails the test if the kernel killed a process of the cgroup.
func (l *floodLimit) check(t *testing.T) {
	if l == nil {
		return
	}
	t.Logf("memory cgroup of %d MiB: peak %d KiB (page cache of the database included), oom kills %d", memoryMax>>20, l.cg.Peak()>>10, l.cg.OOMKills())
	if n := l.cg.OOMKills(); n != 0 {
		t.Errorf("the kernel killed %d processes for the cgroup's %d MiB limit", n, memoryMax>>20)
	}
}

// floodEvent is event i of connection conn, always the same length, so that
// a body's length is known before it is written.
func floodEvent(conn, i int, pad string) string {
	return fmt.Sprintf(`{"event_type":"flood","application":"a","version":"1","platform":"p","user_id":"u%05d","session_id":"c%04d","value":{"p":"%s"},"api_key":"%s"}`,
		i, conn, pad, gctest.Key)
}

// floodBatch writes connection conn's batch of n events to w and returns
// its length; with w nil it only measures. The event is formatted once and
// only its user_id's digits are changed, so that 600 clients writing 8 MiB
// each cost the test little CPU (under -race, formatting every event took
// most of the machine, from the server too).
func floodBatch(w io.Writer, conn, n int, pad string) int {
	ev := []byte(floodEvent(conn, 0, pad))
	size := 2 + n - 1 + n*len(ev)
	if w == nil {
		return size
	}
	digits := bytes.Index(ev, []byte(`"u00000"`)) + 2
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString("[")
	for i := range n {
		if i > 0 {
			bw.WriteString(",")
		}
		for d, v := 4, i; d >= 0; d, v = d-1, v/10 {
			ev[digits+d] = byte('0' + v%10)
		}
		if _, err := bw.Write(ev); err != nil {
			break // the server closed the connection
		}
	}
	bw.WriteString("]")
	bw.Flush()
	return size
}

// bodyFlood sends one request per connection from conns connections at
// once, each body written by write (length size, Content-Encoding enc), and
// returns the status each got (0: none).
func bodyFlood(t *testing.T, s *gctest.Server, conns int, enc string, size func(i int) int, write func(w io.Writer, i int)) []int {
	t.Helper()
	codes := make([]int, conns)
	took := make([]time.Duration, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			defer func() { took[i] = time.Since(start) }()
			c, err := floodDialer(i).Dial("tcp", s.Addr)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(120 * time.Second))
			go func() {
				h := fmt.Sprintf("POST /v1.0/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n", size(i))
				if enc != "" {
					h += "Content-Encoding: " + enc + "\r\n"
				}
				if _, err := io.WriteString(c, h+"\r\n"); err == nil {
					write(c, i) // an error is the server answering early
				}
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	// How long each kind of answer took: the slowest are what READ_TIMEOUT
	// cut short.
	byCode := map[int][]time.Duration{}
	for i, c := range codes {
		byCode[c] = append(byCode[c], took[i])
	}
	for c, d := range byCode {
		slices.Sort(d)
		t.Logf("%s flood: %d answered %d, in %v (median %v, slowest %v)", cmp.Or(enc, "raw"), len(d), c,
			d[0].Round(time.Millisecond), d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	}
	return codes
}

// markerRows is the number of stored rows (in event and the staging
// table, through shard.ViewAll) carrying marker (NewEvent's
// value {"m":marker}).
func markerRows(t *testing.T, path, marker string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM `+shard.ViewAll+` WHERE json_extract(value, '$.m') = ?`, marker).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// sessionCounts is the number of stored rows per session_id.
func sessionCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT session_id, count(*) FROM ` + shard.ViewAll + ` WHERE event_type = 'flood' GROUP BY session_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = n
	}
	return out
}

// TestFault_BodyFlood: connections each sending a whole 8 MiB batch (raw,
// then gzip that expands to 8 MiB) at once. Bodies beyond MAX_INFLIGHT_BYTES
// get 503 with Retry-After; the server's peak RSS stays under 160 MB; a
// normal client is served; every accepted batch is stored whole and
// nothing of a refused one. 600 connections with GOCOLYTICS_FAULT_LONG=1,
// 100 otherwise.
func TestFault_BodyFlood(t *testing.T) {
	gctest.NeedFault(t)
	needLoopbackClients(t)
	// The 600 connections in CI (GOCOLYTICS_FAULT_LONG=1: about
	// 17 s under -race on the 2-core machine), 100 with GOCOLYTICS_FAULT=1
	// alone; GOCOLYTICS_FLOOD_CONNS=N sets another number.
	conns := 100
	if gctest.FaultLong() {
		conns = 600
	}
	if n, err := strconv.Atoi(os.Getenv("GOCOLYTICS_FLOOD_CONNS")); err == nil && n > 0 {
		conns = n
	}
	cg := floodCgroup(t)
	s := gctest.Start(t, "")
	cg.add(t, s)
	const events = 10_000 // MAX_BATCH_EVENTS
	pad := strings.Repeat("x", (8<<20-2)/events-len(floodEvent(0, 0, ""))-1)
	size := floodBatch(nil, 0, events, pad)
	if size > 8<<20 {
		t.Fatalf("flood body of %d bytes, over MAX_BODY_BYTES", size)
	}

	normal := make(chan int, 1)
	go func() {
		// Once the flood is under way (the server has grown), a normal
		// client.
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if procStatusKiB(s.PID(), "VmRSS") > 40_000 {
				break
			}
		}
		normal <- normalClient(t, s, "during-body-flood", 10*time.Second)
	}()
	codes := bodyFlood(t, s, conns, "", func(int) int { return size }, func(w io.Writer, i int) { floodBatch(w, i, events, pad) })
	if code := <-normal; code != 204 {
		t.Errorf("normal client during the flood: got %d, want 204 within 10 s", code)
	}
	if code := normalClient(t, s, "after-body-flood", 10*time.Second); code != 204 {
		t.Errorf("normal client after the flood: got %d, want 204", code)
	}
	stored := sessionCounts(t, s.DBPath)
	statuses := map[int]int{}
	for i, code := range codes {
		statuses[code]++
		got := stored[fmt.Sprintf("c%04d", i)]
		switch {
		case code == 204 && got != events:
			t.Errorf("connection %d: 204, but %d of its %d events stored", i, got, events)
		case code != 204 && got != 0:
			t.Errorf("connection %d: %d, but %d of its events stored", i, code, got)
		}
	}

	// The same with gzip bodies that expand to 8 MiB: one body, sent by
	// every connection; every accepted one is stored whole.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	floodBatch(zw, 9999, events, pad)
	zw.Close()
	gzCodes := bodyFlood(t, s, conns, "gzip", func(int) int { return gz.Len() }, func(w io.Writer, _ int) { w.Write(gz.Bytes()) })
	gzStatuses := map[int]int{}
	for _, code := range gzCodes {
		gzStatuses[code]++
	}
	if got := sessionCounts(t, s.DBPath)["c9999"]; got != gzStatuses[204]*events {
		t.Errorf("gzip flood: %d accepted, %d events stored, want %d", gzStatuses[204], got, gzStatuses[204]*events)
	}
	// Large bodies are let in whole, first come first served, but under a
	// flood on a loaded machine the ones let in may still run out of
	// READ_TIMEOUT (seen at 100 under -race: no raw batch accepted, gzip
	// 4); that is allowed. The checks above need something accepted to mean
	// anything, so at least one batch, raw or gzip, must be.
	if statuses[204]+gzStatuses[204] == 0 {
		t.Errorf("no batch was accepted: raw %v, gzip %v", statuses, gzStatuses)
	}
	hwm := procStatusKiB(s.PID(), "VmHWM")
	t.Logf("body flood, %d connections x 8 MiB: statuses %v; gzip (%d KiB expanding to 8 MiB): %v; server VmHWM %d KiB",
		conns, statuses, gz.Len()>>10, gzStatuses, hwm)
	if hwm > 160_000 {
		t.Errorf("server VmHWM %d KiB, want at most 160 MB", hwm)
	}
	for _, m := range []string{"during-body-flood", "after-body-flood"} {
		if markerRows(t, s.DBPath, m) != 1 {
			t.Errorf("the normal client's event %q is not stored", m)
		}
	}
	cg.check(t)
}
