package querytest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// Realistic describes a generated game's events: Players join on days
// spread over Days days ending with Last, come back less and less, play
// sessions of events of EventTypes types, and move to newer versions.
type Realistic struct {
	Events  int
	Players int
	Days    int
	Last    time.Time
	Seed    uint64
}

// BenchGame is the benchmark database: 5 million events over 90
// days from 12,000 players, 10 event types, 7 versions, 6 platforms
// (shard/query's and the dashboard's benchmarks).
var BenchGame = Realistic{Events: 5_000_000, Players: 12_000, Days: 90,
	Last: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), Seed: 1}

// EventTypes of a generated game, the most frequent first.
var EventTypes = []string{"level_end", "level_start", "item_pickup", "enemy_killed", "start", "menu_open",
	"tutorial_start", "tutorial_end", "purchase", "crash"}

var platforms = []string{"Windows", "Android", "Linux", "macOS", "iOS", "Web"}

// Generate returns the events of r, in time order, roughly r.Events of
// them (it stops at r.Events).
func (r Realistic) Generate() []shard.Event {
	rng := rand.New(rand.NewPCG(r.Seed, 7))
	first := r.Last.AddDate(0, 0, 1-r.Days)
	type play struct {
		at      time.Time
		player  int
		session int
	}
	var plays []play
	session := 0
	for p := 0; p < r.Players; p++ {
		join := rng.IntN(r.Days)
		for d := join; d < r.Days; d++ {
			// Day 0 always; then a chance that falls with the days since
			// joining, and some players never come back.
			if d > join && rng.Float64() > 0.5/float64(1+(d-join)/3) {
				continue
			}
			for s := 0; s < 1+rng.IntN(2); s++ {
				at := first.AddDate(0, 0, d).Add(time.Duration(rng.IntN(86000)) * time.Second)
				plays = append(plays, play{at, p, session})
				session++
			}
		}
	}
	perSession := max(r.Events/max(len(plays), 1), 1)
	out := make([]shard.Event, 0, r.Events)
	for _, pl := range plays {
		n := 1 + rng.IntN(2*perSession-1)
		day := int(pl.at.Sub(first).Hours() / 24)
		version := fmt.Sprintf("1.%d.0", min(day/15+rng.IntN(2), 6))
		platform := platforms[pl.player%len(platforms)]
		user := fmt.Sprintf("player-%06d", pl.player)
		sess := fmt.Sprintf("session-%08d", pl.session)
		t := pl.at
		for i := 0; i < n && len(out) < r.Events; i++ {
			et := EventTypes[min(int(rng.ExpFloat64()*2), len(EventTypes)-1)]
			if i == 0 {
				et = "start"
			}
			value := "{}"
			if et == "level_end" {
				value = fmt.Sprintf(`{"score":%d,"stats":{"time":%.2f},"level":%d}`, rng.IntN(10000), rng.Float64()*300, 1+rng.IntN(20))
			}
			out = append(out, shard.Event{Time: t, Application: "Bench Game", Version: version, Platform: platform,
				UserID: user, SessionID: sess, EventType: et, Value: value})
			t = t.Add(time.Duration(1+rng.IntN(40)) * time.Second)
		}
	}
	// Time order, as a server stores them.
	sortByTime(out)
	return out
}

func sortByTime(ev []shard.Event) {
	slices.SortFunc(ev, func(a, b shard.Event) int { return a.Time.Compare(b.Time) })
}

// CachedRealistic returns the path of a database holding r's events,
// written once into the system's temporary folder and reused (benchmarks
// need millions of rows; writing them takes a minute).
func CachedRealistic(tb testing.TB, r Realistic) string {
	tb.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("gocolytics-bench-%d-%d-%d-%s-%d.db", r.Events, r.Players, r.Days, r.Last.Format("20060102"), r.Seed))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := path + ".part"
	os.Remove(tmp)
	Write(tb, tmp, r.Generate())
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	return path
}
