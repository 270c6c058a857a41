// Package link carries events between worker processes and the writer
// (PROTOCOL.md): the frame codec, the worker's end (Client, from Dial) and
// the writer's end (Serve). Serve takes a Writer interface, so the link
// knows nothing of SQLite; the opaque call frames carry the rate budget's
// questions without the link knowing of rate limits either.
package link
