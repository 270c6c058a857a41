package ingest

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON scanner under the event decoder: whitespace, strings, numbers,
// literals and containers, validated without building values.

func (d *decoder) ws() {
	for d.pos < len(d.buf) {
		switch d.buf[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	if d.pos < len(d.buf) {
		return d.buf[d.pos]
	}
	return 0
}

// nonFiniteLen returns the length of a nan, inf or -inf token at the
// current offset, or 0.
func (d *decoder) nonFiniteLen() int {
	rest := d.buf[d.pos:]
	for _, t := range [...]string{"nan", "inf", "-inf"} {
		if bytes.HasPrefix(rest, []byte(t)) && (len(rest) == len(t) || !isIdent(rest[len(t)])) {
			return len(t)
		}
	}
	return 0
}

func isIdent(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// skipValue validates and skips any JSON value. It returns false after a
// syntax error.
func (d *decoder) skipValue() bool {
	if d.fatal != nil {
		return false
	}
	switch c := d.peek(); {
	case c == '{':
		return d.skipContainer('}')
	case c == '[':
		return d.skipContainer(']')
	case c == '"':
		_, _, ok := d.str()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		if d.lenient && c == '-' {
			if n := d.nonFiniteLen(); n > 0 {
				d.nonFinite = append(d.nonFinite, [2]int{d.pos, d.pos + n})
				d.pos += n
				return true
			}
		}
		return d.number()
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if bytes.HasPrefix(d.buf[d.pos:], []byte(lit)) {
				d.pos += len(lit)
				return true
			}
		}
		if d.lenient {
			if n := d.nonFiniteLen(); n > 0 {
				d.nonFinite = append(d.nonFinite, [2]int{d.pos, d.pos + n})
				d.pos += n
				return true
			}
		}
		d.syntax("Expecting value")
		return false
	}
}

func (d *decoder) skipContainer(end byte) bool {
	d.pos++
	d.depth++
	if d.depth > d.lim.MaxDepth {
		d.tooDeep()
		return false
	}
	d.ws()
	if d.peek() == end {
		d.pos++
		d.depth--
		return true
	}
	for {
		if end == '}' {
			if _, ok := d.key(); !ok {
				return false
			}
		}
		if !d.skipValue() {
			return false
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.pos++
			d.ws()
		case end:
			d.pos++
			d.depth--
			return true
		default:
			d.syntax("Expecting ',' delimiter")
			return false
		}
	}
}

// number validates a JSON number without converting it.
func (d *decoder) number() bool {
	b, i := d.buf, d.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		d.pos = i
		d.syntax("Expecting value")
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			d.pos = i
			d.syntax("Expecting digit")
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			d.pos = i
			d.syntax("Expecting digit")
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	d.pos = i
	return true
}

// str validates the string at the current offset and returns its raw
// contents (between the quotes) and whether they hold escapes.
func (d *decoder) str() (raw []byte, esc, ok bool) {
	b := d.buf
	start := d.pos + 1
	i := start
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return b[start:i], esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				d.pos = i
				d.syntax("Unterminated string starting at")
				return nil, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					d.pos = i
					d.syntax("Invalid \\uXXXX escape")
					return nil, false, false
				}
				i += 6
			default:
				d.pos = i
				d.syntax("Invalid \\escape")
				return nil, false, false
			}
		case c < 0x20:
			d.pos = i
			d.syntax("Invalid control character at")
			return nil, false, false
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				d.pos = i
				d.syntax("Invalid UTF-8")
				return nil, false, false
			}
			i += n
		}
	}
	d.pos = len(b)
	d.syntax("Unterminated string starting at")
	return nil, false, false
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if unhex(c) < 0 {
			return false
		}
	}
	return true
}

func unhex(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

func hex4(b []byte) rune {
	return unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3])
}

// unescape decodes the raw contents of a string that str has validated,
// appending to dst. A lone UTF-16 surrogate becomes U+FFFD.
func (d *decoder) unescape(raw, dst []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = hex4(raw[i+2:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}
