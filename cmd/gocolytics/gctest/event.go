package gctest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// Event is one analytics event as a client sends it. Value is raw JSON
// written as it is, so that a test can send any value, valid or not; an
// empty Value leaves the key out.
type Event struct {
	EventType   string
	Application string
	Version     string
	Platform    string
	UserID      string
	SessionID   string
	Value       string
	APIKey      string
}

// Realistic spreads for NewEvent: thousands of players, several sessions
// each, and a handful of event types, versions and platforms.
var (
	eventTypes = []string{"startup", "level_start", "level_complete", "purchase", "settings_changed", "shutdown"}
	versions   = []string{"1.0.3", "1.1.0", "2.0.0-beta.2"}
	platforms  = []string{"Windows", "Linux", "macOS", "Android", "iOS", "Web"}
)

const (
	players           = 5000
	sessionsPerPlayer = 4
)

// NewEvent is an event as the Godot plugin sends it that carries marker, a
// string unique to the event, as its value: {"m":marker}. Its other fields
// follow from the marker (one of 5,000 players with an 8-hex-digit user_id,
// one of their 4 sessions with a 64-hex-digit session_id, one of 6 event
// types, 3 versions and 6 platforms), so that Stored can check every
// column of a stored row against what was sent. It carries the API key Key.
func NewEvent(marker string) Event {
	h := fnv.New64a()
	h.Write([]byte(marker))
	n := h.Sum64()
	player := n % players
	session := sha256.Sum256(fmt.Appendf(nil, "player %d session %d", player, (n>>20)%sessionsPerPlayer))
	m, _ := json.Marshal(marker)
	return Event{
		EventType:   eventTypes[(n>>32)%uint64(len(eventTypes))],
		Application: "My Game",
		Version:     versions[(n>>40)%uint64(len(versions))],
		Platform:    platforms[(n>>48)%uint64(len(platforms))],
		UserID:      fmt.Sprintf("%08x", uint32(player*2654435761)),
		SessionID:   hex.EncodeToString(session[:]),
		Value:       `{"m":` + string(m) + `}`,
		APIKey:      Key,
	}
}

// WithKey is e with another API key.
func (e Event) WithKey(key string) Event {
	e.APIKey = key
	return e
}

// Row is the event as the writer stores it, at time at: for tests that
// write a database through shard directly instead of over HTTP.
func (e Event) Row(at time.Time) shard.Event {
	return shard.Event{EventType: e.EventType, Application: e.Application, Version: e.Version, Platform: e.Platform,
		UserID: e.UserID, SessionID: e.SessionID, Value: e.Value, Time: at}
}

// JSON is the event as a request body, its keys in the order the Godot
// plugin sends them.
func (e Event) JSON() string {
	var b strings.Builder
	e.write(&b)
	return b.String()
}

func (e Event) write(b *strings.Builder) {
	str := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	b.WriteString(`{"event_type":` + str(e.EventType) + `,"application":` + str(e.Application) +
		`,"version":` + str(e.Version) + `,"platform":` + str(e.Platform) +
		`,"user_id":` + str(e.UserID) + `,"session_id":` + str(e.SessionID))
	if e.Value != "" {
		b.WriteString(`,"value":` + e.Value)
	}
	b.WriteString(`,"api_key":` + str(e.APIKey) + `}`)
}

// Batch is a request body for /v1.0/events: the events as a JSON array.
func Batch(events ...Event) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		e.write(&b)
	}
	b.WriteByte(']')
	return b.String()
}

// MarkedBatch is a batch of NewEvent(m) for each marker.
func MarkedBatch(markers ...string) string {
	events := make([]Event, len(markers))
	for i, m := range markers {
		events[i] = NewEvent(m)
	}
	return Batch(events...)
}
