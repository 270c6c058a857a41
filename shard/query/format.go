package query

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/gocolytics/gocolytics/shard"
)

// encoder appends rows to buf in its format.
type encoder struct {
	format Format
	buf    []byte
}

// valueCol is the index of value among Row's text columns.
const valueCol = 6

func (e *encoder) row(r *Row) {
	if e.format == CSV {
		e.csvRow(r)
		return
	}
	b := append(e.buf, `{"id":`...)
	b = formatInt(b, r.ID)
	for i, c := range r.cols {
		b = append(b, ',', '"')
		b = append(b, Columns[i+1]...)
		b = append(b, '"', ':')
		if i == valueCol && json.Valid(c) {
			// The object itself, byte for byte as stored.
			b = append(b, c...)
			continue
		}
		// Text; a value that is not JSON (never written by gocolytics)
		// is kept as a string rather than breaking the line.
		b = shard.AppendJSONString(b, []byte(c))
	}
	e.buf = append(b, '}', '\n')
}

// csvRow writes one CSV record: id bare, every text column quoted (quotes
// doubled), CRLF at its end as RFC 4180 has it. Newlines and NULs inside a
// quoted field are data, as Python's csv module and pandas read them.
func (e *encoder) csvRow(r *Row) {
	b := formatInt(e.buf, r.ID)
	for _, c := range r.cols {
		b = append(b, ',', '"')
		if !utf8.Valid(c) {
			c = []byte(string([]rune(string(c))))
		}
		for _, ch := range c {
			if ch == '"' {
				b = append(b, '"')
			}
			b = append(b, ch)
		}
		b = append(b, '"')
	}
	e.buf = append(b, '\r', '\n')
}
