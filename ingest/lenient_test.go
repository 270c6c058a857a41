package ingest_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/ingest"
)

// godotEvent is an event as the Godot plugin writes it, with value v.
func godotEvent(v string) string {
	return `{"event_type":"level_complete","application":"g","version":"1","platform":"Web","user_id":"u","session_id":"s","value":` + v + `,"api_key":"k"}`
}

// TestDecode_GodotJSON runs every case in both modes: lenient accepts
// exactly Godot's bare nan/inf/-inf and empty batch elements, strict mode
// rejects them with 422, and neither accepts any other non-JSON.
func TestDecode_GodotJSON(t *testing.T) {
	ev := godotEvent(`{}`)
	tests := []struct {
		name  string
		body  string
		batch bool
		// wantLenient lists the stored values in lenient mode; nil means a
		// problem is expected there too.
		wantLenient []string
		// wantLoc is the first loc of the 422 answer in lenient mode, or
		// "valid JSON" for a body strict mode accepts as well.
		wantLoc string
	}{
		{"in strings untouched", godotEvent(`{"s":"nan inf -inf","nan":1}`), false, []string{`{"s":"nan inf -inf","nan":1}`}, "valid JSON"},
		{"nan", godotEvent(`{"hp":nan}`), false, []string{`{"hp":null}`}, ""},
		{"inf and -inf", godotEvent(`{"max":inf,"min":-inf}`), false, []string{`{"max":null,"min":null}`}, ""},
		{"nested, no spaces", godotEvent(`{"v":[nan,inf,-inf],"o":{"x":nan}}`), false, []string{`{"v":[null,null,null],"o":{"x":null}}`}, ""},
		{"white space around", godotEvent("{\"a\": nan ,\n\"b\":\t-inf\r\n}"), false, []string{"{\"a\": null ,\n\"b\":\tnull\r\n}"}, ""},
		{"in an unknown field", strings.Replace(ev, `"value":{}`, `"value":{},"extra":[nan,-inf]`, 1), false, []string{`{}`}, ""},
		{"in a batch", "[" + godotEvent(`{"a":nan}`) + "," + godotEvent(`{"b":inf}`) + "]", true, []string{`{"a":null}`, `{"b":null}`}, ""},
		{"leading empty elements", "[,,," + ev + "]", true, []string{`{}`}, ""},
		{"empty elements between", "[" + ev + ",,\n, ," + ev + "]", true, []string{`{}`, `{}`}, ""},
		{"trailing comma", "[" + ev + ",]", true, []string{`{}`}, ""},
		{"only an empty element", "[ , ]", true, []string{}, ""},
		{"nan as a string field", strings.Replace(ev, `"platform":"Web"`, `"platform":nan`, 1), false, nil, "body platform"},
		{"nan as the value", godotEvent(`nan`), false, nil, "body value"},
		{"nan as an event", "[nan]", true, nil, "body 0"},
		{"Infinity is not Godot's", godotEvent(`{"a":Infinity}`), false, nil, "body"},
		{"NaN is not Godot's", godotEvent(`{"a":NaN}`), false, nil, "body"},
		{"-nan", godotEvent(`{"a":-nan}`), false, nil, "body"},
		{"infinite", godotEvent(`{"a":infinite}`), false, nil, "body"},
		{"nan1", godotEvent(`{"a":nan1}`), false, nil, "body"},
		{"empty element in value", godotEvent(`{"a":[1,,2]}`), false, nil, "body"},
		{"empty member in event", strings.Replace(ev, `"value":{},`, `"value":{},,`, 1), false, nil, "body"},
		{"comma before the array", ",[" + ev + "]", true, nil, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var strict ingest.Decoded
			p := ingest.Decode([]byte(tt.body), tt.batch, false, ingest.DefaultLimits(), &strict)
			switch {
			case tt.wantLoc == "valid JSON" && p != nil:
				t.Errorf("strict mode: %s, want none", p.Body())
			case tt.wantLoc != "valid JSON" && (p == nil || p.Status != 422):
				t.Errorf("strict mode: problem %v, want a 422", p)
			}
			var d ingest.Decoded
			p = ingest.Decode([]byte(tt.body), tt.batch, true, ingest.DefaultLimits(), &d)
			if tt.wantLenient == nil {
				if p == nil || p.Status != 422 {
					t.Fatalf("lenient mode: problem %v, want a 422", p)
				}
				var body struct{ Detail []struct{ Loc []any } }
				if err := json.Unmarshal(p.Body(), &body); err != nil || len(body.Detail) == 0 {
					t.Fatalf("lenient mode: %s is not a list of errors", p.Body())
				}
				loc := strings.Trim(fmt.Sprint(body.Detail[0].Loc), "[]")
				if !strings.HasPrefix(loc, tt.wantLoc) {
					t.Errorf("lenient mode: %s, want loc starting %q", p.Body(), tt.wantLoc)
				}
				return
			}
			if p != nil {
				t.Fatalf("lenient mode: %s", p.Body())
			}
			var got []string
			for _, e := range d.Events {
				got = append(got, e.Value)
			}
			if strings.Join(got, "|") != strings.Join(tt.wantLenient, "|") || len(got) != len(tt.wantLenient) {
				t.Errorf("values %q, want %q", got, tt.wantLenient)
			}
		})
	}
}

