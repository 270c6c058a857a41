package shard

import "time"

// TimeFormat is how the time column is written: what Pycolytics' SQLAlchemy
// wrote, and what sqlite3, Python's sqlite3 and pandas parse.
const TimeFormat = "2006-01-02 15:04:05.000000"

// Event is one row of the event table. Value holds the JSON text of the
// event's value object exactly as it is to be stored.
type Event struct {
	EventType   string
	Application string
	Version     string
	Platform    string
	UserID      string
	SessionID   string
	Value       string
	// Time is when the server accepted the event.
	Time time.Time
}
