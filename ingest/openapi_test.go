package ingest_test

import (
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/ratelimit"
)

// openAPISpec fetches /openapi.json from a real server and decodes it.
func openAPISpec(t *testing.T, s *testServer) map[string]any {
	t.Helper()
	resp, body := call(t, "GET", s.URL+"/openapi.json", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /openapi.json: status %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var spec map[string]any
	if err := json.Unmarshal([]byte(body), &spec); err != nil {
		t.Fatalf("/openapi.json is not JSON: %v", err)
	}
	return spec
}

func obj(t *testing.T, v any, path string) map[string]any {
	t.Helper()
	for _, k := range strings.Split(path, "/") {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: %q is not an object", path, k)
		}
		v = m[k]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is not an object", path)
	}
	return m
}

// TestOpenAPI_Refs checks the document is OpenAPI 3.1 and every $ref in it
// names something it holds.
func TestOpenAPI_Refs(t *testing.T) {
	s := startServer(t, ingest.Config{})
	spec := openAPISpec(t, s)
	if v := spec["openapi"]; v != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", v)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					ref, _ := x.(string)
					if !strings.HasPrefix(ref, "#/") {
						t.Errorf("$ref %q is not local", ref)
						continue
					}
					obj(t, spec, ref[2:])
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(spec)
}

// TestOpenAPI_Fields checks the Event schema documents exactly the fields
// the decoder reads.
func TestOpenAPI_Fields(t *testing.T) {
	s := startServer(t, ingest.Config{})
	doc := openAPISpec(t, s)
	props := obj(t, doc, "components/schemas/Event/properties")
	var got []string
	for k := range props {
		got = append(got, k)
	}
	want := slices.Clone(ingest.DecoderFields)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("documented fields %v, decoder reads %v", got, want)
	}
	for _, f := range ingest.DecoderFields {
		typ := obj(t, props, f)["type"]
		wantType := "string"
		if f == "value" {
			wantType = "object"
		}
		if typ != wantType {
			t.Errorf("field %s has type %v, want %s", f, typ, wantType)
		}
	}
}

// TestOpenAPI_Statuses produces every documented status of every documented
// operation with a real request, and checks the body has the documented
// shape.
func TestOpenAPI_Statuses(t *testing.T) {
	s := startServer(t, ingest.Config{Limits: ingest.Limits{MaxBatchEvents: 2, MaxBodyBytes: 4096}})
	// closed answers 503: its database is closed before the request.
	closed := startServer(t, ingest.Config{})
	if err := closed.DB.Close(); err != nil {
		t.Fatal(err)
	}
	// limited answers 429 to its second request.
	limited := startServer(t, ingest.Config{Rates: []ratelimit.Rate{{Count: 1, Multiplier: 1, Unit: "hour"}}})

	one := event("startup", `{"level":3}`, testKey)
	body := func(path, ev string) []byte {
		if strings.HasSuffix(path, "/events") {
			return []byte("[" + ev + "]")
		}
		return []byte(ev)
	}
	type producer func(t *testing.T, path string) (int, string)
	send := func(t *testing.T, srv *testServer, path string, hdr map[string]string, b []byte) (int, string) {
		resp, got := call(t, "POST", srv.URL+path, hdr, b)
		return resp.StatusCode, got
	}
	producers := map[int]producer{
		204: func(t *testing.T, path string) (int, string) { return send(t, s, path, nil, body(path, one)) },
		400: func(t *testing.T, path string) (int, string) {
			return send(t, s, path, map[string]string{"Content-Encoding": "gzip"}, []byte("not gzip"))
		},
		401: func(t *testing.T, path string) (int, string) {
			return send(t, s, path, nil, body(path, event("startup", "", "wrong-key")))
		},
		413: func(t *testing.T, path string) (int, string) {
			if strings.HasSuffix(path, "/events") {
				return send(t, s, path, nil, []byte("["+one+","+one+","+one+"]"))
			}
			return send(t, s, path, nil, []byte(`{"pad":"`+strings.Repeat("x", 8192)+`"}`))
		},
		415: func(t *testing.T, path string) (int, string) {
			return send(t, s, path, map[string]string{"Content-Encoding": "br"}, body(path, one))
		},
		422: func(t *testing.T, path string) (int, string) { return send(t, s, path, nil, []byte(`{"event_type":`)) },
		429: func(t *testing.T, path string) (int, string) {
			send(t, limited, path, nil, body(path, one))
			return send(t, limited, path, nil, body(path, one))
		},
		503: func(t *testing.T, path string) (int, string) { return send(t, closed, path, nil, body(path, one)) },
	}

	doc := openAPISpec(t, s)
	paths := obj(t, doc, "paths")
	if len(paths) == 0 {
		t.Fatal("no paths documented")
	}
	for path := range paths {
		ops, _ := paths[path].(map[string]any)
		for method := range ops {
			if tags, _ := obj(t, ops, method)["tags"].([]any); len(tags) > 0 && tags[0] == "stats" {
				// The stats API is served by ingest/dashboard, whose
				// TestOpenAPI_Stats produces these.
				continue
			}
			responses := obj(t, ops, method+"/responses")
			for code, r := range responses {
				status, _ := strconv.Atoi(code)
				t.Run(strings.ToUpper(method)+path+"/"+code, func(t *testing.T) {
					produce, ok := producers[status]
					if !ok {
						t.Fatalf("status %s is documented but no request in this test produces it", code)
					}
					if method != "post" {
						t.Fatalf("method %s: the producers only POST", method)
					}
					got, b := produce(t, path)
					if got != status {
						t.Fatalf("got status %d (body %.200s), want %d", got, b, status)
					}
					checkShape(t, doc, r, b)
				})
			}
		}
	}
}

// checkShape checks a response body against the documented response: none
// for 204, else JSON whose "detail" is a string (Detail) or a list of
// errors with loc, msg and type (HTTPValidationError).
func checkShape(t *testing.T, doc map[string]any, r any, body string) {
	t.Helper()
	resp, _ := r.(map[string]any)
	if ref, ok := resp["$ref"].(string); ok {
		resp = obj(t, doc, strings.TrimPrefix(ref, "#/"))
	}
	content, ok := resp["content"].(map[string]any)
	if !ok {
		if body != "" {
			t.Errorf("body %q, want none", body)
		}
		return
	}
	schemaRef, _ := obj(t, content["application/json"], "schema")["$ref"].(string)
	var got struct{ Detail json.RawMessage }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	switch schemaRef {
	case "#/components/schemas/Detail":
		var d string
		if err := json.Unmarshal(got.Detail, &d); err != nil || d == "" {
			t.Errorf("detail %s is not a non-empty string", got.Detail)
		}
	case "#/components/schemas/HTTPValidationError":
		var list []struct {
			Loc  []any
			Msg  string
			Type string
		}
		if err := json.Unmarshal(got.Detail, &list); err != nil || len(list) == 0 {
			t.Fatalf("detail %s is not a list of errors", got.Detail)
		}
		for _, e := range list {
			if len(e.Loc) == 0 || e.Msg == "" || e.Type == "" {
				t.Errorf("error %+v lacks loc, msg or type", e)
			}
		}
	default:
		t.Errorf("undocumented schema %q", schemaRef)
	}
}