// TestLenient_Stored posts Godot's JSON to a real server and reads the rows
// back: the non-finite numbers are stored as null, in valid JSON.
func TestLenient_Stored(t *testing.T) {
	s := startServer(t, ingest.Config{Lenient: true})
	ev := func(v string) string {
		return strings.Replace(event("godot", "", testKey), `"event_type"`, `"value":`+v+`,"event_type"`, 1)
	}
	if status, body := s.post(t, "/v1.0/event", ev(`{"hp":nan,"speed":-inf,"max":inf,"s":"nan"}`)); status != 204 {
		t.Fatalf("single: %d %s", status, body)
	}
	if status, body := s.post(t, "/v1.0/events", "[,,,"+ev(`{"n":1}`)+",,"+ev(`{"n":[nan]}`)+",]"); status != 204 {
		t.Fatalf("batch: %d %s", status, body)
	}
	var got []string
	for _, r := range s.rows(t) {
		got = append(got, r.Value)
	}
	want := []string{`{"hp":null,"speed":null,"max":null,"s":"nan"}`, `{"n":1}`, `{"n":[null]}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("values:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	db, err := sql.Open("sqlite3", "file:"+s.DBPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var invalid, nulls int
	if err := db.QueryRow(`SELECT count(*) FILTER (WHERE NOT json_valid(value)), count(*) FILTER (WHERE json_extract(value, '$.hp') IS NULL AND json_type(value, '$.hp') = 'null') FROM event_all`).Scan(&invalid, &nulls); err != nil {
		t.Fatal(err)
	}
	if invalid != 0 || nulls != 1 {
		t.Errorf("%d rows of invalid JSON, %d with hp null; want 0, 1", invalid, nulls)
	}
}

// TestLenient_Strict checks LENIENT_JSON=false rejects Godot's JSON with 422
// and stores nothing.
func TestLenient_Strict(t *testing.T) {
	s := startServer(t, ingest.Config{Lenient: false})
	for _, tc := range []struct{ path, body string }{
		{"/v1.0/event", strings.Replace(event("godot", "", testKey), `"event_type"`, `"value":{"hp":nan},"event_type"`, 1)},
		{"/v1.0/events", "[," + event("godot", "", testKey) + "]"},
		{"/v1.0/events", "[" + event("godot", "", testKey) + ",]"},
	} {
		status, body := s.post(t, tc.path, tc.body)
		if status != 422 || !strings.Contains(body, "value_error.jsondecode") {
			t.Errorf("POST %s %s: %d %s, want 422 malformed JSON", tc.path, tc.body, status, body)
		}
	}
	if n := len(s.rows(t)); n != 0 {
		t.Errorf("%d rows stored, want 0", n)
	}
}
