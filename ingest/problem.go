package ingest

import (
	"strconv"

	"github.com/gocolytics/gocolytics/shard"
)

// FieldError is one entry of a 422 answer's detail list, in the shape
// FastAPI (pydantic v1) gives it, so that clients written for Pycolytics
// read it unchanged.
type FieldError struct {
	// Loc is the path to the bad item: "body", then an event's index in a
	// batch, then a field name; or "body" and a byte offset for malformed
	// JSON.
	Loc   []any
	Msg   string
	Type  string
	Limit int // ctx.limit_value, when non-zero
}

// Problem is an answer other than 204: a status and either a plain detail
// string or a list of field errors.
type Problem struct {
	Status int
	Detail string
	Fields []FieldError
}

// Body renders the problem as FastAPI would: {"detail": ...}.
func (p *Problem) Body() []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"detail":`...)
	if p.Fields == nil {
		b = appendJSONString(b, p.Detail)
		return append(b, '}')
	}
	b = append(b, '[')
	for i, f := range p.Fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"loc":[`...)
		for j, l := range f.Loc {
			if j > 0 {
				b = append(b, ',')
			}
			switch l := l.(type) {
			case int:
				b = strconv.AppendInt(b, int64(l), 10)
			case string:
				b = appendJSONString(b, l)
			}
		}
		b = append(b, `],"msg":`...)
		b = appendJSONString(b, f.Msg)
		b = append(b, `,"type":`...)
		b = appendJSONString(b, f.Type)
		if f.Limit != 0 {
			b = append(b, `,"ctx":{"limit_value":`...)
			b = strconv.AppendInt(b, int64(f.Limit), 10)
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string (shard.AppendJSONString).
func appendJSONString(b []byte, s string) []byte { return shard.AppendJSONString(b, s) }
