package query

import (
	"encoding/json"
	"unicode/utf8"
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
		b = appendJSONString(b, c)
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

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters (NUL included) escaped, invalid UTF-8 replaced by
// U+FFFD, everything else as it is.
func appendJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
