package ingest

// DecoderFields lists every event field the decoder reads, for the test
// that checks /openapi.json documents each.
var DecoderFields = append(append([]string(nil), fieldNames[:]...), "value", "api_key")
