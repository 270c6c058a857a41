package ingest_test

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/ingest"
)

func zlibbed(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := zlib.NewWriter(&out)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func rawDeflated(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, _ := flate.NewWriter(&out, flate.DefaultCompression)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestCompressed_Stored(t *testing.T) {
	s := startServer(t, ingest.Config{})
	batch := []byte("[" + event("gzip-batch", `{"n":1}`, testKey) + "," + event("gzip-batch", `{"n":2}`, testKey) + "]")
	for _, tc := range []struct {
		name, path, encoding string
		body                 []byte
	}{
		{"gzip", "/v1.0/event", "gzip", gzipped(t, []byte(event("gzip", `{"n":0}`, testKey)))},
		{"gzip batch", "/v1.0/events", "gzip", gzipped(t, batch)},
		{"x-gzip", "/v1.0/event", "x-gzip", gzipped(t, []byte(event("x-gzip", `{}`, testKey)))},
		{"GZIP", "/v1.0/event", " GZIP ", gzipped(t, []byte(event("GZIP", `{}`, testKey)))},
		{"gzip, two members", "/v1.0/events", "gzip", append(gzipped(t, []byte("[")), gzipped(t, []byte(event("members", `{}`, testKey)+"]"))...)},
		{"deflate (zlib)", "/v1.0/event", "deflate", zlibbed(t, []byte(event("deflate", `{}`, testKey)))},
		{"deflate (raw)", "/v1.0/event", "deflate", rawDeflated(t, []byte(event("raw-deflate", `{}`, testKey)))},
		{"identity", "/v1.0/event", "identity", []byte(event("identity", `{}`, testKey))},
	} {
		resp, body := call(t, "POST", s.URL+tc.path, map[string]string{"Content-Encoding": tc.encoding}, tc.body)
		if resp.StatusCode != 204 {
			t.Errorf("%s: status %d (%s), want 204", tc.name, resp.StatusCode, body)
		}
	}
	var got []string
	for _, r := range s.rows(t) {
		got = append(got, r.EventType+" "+r.Value)
	}
	want := []string{`gzip {"n":0}`, `gzip-batch {"n":1}`, `gzip-batch {"n":2}`, `x-gzip {}`, `GZIP {}`, `members {}`, `deflate {}`, `raw-deflate {}`, `identity {}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCompressed_Bomb sends bodies that decompress past MAX_BODY_BYTES:
// each is answered 413 after reading at most the limit, and nothing is
// stored.
func TestCompressed_Bomb(t *testing.T) {
	const limit = 64 << 10
	s := startServer(t, ingest.Config{Limits: ingest.Limits{MaxBodyBytes: limit}})
	// 2 MiB of zeros inside a valid event (32 times the limit): about
	// 2 KiB of gzip. Larger bombs prove no more and cost seconds of
	// compression under -race.
	huge := []byte(`[` + event("bomb", `{"pad":"`+strings.Repeat("0", 2<<20)+`"}`, testKey) + `]`)
	gz, zl := gzipped(t, huge), zlibbed(t, huge)
	if len(gz) > limit || len(zl) > limit {
		t.Fatalf("compressed sizes %d, %d: not under the limit, the test proves nothing", len(gz), len(zl))
	}
	// Exactly at the limit still passes; one byte more does not.
	at := []byte(event("at-limit", "", testKey))
	at = append(at[:len(at)-1], []byte(`,"pad":"`+strings.Repeat("x", limit-len(at)-9)+`"}`)...)
	if len(at) != limit {
		t.Fatalf("at-limit body is %d bytes, want %d", len(at), limit)
	}
	over := append(append([]byte(nil), at[:len(at)-2]...), 'x', '"', '}')

	for _, tc := range []struct {
		name, encoding string
		body           []byte
		want           int
	}{
		{"gzip bomb", "gzip", gz, 413},
		{"deflate bomb", "deflate", zl, 413},
		{"at the limit", "gzip", gzipped(t, at), 204},
		{"one byte over", "gzip", gzipped(t, over), 413},
	} {
		resp, body := call(t, "POST", s.URL+"/v1.0/event", map[string]string{"Content-Encoding": tc.encoding}, tc.body)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d (%s), want %d", tc.name, resp.StatusCode, body, tc.want)
		}
		if tc.want == 413 && !strings.Contains(body, `"detail":"Request body too large`) {
			t.Errorf("%s: body %s, want a JSON detail", tc.name, body)
		}
	}
	rows := s.rows(t)
	if len(rows) != 1 || rows[0].EventType != "at-limit" {
		t.Errorf("stored %d rows, want only the at-limit one", len(rows))
	}
}

func TestCompressed_Bad(t *testing.T) {
	s := startServer(t, ingest.Config{})
	good := gzipped(t, []byte(event("e", "", testKey)))
	flipped := bytes.Clone(good)
	flipped[len(flipped)-6] ^= 0xff // a CRC byte
	for _, tc := range []struct {
		name, encoding string
		body           []byte
		want           int
		detail         string
	}{
		{"not gzip", "gzip", []byte(event("e", "", testKey)), 400, "Request body is not valid gzip"},
		{"empty gzip", "gzip", nil, 400, "Request body is not valid gzip"},
		{"truncated gzip", "gzip", good[:len(good)/2], 400, "Request body is not valid gzip"},
		{"bad checksum", "gzip", flipped, 400, "Request body is not valid gzip"},
		{"not deflate", "deflate", []byte{0xff, 0xff, 0xff}, 400, "Request body is not valid deflate"},
		{"brotli", "br", good, 415, `Unsupported Content-Encoding \"br\"`},
		{"two encodings", "gzip, gzip", good, 415, "Unsupported Content-Encoding"},
		{"gzip of not JSON", "gzip", gzipped(t, []byte("{nope")), 422, "value_error.jsondecode"},
	} {
		resp, body := call(t, "POST", s.URL+"/v1.0/event", map[string]string{"Content-Encoding": tc.encoding}, tc.body)
		if resp.StatusCode != tc.want || !strings.Contains(body, tc.detail) {
			t.Errorf("%s: status %d, body %s; want %d with %q", tc.name, resp.StatusCode, body, tc.want, tc.detail)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", tc.name, ct)
		}
	}
	if n := len(s.rows(t)); n != 0 {
		t.Errorf("%d rows stored, want 0", n)
	}
}
