package ingest

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/gocolytics/gocolytics/shard"
)

// Defaults for Limits.
const (
	DefaultMaxBodyBytes    = 8 << 20
	DefaultMaxBatchEvents  = 10000
	DefaultMaxStringLength = 1024
	DefaultMaxValueBytes   = 64 << 10
	DefaultMaxDepth        = 64
)

// Limits bound what one request may carry.
type Limits struct {
	// MaxBodyBytes is the largest request body, after decompression.
	MaxBodyBytes int
	// MaxBatchEvents is the most events one request may hold.
	MaxBatchEvents int
	// MaxStringLength is the most characters of each string field.
	MaxStringLength int
	// MaxValueBytes is the largest value object, as JSON text.
	MaxValueBytes int
	// MaxDepth is the deepest nesting of arrays and objects in a body.
	MaxDepth int
}

// DefaultLimits returns the limits used when none are configured.
func DefaultLimits() Limits {
	return Limits{
		MaxBodyBytes:    DefaultMaxBodyBytes,
		MaxBatchEvents:  DefaultMaxBatchEvents,
		MaxStringLength: DefaultMaxStringLength,
		MaxValueBytes:   DefaultMaxValueBytes,
		MaxDepth:        DefaultMaxDepth,
	}
}

// maxFieldErrors bounds the 422 detail list of one request.
const maxFieldErrors = 1000

// The fields of an event, as bits of a mask of those seen.
const (
	fEventType = 1 << iota
	fApplication
	fVersion
	fPlatform
	fUserID
	fSessionID
	fValue
	fAPIKey
	fRequired = fEventType | fApplication | fVersion | fPlatform | fUserID | fSessionID
)

// fieldNames lists the string fields in the order of their bits.
var fieldNames = [...]string{"event_type", "application", "version", "platform", "user_id", "session_id"}

// fieldRank orders a field error's last location element as the model's
// fields are declared.
func fieldRank(l any) int {
	name, _ := l.(string)
	switch name {
	case "value":
		return len(fieldNames)
	case "api_key":
		return len(fieldNames) + 1
	}
	for i, f := range fieldNames {
		if f == name {
			return i
		}
	}
	return -1
}

// Decoded is the result of decoding one request body.
type Decoded struct {
	Events []shard.Event
	// Keys holds each event's api_key; nil where the event had none.
	Keys [][]byte
}

// Reset empties d for reuse, keeping its storage.
func (d *Decoded) Reset() {
	clear(d.Events)
	d.Events = d.Events[:0]
	clear(d.Keys)
	d.Keys = d.Keys[:0]
}

// decoder is a single-pass JSON parser for event bodies. It validates the
// whole body, decodes the known fields, keeps value as the exact text sent
// (never through float64), and collects every field error.
type decoder struct {
	buf     []byte
	pos     int
	lim     Limits
	lenient bool
	depth   int
	fatal   *Problem
	fields  []FieldError
	scratch []byte
	// nonFinite lists the offsets of lenient nan/inf tokens met since it was
	// last reset, to be rewritten as null.
	nonFinite [][2]int
}

// Decode parses body as one event (batch false) or an array of events (batch
// true) into out. It returns a Problem for a body that is not JSON (422), not
// of the right shape (422) or over a limit (413 or 422). In lenient mode it
// also accepts the non-JSON that Godot writes: bare nan, inf and -inf outside
// strings (stored as null) and empty elements in the batch array (skipped).
func Decode(body []byte, batch, lenient bool, lim Limits, out *Decoded) *Problem {
	d := decoder{buf: body, lim: lim, lenient: lenient}
	d.ws()
	if batch {
		d.batch(out)
	} else {
		d.event(-1, out)
	}
	if d.fatal == nil {
		d.ws()
		if d.pos < len(d.buf) {
			d.syntax("Extra data")
		}
	}
	if d.fatal != nil {
		return d.fatal
	}
	if len(d.fields) > 0 {
		return &Problem{Status: 422, Fields: d.fields}
	}
	return nil
}

