package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// TestFault_LockedDatabase: while another process holds the write lock for
// 2 s, requests wait and then succeed (busy timeout 5 s); held past the busy
// timeout, they get 503 with a clear detail, never 500; once it lets go,
// writes succeed again without a restart; nothing acknowledged is lost, and
// nothing answered 503 is stored.
func TestFault_LockedDatabase(t *testing.T) {
	gctest.NeedFault(t)
	p := gctest.Start(t, "", "--sqlite-busy-timeout", "5s")
	client := &http.Client{Timeout: 30 * time.Second}
	if code, body := gctest.Post(t, client, p.URL("/v1.0/event"), gctest.NewEvent("before").JSON()); code != 204 {
		t.Fatalf("before: got %d %s", code, body)
	}

	// Held for 2 s, within the 5 s busy timeout: every request waits and
	// gets its 204.
	h := shardtest.HoldLock(t, p.DBPath)
	l := gctest.Load{Addr: p.Addr, Prefix: "short", Clients: 8, Batches: true}.Start()
	time.Sleep(2 * time.Second)
	h.Release(t)
	time.Sleep(300 * time.Millisecond)
	l.Stop()
	if len(l.Bad()) > 0 || l.Failed() > 0 || l.Unknown() > 0 {
		t.Fatalf("lock held 2 s: %d events failed, %d unanswered: %v", l.Failed(), l.Unknown(), l.Bad())
	}
	if l.AckedCount() == 0 {
		t.Fatal("nothing acknowledged")
	}

	// Held past the busy timeout: 503 with a detail that says why.
	p2 := gctest.Start(t, "", "--sqlite-busy-timeout", "1s")
	h2 := shardtest.HoldLock(t, p2.DBPath)
	code, body := gctest.Post(t, client, p2.URL("/v1.0/events"), gctest.MarkedBatch("locked-1", "locked-2"))
	if code != 503 || !strings.Contains(body, "locked by another process") {
		t.Errorf("lock held past the busy timeout: got %d %s, want 503 saying the database is locked", code, body)
	}
	l2 := gctest.Load{Addr: p2.Addr, Prefix: "long", Clients: 8, Batches: true, Allowed: func(c int) bool { return c == 503 }}.Start()
	time.Sleep(1500 * time.Millisecond)
	h2.Release(t)
	time.Sleep(300 * time.Millisecond)
	l2.Stop()
	if bad := l2.Bad(); len(bad) > 0 {
		t.Errorf("answers other than 204 and 503: %v", bad)
	}
	if code, body := gctest.Post(t, client, p2.URL("/v1.0/event"), gctest.NewEvent("after-lock").JSON()); code != 204 {
		t.Errorf("after the lock is let go: got %d %s, want 204", code, body)
	}

	for _, c := range []struct {
		p *gctest.Server
		l *gctest.Ledger
	}{{p, l}, {p2, l2}} {
		integrity, stored := gctest.Check(t, c.p.DBPath)
		if integrity != "ok" {
			t.Errorf("integrity_check: %s", integrity)
		}
		for _, m := range c.l.Lost(stored) {
			t.Errorf("acknowledged %s is not stored", m)
		}
		t.Logf("%s: %d events sent, %d acknowledged, %d answered 503, %d stored", c.p.DBPath, c.l.Sent(), c.l.AckedCount(), c.l.Failed(), len(stored))
		if c.p == p2 {
			if stored["locked-1"] || stored["locked-2"] {
				t.Errorf("a batch answered 503 was stored")
			}
			if n := len(stored) - 1; n != c.l.AckedCount() {
				t.Errorf("stored %d load events, acknowledged %d: a 503 was stored", n, c.l.AckedCount())
			}
		}
	}
}
