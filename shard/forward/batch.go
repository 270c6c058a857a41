package forward

import (
	"encoding/binary"
	"slices"
	"strings"
	"time"
)

// columns are the event columns a batch copies, in the order batch.add
// writes them.
var columns = []string{"event_type", "application", "version", "platform", "user_id", "session_id", "value", "time", "node_id", "src_id", "value_text"}

// copyColumns is columns as COPY's column list.
var copyColumns = strings.Join(columns, ", ")

// batch holds the rows of one transaction already in COPY's binary format
// (one buffer, no value per row for pgx to encode): read from SQLite as raw
// bytes, checked, converted only when PostgreSQL could not take them as they
// are (convert.go), and appended. See DESIGN.md, "Cost".
type batch struct {
	nodeID    string
	eraseType string
	buf       []byte
	rows      int
	months    []month
	erasures  []eraseEvent
	lastID    int64
	lastTime  time.Time
	converted int
}

func newBatch(nodeID, eraseType string, size int) *batch {
	return &batch{nodeID: nodeID, eraseType: eraseType, buf: make([]byte, 0, size*256)}
}

// copyHeader starts COPY's binary format: the signature, no flags, no
// header extension.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// pgEpoch is where PostgreSQL's timestamp counts microseconds from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// reset empties b for the next rows.
func (b *batch) reset() {
	b.buf = append(b.buf[:0], copyHeader...)
	b.rows, b.months, b.erasures, b.converted = 0, b.months[:0], b.erasures[:0], 0
	b.lastID, b.lastTime = 0, time.Time{}
}

// add appends one row as SQLite stored it (cols: event_type, application,
// version, platform, user_id, session_id, value, time as text).
func (b *batch) add(id int64, cols *[8][]byte) {
	changed := false
	b.buf = binary.BigEndian.AppendUint16(b.buf, uint16(len(columns)))
	for _, c := range cols[:6] {
		if textClean(c) {
			b.buf = appendField(b.buf, c)
		} else {
			b.buf = appendField(b.buf, []byte(cleanText(string(c))))
			changed = true
		}
	}
	v, orig := jsonbValue(cols[6])
	b.buf = binary.BigEndian.AppendUint32(b.buf, uint32(len(v)+1))
	b.buf = append(b.buf, 1) // jsonb's binary format: version 1, then the text
	b.buf = append(b.buf, v...)
	t, ok := storedTime(cols[7])
	if orig != nil || !ok {
		changed = true
	}
	b.buf = binary.BigEndian.AppendUint32(b.buf, 8)
	b.buf = binary.BigEndian.AppendUint64(b.buf, uint64((t.Unix()-pgEpoch)*1_000_000+int64(t.Nanosecond()/1000)))
	b.buf = appendField(b.buf, []byte(b.nodeID))
	b.buf = binary.BigEndian.AppendUint32(b.buf, 8)
	b.buf = binary.BigEndian.AppendUint64(b.buf, uint64(id))
	if orig != nil {
		b.buf = appendField(b.buf, orig)
	} else {
		b.buf = binary.BigEndian.AppendUint32(b.buf, 0xffffffff) // NULL
	}
	if changed {
		b.converted++
	}
	if m := monthOf(t); len(b.months) == 0 || (b.months[len(b.months)-1] != m && !slices.Contains(b.months, m)) {
		b.months = append(b.months, m)
	}
	if b.eraseType != "" && string(cols[0]) == b.eraseType {
		b.erasures = append(b.erasures, eraseEvent{userID: cleanText(string(cols[4])), application: cleanText(string(cols[1])), srcID: id, time: t})
	}
	b.rows++
	b.lastID, b.lastTime = id, t
}

// finish ends COPY's data.
func (b *batch) finish() { b.buf = append(b.buf, 0xff, 0xff) }

func appendField(buf, v []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
	return append(buf, v...)
}

// storedTime reads the time column; the writer's own format is read by
// hand (it is every row of a gocolytics database), any other by parseTime.
func storedTime(b []byte) (time.Time, bool) {
	if len(b) == len(storedTimeFormat) && b[4] == '-' && b[7] == '-' && b[10] == ' ' && b[13] == ':' && b[16] == ':' && b[19] == '.' {
		n := func(i, j int) int {
			v := 0
			for _, c := range b[i:j] {
				if c < '0' || c > '9' {
					return -1
				}
				v = v*10 + int(c-'0')
			}
			return v
		}
		y, mo, d, h, mi, s, us := n(0, 4), n(5, 7), n(8, 10), n(11, 13), n(14, 16), n(17, 19), n(20, 26)
		if y >= 0 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h >= 0 && h < 24 && mi >= 0 && mi < 60 && s >= 0 && s < 60 && us >= 0 {
			t := time.Date(y, time.Month(mo), d, h, mi, s, us*1000, time.UTC)
			if t.Day() == d {
				return t, true
			}
		}
	}
	return parseTime(string(b))
}