// syntax records a malformed-JSON error at the current offset, as Python's
// json module words them. It is fatal: the field errors are dropped, since
// the body as a whole is not JSON.
func (d *decoder) syntax(msg string) {
	if d.fatal != nil {
		return
	}
	line, col := 1, 1
	for _, c := range d.buf[:d.pos] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	d.fatal = &Problem{Status: 422, Fields: []FieldError{{
		Loc:  []any{"body", d.pos},
		Msg:  fmt.Sprintf("%s: line %d column %d (char %d)", msg, line, col, d.pos),
		Type: "value_error.jsondecode",
	}}}
}

func (d *decoder) fieldError(loc []any, msg, typ string, limit int) {
	if len(d.fields) < maxFieldErrors {
		d.fields = append(d.fields, FieldError{Loc: loc, Msg: msg, Type: typ, Limit: limit})
	}
}

func loc(idx int, field string) []any {
	switch {
	case idx < 0 && field == "":
		return []any{"body"}
	case idx < 0:
		return []any{"body", field}
	case field == "":
		return []any{"body", idx}
	}
	return []any{"body", idx, field}
}

func (d *decoder) batch(out *Decoded) {
	if d.peek() != '[' {
		if d.skipValue() {
			d.fieldError(loc(-1, ""), "value is not a valid list", "type_error.list", 0)
		}
		return
	}
	d.pos++
	d.depth++
	d.ws()
	if d.peek() == ']' {
		d.pos++
		return
	}
	for idx := 0; ; {
		if d.lenient {
			for d.peek() == ',' {
				d.pos++
				d.ws()
			}
			if d.peek() == ']' {
				d.pos++
				return
			}
		}
		if idx >= d.lim.MaxBatchEvents {
			d.fatal = &Problem{Status: 413, Detail: fmt.Sprintf("Too many events in one batch: the limit is %d", d.lim.MaxBatchEvents)}
			return
		}
		d.event(idx, out)
		if d.fatal != nil {
			return
		}
		idx++
		d.ws()
		switch d.peek() {
		case ',':
			d.pos++
			d.ws()
		case ']':
			d.pos++
			return
		default:
			d.syntax("Expecting ',' delimiter")
			return
		}
	}
}

// event parses one event object; idx is its index in a batch, or -1.
func (d *decoder) event(idx int, out *Decoded) {
	if d.peek() != '{' {
		if d.skipValue() {
			d.fieldError(loc(idx, ""), "value is not a valid dict", "type_error.dict", 0)
		}
		return
	}
	d.pos++
	d.depth++
	if d.depth > d.lim.MaxDepth {
		d.tooDeep()
		return
	}
	var ev shard.Event
	var key []byte
	seen := 0
	firstErr := len(d.fields)
	d.ws()
	if d.peek() == '}' {
		d.pos++
	} else {
		for {
			name, ok := d.key()
			if !ok {
				return
			}
			bit := d.member(idx, name, &ev, &key)
			if d.fatal != nil {
				return
			}
			seen |= bit
			d.ws()
			if d.peek() == ',' {
				d.pos++
				d.ws()
				continue
			}
			if d.peek() == '}' {
				d.pos++
				break
			}
			d.syntax("Expecting ',' delimiter")
			return
		}
	}
	d.depth--
	for i, name := range fieldNames {
		if seen&(1<<i) == 0 {
			d.fieldError(loc(idx, name), "field required", "value_error.missing", 0)
		}
	}
	// pydantic lists errors in the order the model declares its fields.
	slices.SortStableFunc(d.fields[firstErr:], func(a, b FieldError) int {
		return fieldRank(a.Loc[len(a.Loc)-1]) - fieldRank(b.Loc[len(b.Loc)-1])
	})
	if seen&fValue == 0 {
		ev.Value = "{}"
	}
	out.Events = append(out.Events, ev)
	out.Keys = append(out.Keys, key)
}

// key reads an object key and its colon, and returns the key's raw bytes
// (decoded where it had escapes).
func (d *decoder) key() ([]byte, bool) {
	if d.peek() != '"' {
		d.syntax("Expecting property name enclosed in double quotes")
		return nil, false
	}
	raw, esc, ok := d.str()
	if !ok {
		return nil, false
	}
	if esc {
		raw = d.unescape(raw, nil)
	}
	d.ws()
	if d.peek() != ':' {
		d.syntax("Expecting ':' delimiter")
		return nil, false
	}
	d.pos++
	d.ws()
	return raw, true
}

