package forward

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxNumberLen is the longest number literal kept as a number in jsonb. A
// longer one (a decimal of thousands of digits) could overflow numeric's
// scale; it becomes a string like a number out of float64's range.
const maxNumberLen = 400

// jsonbValue returns what goes into the value column (jsonb) and, when that
// is not the stored text's exact meaning, the stored text itself for the
// value_text column (else nil). PostgreSQL's jsonb cannot hold a NUL
// character (\u0000) in a string and overflows on numbers such as 1e-99999;
// such a value is stored converted — NUL becomes U+FFFD, a number outside
// float64's range (or longer than 400 characters) becomes a string holding
// its literal — and the original text goes to value_text, so nothing is lost
// and the converted value still serves stats queries. Text that is not JSON
// at all (only a hand-made database could hold it) becomes a JSON string.
func jsonbValue(stored []byte) (value []byte, original []byte) {
	switch needsConversion(stored) {
	case convNone:
		return stored, nil
	case convInvalid:
		s := cleanText(string(stored))
		b, _ := json.Marshal(s)
		return b, []byte(s)
	}
	dec := json.NewDecoder(bytes.NewReader(stored))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		s := cleanText(string(stored))
		b, _ := json.Marshal(s)
		return b, []byte(s)
	}
	b, err := json.Marshal(convertValue(v))
	if err != nil {
		s := cleanText(string(stored))
		b, _ = json.Marshal(s)
		return b, []byte(s)
	}
	return b, stored
}

type conversion int

const (
	convNone conversion = iota
	convSome
	convInvalid
)

// needsConversion scans JSON text once without allocating: convNone when
// jsonb takes it as it is, convSome when a string holds \u0000 or a number
// is out of range, convInvalid when it is not valid UTF-8 JSON.
func needsConversion(b []byte) conversion {
	if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 || len(bytes.TrimSpace(b)) == 0 {
		return convInvalid
	}
	out := convNone
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' && i+1 < len(b) {
					if b[i+1] == 'u' && i+5 < len(b) && string(b[i+2:i+6]) == "0000" {
						out = convSome
					}
					if b[i+1] == 'u' {
						i += 6
						continue
					}
					i += 2
					continue
				}
				i++
			}
			i++
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < len(b) && strings.IndexByte("+-0123456789.eE", b[j]) >= 0 {
				j++
			}
			if !numberFits(b[i:j]) {
				out = convSome
			}
			i = j
		default:
			i++
		}
	}
	return out
}

// numberFits says whether jsonb stores the number literal without overflow
// or an absurd expansion (1e300 is 301 digits in jsonb; that is allowed).
func numberFits(lit []byte) bool {
	if len(lit) > maxNumberLen {
		return false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return false
	}
	// ParseFloat rounds 1e-400 to 0 with a range error (caught above); a
	// literal that is not zero but parses as zero underflowed.
	if f == 0 && bytes.ContainsAny(lit, "123456789") {
		return false
	}
	return true
}

func convertValue(v any) any {
	switch v := v.(type) {
	case string:
		return strings.ReplaceAll(v, "\x00", "\uFFFD")
	case json.Number:
		if numberFits([]byte(v)) {
			return v
		}
		return string(v)
	case []any:
		for i := range v {
			v[i] = convertValue(v[i])
		}
		return v
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[strings.ReplaceAll(k, "\x00", "\uFFFD")] = convertValue(x)
		}
		return out
	}
	return v
}

// textClean says whether PostgreSQL's text type takes b as it is (valid
// UTF-8 without NUL), so that cleanText need not run.
func textClean(b []byte) bool { return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b) }

// cleanText makes a string PostgreSQL's text type takes: NUL becomes U+FFFD
// and invalid UTF-8 the replacement character as well. It reports whether
// it changed anything.
func cleanText(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
