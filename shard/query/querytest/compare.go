package querytest

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
)

// EqualJSON fails the test unless got, as JSON, equals want: the same
// objects, lists and strings, and numbers within 1e-9 of each other.
func EqualJSON(tb testing.TB, what string, got any, want string) {
	tb.Helper()
	var gotRaw []byte
	switch g := got.(type) {
	case []byte:
		gotRaw = g
	case string:
		gotRaw = []byte(g)
	default:
		var err error
		if gotRaw, err = json.Marshal(got); err != nil {
			tb.Fatal(err)
		}
	}
	var a, b any
	if err := json.Unmarshal(gotRaw, &a); err != nil {
		tb.Fatalf("%s: got no JSON: %v\n%s", what, err, gotRaw)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		tb.Fatalf("%s: want is no JSON: %v", what, err)
	}
	if path, ok := equal(a, b, "$"); !ok {
		tb.Errorf("%s differs at %s\n got: %s\nwant: %s", what, path, gotRaw, want)
	}
}

func equal(a, b any, path string) (string, bool) {
	switch b := b.(type) {
	case map[string]any:
		a, ok := a.(map[string]any)
		if !ok || len(a) != len(b) {
			return path, false
		}
		for k, v := range b {
			if p, ok := equal(a[k], v, path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		a, ok := a.([]any)
		if !ok || len(a) != len(b) {
			return path, false
		}
		for i := range b {
			if p, ok := equal(a[i], b[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return p, false
			}
		}
		return "", true
	case float64:
		a, ok := a.(float64)
		return path, ok && math.Abs(a-b) <= 1e-9
	default:
		return path, a == b
	}
}