// member parses the value of one key of an event and returns the field's
// bit when it was one of the known fields (even if its value was bad, so
// that it is not also reported missing).
func (d *decoder) member(idx int, name []byte, ev *shard.Event, key *[]byte) int {
	for i, f := range fieldNames {
		if string(name) == f {
			if s, ok := d.stringField(idx, f); ok {
				switch i {
				case 0:
					ev.EventType = s
				case 1:
					ev.Application = s
				case 2:
					ev.Version = s
				case 3:
					ev.Platform = s
				case 4:
					ev.UserID = s
				case 5:
					ev.SessionID = s
				}
			}
			return 1 << i
		}
	}
	switch string(name) {
	case "value":
		if v, ok := d.valueField(idx); ok {
			ev.Value = v
		}
		return fValue
	case "api_key":
		switch {
		case d.peek() == '"':
			raw, esc, ok := d.str()
			if !ok {
				return 0
			}
			if esc {
				raw = d.unescape(raw, nil)
			}
			*key = raw
		case d.isNull():
			*key = nil
		default:
			if d.skipValue() {
				d.fieldError(loc(idx, "api_key"), "str type expected", "type_error.str", 0)
			}
		}
		return fAPIKey
	}
	d.skipValue()
	return 0
}

// isNull consumes null (and in lenient mode a non-finite token, which is
// stored as null) and says whether it did.
func (d *decoder) isNull() bool {
	if bytes.HasPrefix(d.buf[d.pos:], []byte("null")) {
		d.pos += 4
		return true
	}
	if d.lenient {
		if n := d.nonFiniteLen(); n > 0 {
			d.pos += n
			return true
		}
	}
	return false
}

func (d *decoder) stringField(idx int, name string) (string, bool) {
	if d.peek() != '"' {
		if d.isNull() {
			d.fieldError(loc(idx, name), "none is not an allowed value", "type_error.none.not_allowed", 0)
		} else if d.skipValue() {
			d.fieldError(loc(idx, name), "str type expected", "type_error.str", 0)
		}
		return "", false
	}
	raw, esc, ok := d.str()
	if !ok {
		return "", false
	}
	var s string
	if esc {
		d.scratch = d.unescape(raw, d.scratch[:0])
		s = string(d.scratch)
	} else {
		s = string(raw)
	}
	if max := d.lim.MaxStringLength; len(s) > max && utf8.RuneCountInString(s) > max {
		d.fieldError(loc(idx, name), fmt.Sprintf("ensure this value has at most %d characters", max), "value_error.any_str.max_length", max)
		return "", false
	}
	return s, true
}

func (d *decoder) valueField(idx int) (string, bool) {
	if d.peek() != '{' {
		if d.isNull() {
			d.fieldError(loc(idx, "value"), "none is not an allowed value", "type_error.none.not_allowed", 0)
		} else if d.skipValue() {
			d.fieldError(loc(idx, "value"), "value is not a valid dict", "type_error.dict", 0)
		}
		return "", false
	}
	start := d.pos
	d.nonFinite = d.nonFinite[:0]
	if !d.skipValue() {
		return "", false
	}
	raw := d.buf[start:d.pos]
	if len(d.nonFinite) > 0 {
		// Rewrite Godot's nan and inf tokens as null.
		var b []byte
		last := start
		for _, nf := range d.nonFinite {
			b = append(b, d.buf[last:nf[0]]...)
			b = append(b, "null"...)
			last = nf[1]
		}
		raw = append(b, d.buf[last:d.pos]...)
	}
	// The limit holds for the text stored.
	if max := d.lim.MaxValueBytes; len(raw) > max {
		d.fieldError(loc(idx, "value"), fmt.Sprintf("ensure this value has at most %d bytes of JSON", max), "value_error.any_str.max_length", max)
		return "", false
	}
	return string(raw), true
}

func (d *decoder) tooDeep() {
	d.syntax(fmt.Sprintf("Nested deeper than %d levels", d.lim.MaxDepth))
}
