package ingest

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBodyBuf_ChargedAsArrives: a body that announces 8 MiB and sends one
// byte holds the first buffer's few KiB of the budget, not the announced
// length (at most a pooled buffer's 32 KiB).
func TestBodyBuf_ChargedAsArrives(t *testing.T) {
	b := &inflight{max: 64 << 20}
	bb := getBodyBuf(b, 8<<20, true)
	if err := bb.readFrom(strings.NewReader("["), 8<<20); err != nil {
		t.Fatal(err)
	}
	if got := b.used.Load(); got > pooledBodyBuf {
		t.Errorf("one byte of an announced 8 MiB: %d bytes charged, want at most %d", got, pooledBodyBuf)
	}
	bb.release()
	if got := b.used.Load(); got != 0 {
		t.Errorf("after release: %d bytes charged, want 0", got)
	}
}

// TestBodyBuf_ReservesOnceLarge: once a large body's first 4 KiB are in,
// it reserves its announced length and its decoded events at once, and
// charges nothing more as the rest arrives.
func TestBodyBuf_ReservesOnceLarge(t *testing.T) {
	b := &inflight{max: 64 << 20}
	const size = 1 << 20
	body := bytes.Repeat([]byte("x"), size)
	bb := getBodyBuf(b, size, true)
	if err := bb.readFrom(bytes.NewReader(body), 8<<20); err != nil {
		t.Fatal(err)
	}
	if got, want := b.used.Load(), int64(2*size+1); got != want {
		t.Errorf("charged %d, want %d (the body and its decoded events)", got, want)
	}
	if cap(bb.b) != size+1 {
		t.Errorf("buffer of %d bytes, want %d: made once at the announced length", cap(bb.b), size+1)
	}
	if !bb.takeDecoded() || b.used.Load() != 2*size+1 {
		t.Errorf("the decoded events were charged again: %d", b.used.Load())
	}
	bb.release()
	if got := b.used.Load(); got != 0 {
		t.Errorf("after release: %d bytes charged, want 0", got)
	}
}

// TestInflight_ReserveFIFO: large bodies are let in first come, first
// served: one that would fit waits behind an earlier one that does not.
func TestInflight_ReserveFIFO(t *testing.T) {
	b := &inflight{max: 8 << 20} // 7 MiB for large bodies
	for i := range 2 {
		if !b.reserve(3<<20, time.Second) {
			t.Fatalf("reservation %d of 3 MiB was refused", i+1)
		}
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for _, w := range []struct {
		name string
		n    int64
	}{{"C", 3 << 20}, {"D", 1 << 20}} {
		wg.Go(func() {
			if b.reserve(w.n, 5*time.Second) {
				mu.Lock()
				order = append(order, w.name)
				mu.Unlock()
			}
		})
		// C queues before D does.
		for b.waiting.Load() == 0 || (w.name == "D" && b.waiting.Load() < 2) {
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	if len(order) != 0 {
		t.Errorf("%v let in while C waits for room (D would fit, but came after C)", order)
	}
	mu.Unlock()
	b.give(3 << 20)
	wg.Wait()
	if len(order) != 2 {
		t.Errorf("let in %v, want C and D", order)
	}
	if got := b.used.Load(); got != 7<<20 {
		t.Errorf("charged %d, want 7 MiB", got)
	}
}

// TestInflight_ReserveBounded: a reservation that does not fit in time is
// refused and leaves the queue; the last eighth stays for small bodies.
func TestInflight_ReserveBounded(t *testing.T) {
	b := &inflight{max: 8 << 20}
	if !b.reserve(7<<20, time.Second) {
		t.Fatal("7 MiB of 8 waited")
	}
	start := time.Now()
	if b.reserve(1, 100*time.Millisecond) {
		t.Fatal("a large body got past seven eighths")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("refused after %v, want it to wait 100 ms", d)
	}
	if b.waiting.Load() != 0 || len(b.queue) != 0 {
		t.Errorf("the refused reservation is still queued")
	}
	if !b.take(1<<20, false) {
		t.Error("a small body found no room in the last eighth")
	}
	if b.reserve(9<<20, time.Hour) {
		t.Error("a reservation larger than the budget was granted")
	}
}

// TestBodyBuf_OverBudgetWaitsThenRefuses: a large body that finds no room
// within maxBudgetWait gets errOverBudget and gives back what it held.
func TestBodyBuf_OverBudgetWaitsThenRefuses(t *testing.T) {
	b := &inflight{max: 4 << 20}
	if !b.reserve(3<<20, time.Second) {
		t.Fatal("reserve")
	}
	bb := getBodyBuf(b, 1<<20, true)
	err := bb.readFrom(io.LimitReader(zeros{}, 1<<20), 8<<20)
	if err != errOverBudget {
		t.Fatalf("got %v, want errOverBudget", err)
	}
	bb.release()
	if got := b.used.Load(); got != 3<<20 {
		t.Errorf("charged %d after the refusal, want the 3 MiB reserved before", got)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
