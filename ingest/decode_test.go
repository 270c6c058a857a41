package ingest_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gocolytics/gocolytics/ingest"
)

const full = `{"event_type":"e","application":"a","version":"v","platform":"p","user_id":"u","session_id":"s","value":{"k":1},"api_key":"key"}`

func decode(t *testing.T, body string, batch, lenient bool) (*ingest.Decoded, *ingest.Problem) {
	t.Helper()
	var d ingest.Decoded
	p := ingest.Decode([]byte(body), batch, lenient, ingest.DefaultLimits(), &d)
	return &d, p
}

func TestDecode_Valid(t *testing.T) {
	tests := []struct {
		name, body string
		batch      bool
		wantValue  []string
		wantKeys   []string
	}{
		{"full", full, false, []string{`{"k":1}`}, []string{"key"}},
		{"value omitted is {}", `{"event_type":"e","application":"a","version":"v","platform":"p","user_id":"u","session_id":"s","api_key":"key"}`, false, []string{`{}`}, []string{"key"}},
		{"huge exponent kept as sent", strings.Replace(full, `{"k":1}`, `{"inf":1e99999,"neg":-1E-99999,"big":123456789012345678901234567890}`, 1), false,
			[]string{`{"inf":1e99999,"neg":-1E-99999,"big":123456789012345678901234567890}`}, []string{"key"}},
		{"nested value kept byte for byte", strings.Replace(full, `{"k":1}`, `{ "a" : [1, {"b": null}, "x\"y"], "c": {"d": {}} }`, 1), false,
			[]string{`{ "a" : [1, {"b": null}, "x\"y"], "c": {"d": {}} }`}, []string{"key"}},
		{"unknown fields ignored", strings.Replace(full, `"api_key"`, `"extra":[1,{"z":null}],"Event_Type":5,"api_key"`, 1), false, []string{`{"k":1}`}, []string{"key"}},
		{"no api_key decodes (401 is the handler's)", strings.Replace(full, `,"api_key":"key"`, ``, 1), false, []string{`{"k":1}`}, []string{""}},
		{"null api_key is none", strings.Replace(full, `"api_key":"key"`, `"api_key":null`, 1), false, []string{`{"k":1}`}, []string{""}},
		{"whitespace around", " \n\t" + full + "\r\n ", false, []string{`{"k":1}`}, []string{"key"}},
		{"batch", "[" + full + "," + full + "]", true, []string{`{"k":1}`, `{"k":1}`}, []string{"key", "key"}},
		{"empty batch", "[ ]", true, nil, nil},
		{"escaped key name", strings.Replace(full, `"event_type"`, `"event\u005ftype"`, 1), false, []string{`{"k":1}`}, []string{"key"}},
		{"escaped api key", strings.Replace(full, `"api_key":"key"`, `"api_key":"k\u0065y"`, 1), false, []string{`{"k":1}`}, []string{"key"}},
		{"duplicate key: last wins", strings.Replace(full, `"value":{"k":1}`, `"value":{"k":1},"value":{"k":2}`, 1), false, []string{`{"k":2}`}, []string{"key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, p := decode(t, tt.body, tt.batch, false)
			if p != nil {
				t.Fatalf("got problem %d %s, want none", p.Status, p.Body())
			}
			if got, want := len(d.Events), len(tt.wantValue); got != want {
				t.Fatalf("got %d events, want %d", got, want)
			}
			for i, ev := range d.Events {
				if ev.Value != tt.wantValue[i] {
					t.Errorf("event %d: got value %q, want %q", i, ev.Value, tt.wantValue[i])
				}
				if got := string(d.Keys[i]); got != tt.wantKeys[i] {
					t.Errorf("event %d: got key %q, want %q", i, got, tt.wantKeys[i])
				}
				if ev.EventType != "e" || ev.Application != "a" || ev.Version != "v" || ev.Platform != "p" || ev.UserID != "u" || ev.SessionID != "s" {
					t.Errorf("event %d: got %+v", i, ev)
				}
			}
		})
	}
}

