package dashboard_test

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/dashboard"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// TestOpenAPI_Stats checks that the served OpenAPI document (ingest's
// openapi.json) documents every route of the stats API, and produces every
// documented status of each with a real request: the body must be JSON
// holding the documented schema's required fields.
func TestOpenAPI_Stats(t *testing.T) {
	raw, err := os.ReadFile("../openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]map[string]any
		Components struct {
			Schemas   map[string]map[string]any
			Responses map[string]map[string]any
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	path := querytest.Known(t)
	base := startDashboard(t, path)
	// slow answers 503: its queries have a nanosecond.
	slow := serveDashboard(t, dashboard.Config{Source: querytest.OpenReader(t, path), Guard: keyGuard{ingest.NewKeys([]string{adminKey})},
		Now: func() time.Time { return november10 }, Timeout: time.Nanosecond})

	// A good query of each route, and a bad parameter.
	good := map[string]string{
		dashboard.StatsPath:        novemberQuery + "&series=version",
		dashboard.FunnelPath:       novemberQuery + "&steps=start,level_end",
		dashboard.ValuePath:        novemberQuery + "&event_type=level_end&field=score",
		dashboard.SeriesPath:       novemberQuery + "&by=platform",
		dashboard.RecentPath:       "limit=5",
		dashboard.ApplicationsPath: "",
	}
	bad := map[string]string{dashboard.RecentPath: "limit=0"}
	for p := range good {
		if _, ok := doc.Paths[p]["get"]; !ok {
			t.Errorf("GET %s is not documented", p)
		}
		if bad[p] == "" {
			bad[p] = "application=Game&since=2026-13-01"
		}
	}
	for p, ops := range doc.Paths {
		op := ops["get"]
		if tags, _ := op["tags"].([]any); len(tags) == 0 || tags[0] != "stats" {
			continue
		}
		if _, ok := good[p]; !ok {
			t.Errorf("%s is documented but no route of the stats API", p)
			continue
		}
		responses, _ := op["responses"].(map[string]any)
		for code, r := range responses {
			t.Run(p+"/"+code, func(t *testing.T) {
				var got int
				var body string
				switch code {
				case "200":
					got, _, body = get(t, base+p+"?"+good[p], adminKey)
				case "401":
					got, _, body = get(t, base+p+"?"+good[p], ingestKey)
				case "422":
					got, _, body = get(t, base+p+"?"+bad[p], adminKey)
				case "503":
					got, _, body = get(t, slow+p+"?"+good[p], adminKey)
				default:
					t.Fatalf("status %s is documented but no request in this test produces it", code)
				}
				if want, _ := strconv.Atoi(code); got != want {
					t.Fatalf("got status %d (body %.200s), want %s", got, body, code)
				}
				schema := responseSchema(t, doc.Components.Responses, r)
				var v any
				if err := json.Unmarshal([]byte(body), &v); err != nil {
					t.Fatalf("body is not JSON: %v: %.200s", err, body)
				}
				checkRequired(t, doc.Components.Schemas, schema, v, "body")
			})
		}
	}
}

// responseSchema returns the JSON schema of a documented response.
func responseSchema(t *testing.T, responses map[string]map[string]any, r any) map[string]any {
	t.Helper()
	m, _ := r.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		m = responses[strings.TrimPrefix(ref, "#/components/responses/")]
	}
	content, _ := m["content"].(map[string]any)
	js, _ := content["application/json"].(map[string]any)
	schema, _ := js["schema"].(map[string]any)
	if schema == nil {
		t.Fatalf("response %v has no JSON schema", r)
	}
	return schema
}

// checkRequired checks that v has the required fields of schema, in its
// objects and in the items of its arrays.
func checkRequired(t *testing.T, schemas map[string]map[string]any, schema map[string]any, v any, where string) {
	t.Helper()
	if ref, ok := schema["$ref"].(string); ok {
		schema = schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
	}
	switch schema["type"] {
	case "array":
		list, ok := v.([]any)
		if !ok {
			t.Fatalf("%s: %T, want an array", where, v)
		}
		items, _ := schema["items"].(map[string]any)
		for i, x := range list {
			checkRequired(t, schemas, items, x, where+"["+strconv.Itoa(i)+"]")
		}
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: %T, want an object", where, v)
		}
		props, _ := schema["properties"].(map[string]any)
		req, _ := schema["required"].([]any)
		for _, r := range req {
			name, _ := r.(string)
			x, ok := m[name]
			if !ok {
				t.Errorf("%s: no %q", where, name)
				continue
			}
			if p, ok := props[name].(map[string]any); ok && x != nil {
				checkRequired(t, schemas, p, x, where+"."+name)
			}
		}
	}
}