func TestDecode_Strings(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"empty", `""`, ""},
		{"unicode as sent", `"Ünïcödé ☃ 日本 🎮"`, "Ünïcödé ☃ 日本 🎮"},
		{"unicode escapes", `"\u00dcn\u00efc\u00f6d\u00e9 \u2603 \u65e5\u672c"`, "Ünïcödé ☃ 日本"},
		{"surrogate pair", `"\ud83c\udfae"`, "🎮"},
		{"lone surrogate", `"a\ud83cb"`, "a\ufffdb"},
		{"NUL kept", `"a\u0000b"`, "a\x00b"},
		{"escapes", `"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Replace(full, `"e"`, tt.json, 1)
			d, p := decode(t, body, false, false)
			if p != nil {
				t.Fatalf("got problem %s", p.Body())
			}
			if got := d.Events[0].EventType; got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// detail is the parsed body of a 422.
type detail struct {
	Detail []struct {
		Loc  []any  `json:"loc"`
		Msg  string `json:"msg"`
		Type string `json:"type"`
	} `json:"detail"`
}

// locs renders each error as "loc...:type".
func locs(t *testing.T, p *ingest.Problem) []string {
	t.Helper()
	var d detail
	if err := json.Unmarshal(p.Body(), &d); err != nil {
		t.Fatalf("problem body %s is not JSON: %v", p.Body(), err)
	}
	var out []string
	for _, e := range d.Detail {
		b, _ := json.Marshal(e.Loc)
		out = append(out, string(b)+":"+e.Type)
	}
	return out
}

func TestDecode_Invalid(t *testing.T) {
	without := func(field string) string {
		var m map[string]json.RawMessage
		_ = json.Unmarshal([]byte(full), &m)
		delete(m, field)
		b, _ := json.Marshal(m)
		return string(b)
	}
	with := func(field, raw string) string {
		var m map[string]json.RawMessage
		_ = json.Unmarshal([]byte(full), &m)
		m[field] = json.RawMessage(raw)
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name, body string
		batch      bool
		status     int
		want       []string
	}{
		{"missing event_type", without("event_type"), false, 422, []string{`["body","event_type"]:value_error.missing`}},
		{"missing session_id", without("session_id"), false, 422, []string{`["body","session_id"]:value_error.missing`}},
		{"number event_type", with("event_type", "1"), false, 422, []string{`["body","event_type"]:type_error.str`}},
		{"null application", with("application", "null"), false, 422, []string{`["body","application"]:type_error.none.not_allowed`}},
		{"bool version", with("version", "true"), false, 422, []string{`["body","version"]:type_error.str`}},
		{"object platform", with("platform", `{"a":1}`), false, 422, []string{`["body","platform"]:type_error.str`}},
		{"list user_id", with("user_id", `["u"]`), false, 422, []string{`["body","user_id"]:type_error.str`}},
		{"value list", with("value", `[1,2]`), false, 422, []string{`["body","value"]:type_error.dict`}},
		{"value string", with("value", `"{}"`), false, 422, []string{`["body","value"]:type_error.dict`}},
		{"value null", with("value", `null`), false, 422, []string{`["body","value"]:type_error.none.not_allowed`}},
		{"api_key number", with("api_key", `12`), false, 422, []string{`["body","api_key"]:type_error.str`}},
		{"too long", with("user_id", `"`+strings.Repeat("ü", ingest.DefaultMaxStringLength+1)+`"`), false, 422, []string{`["body","user_id"]:value_error.any_str.max_length`}},
		{"value too large", with("value", `{"a":"`+strings.Repeat("x", ingest.DefaultMaxValueBytes)+`"}`), false, 422, []string{`["body","value"]:value_error.any_str.max_length`}},
		{"every field, in model order", `{"value":1,"session_id":2}`, false, 422, []string{
			`["body","event_type"]:value_error.missing`, `["body","application"]:value_error.missing`,
			`["body","version"]:value_error.missing`, `["body","platform"]:value_error.missing`,
			`["body","user_id"]:value_error.missing`, `["body","session_id"]:type_error.str`,
			`["body","value"]:type_error.dict`}},
		{"batch index", "[" + full + "," + with("event_type", "null") + "," + without("platform") + "]", true, 422, []string{
			`["body",1,"event_type"]:type_error.none.not_allowed`, `["body",2,"platform"]:value_error.missing`}},
		{"single body is a list", "[" + full + "]", false, 422, []string{`["body"]:type_error.dict`}},
		{"batch body is an object", full, true, 422, []string{`["body"]:type_error.list`}},
		{"batch element not an object", "[" + full + ",3]", true, 422, []string{`["body",1]:type_error.dict`}},
		{"empty body", "", false, 422, []string{`["body",0]:value_error.jsondecode`}},
		{"truncated", full[:40], false, 422, []string{`["body",40]:value_error.jsondecode`}},
		{"trailing data", full + "x", false, 422, []string{`["body",` + itoa(len(full)) + `]:value_error.jsondecode`}},
		{"trailing comma", `{"a":1,}`, false, 422, []string{`["body",7]:value_error.jsondecode`}},
		{"single quotes", `{'a':1}`, false, 422, []string{`["body",1]:value_error.jsondecode`}},
		{"bad number", with("value", `{"a":01}`), false, 422, nil},
		{"bare nan strict", with("value", `{"a":nan}`), false, 422, nil},
		{"bare NaN", with("value", `{"a":NaN}`), false, 422, nil},
		{"raw control char", strings.Replace(full, `"e"`, "\"a\x01b\"", 1), false, 422, []string{`["body",16]:value_error.jsondecode`}},
		{"invalid utf-8", strings.Replace(full, `"e"`, "\"a\xffb\"", 1), false, 422, []string{`["body",16]:value_error.jsondecode`}},
		{"bad escape", strings.Replace(full, `"e"`, `"\x"`, 1), false, 422, nil},
		{"deep nesting", with("value", strings.Repeat(`{"a":`, 100)+"1"+strings.Repeat("}", 100)), false, 422, nil},
		{"deep nesting in unknown field", with("zz", strings.Repeat(`[`, 10000)), false, 422, nil},
		{"empty element strict", "[," + full + "]", true, 422, []string{`["body",1]:value_error.jsondecode`}},
		{"too many events", "[" + strings.Repeat(full+",", ingest.DefaultMaxBatchEvents) + full + "]", true, 413, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p := decode(t, tt.body, tt.batch, false)
			if p == nil {
				t.Fatalf("got no problem, want %d", tt.status)
			}
			if p.Status != tt.status {
				t.Fatalf("got status %d (%s), want %d", p.Status, p.Body(), tt.status)
			}
			if tt.status != 422 {
				return
			}
			got := locs(t, p)
			if tt.want == nil {
				if len(got) != 1 || !strings.HasSuffix(got[0], ":value_error.jsondecode") {
					t.Errorf("got %v, want one jsondecode error", got)
				}
				return
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestDecode_Lenient(t *testing.T) {
	tests := []struct {
		name, body string
		batch      bool
		wantValues []string
	}{
		{"nan inf -inf become null", strings.Replace(full, `{"k":1}`, `{"a":nan,"b":[inf,-inf,1],"c":"nan"}`, 1), false,
			[]string{`{"a":null,"b":[null,null,1],"c":"nan"}`}},
		{"empty elements skipped", "[,," + full + ",," + full + ",]", true, []string{`{"k":1}`, `{"k":1}`}},
		{"only commas", "[,,]", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, p := decode(t, tt.body, tt.batch, true)
			if p != nil {
				t.Fatalf("got problem %s", p.Body())
			}
			if len(d.Events) != len(tt.wantValues) {
				t.Fatalf("got %d events, want %d", len(d.Events), len(tt.wantValues))
			}
			for i, ev := range d.Events {
				if ev.Value != tt.wantValues[i] {
					t.Errorf("got %q, want %q", ev.Value, tt.wantValues[i])
				}
			}
		})
	}
	for _, bad := range []string{`{"a":Infinity}`, `{"a":nana}`, `{"a":-nan}`, `{"a":+inf}`} {
		if _, p := decode(t, strings.Replace(full, `{"k":1}`, bad, 1), false, true); p == nil {
			t.Errorf("lenient mode accepted %s", bad)
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// FuzzDecode checks that the decoder accepts exactly the bodies
// encoding/json calls valid (strict mode), never panics, and that every value
// it keeps is valid JSON.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(full), false)
	f.Add([]byte("["+full+","+full+"]"), true)
	f.Add([]byte(`{"value":{"a":[1,2,{"b":"\u00fc"}]},"x":1e99999}`), false)
	f.Add([]byte(`[{"event_type":1}]`), true)
	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		var d ingest.Decoded
		p := ingest.Decode(body, batch, false, ingest.DefaultLimits(), &d)
		isSyntax := p != nil && p.Status == 422 && len(p.Fields) == 1 && p.Fields[0].Type == "value_error.jsondecode"
		// Python, and so Pycolytics, rejects a body that is not UTF-8;
		// encoding/json does not.
		valid := json.Valid(body) && utf8.Valid(body)
		if valid && isSyntax && !strings.Contains(p.Fields[0].Msg, "Nested deeper") {
			t.Fatalf("valid JSON %q rejected as malformed: %s", body, p.Body())
		}
		if !valid && !isSyntax && (p == nil || p.Status != 413) {
			t.Fatalf("invalid JSON %q not rejected as malformed: %v", body, p)
		}
		for _, ev := range d.Events {
			if p == nil && !json.Valid([]byte(ev.Value)) {
				t.Fatalf("stored value %q is not JSON", ev.Value)
			}
		}
		if p != nil && !json.Valid(p.Body()) {
			t.Fatalf("problem body %q is not JSON", p.Body())
		}
		// Lenient mode must accept everything strict mode accepts.
		var d2 ingest.Decoded
		if p == nil {
			if p2 := ingest.Decode(body, batch, true, ingest.DefaultLimits(), &d2); p2 != nil {
				t.Fatalf("lenient rejected what strict accepted: %s", p2.Body())
			}
		}
	})
}

// TestDecode_ValueLimitAfterRewrite: MAX_VALUE_BYTES holds for the text
// stored, after lenient mode wrote nan as null.
func TestDecode_ValueLimitAfterRewrite(t *testing.T) {
	lim := ingest.DefaultLimits()
	lim.MaxValueBytes = len(`{"a":nan}`)
	for _, tt := range []struct {
		value string
		ok    bool
	}{{`{"a":nan}`, false}, {`{"a":-inf}`, false}, {`{"a":1.0}`, true}} {
		var d ingest.Decoded
		p := ingest.Decode([]byte(strings.Replace(full, `{"k":1}`, tt.value, 1)), false, true, lim, &d)
		if (p == nil) != tt.ok {
			t.Errorf("%s: got problem %v, want ok %v", tt.value, p, tt.ok)
		}
	}
}
