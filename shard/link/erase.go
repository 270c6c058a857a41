package link

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/gocolytics/gocolytics/shard"
)

// Eraser is the part of a Writer that erases a user's rows (*shard.DB).
// Serve answers FrameErase through it when the Writer has it, and with an
// error otherwise.
type Eraser interface {
	Erase(ctx context.Context, userID, application string) (int64, error)
}

// appendErase appends the payload of a FrameErase: user id and
// application, each a uvarint length and its bytes.
func appendErase(b []byte, user, app string) []byte {
	b = binary.AppendUvarint(b, uint64(len(user)))
	b = append(b, user...)
	b = binary.AppendUvarint(b, uint64(len(app)))
	return append(b, app...)
}

func decodeErase(p []byte) (user, app string, err error) {
	var s [2]string
	for i := range s {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return "", "", fmt.Errorf("%w: bad erase", ErrBadFrame)
		}
		s[i], p = string(p[n:n+int(l)]), p[n+int(l):]
	}
	return s[0], s[1], nil
}

// appendErased appends the payload of a FrameErased: the outcome, then the
// rows deleted (uvarint), which counts the committed chunks even when a
// later one failed.
func appendErased(b []byte, n int64, err error) []byte {
	return binary.AppendUvarint(appendOutcome(b, err), uint64(n))
}

func decodeErased(p []byte) (int64, error) {
	rest, outcome := decodeOutcome(p)
	n, k := binary.Uvarint(rest)
	if k <= 0 {
		return 0, fmt.Errorf("%w: %w: bad erase result", shard.ErrCommit, ErrBadFrame)
	}
	return int64(n), outcome
}

// serveErase runs one FrameErase through w and returns the reply's payload.
func serveErase(w Writer, payload []byte) []byte {
	user, app, err := decodeErase(payload)
	if err != nil {
		return appendErased(nil, 0, fmt.Errorf("%w: %v", shard.ErrCommit, err))
	}
	e, ok := w.(Eraser)
	if !ok {
		return appendErased(nil, 0, fmt.Errorf("%w: this writer cannot erase", shard.ErrCommit))
	}
	n, err := e.Erase(context.Background(), user, app)
	return appendErased(nil, n, err)
}

// Erase asks the writer to delete every row of userID (of application,
// unless empty), as shard.DB.Erase does, and returns the rows deleted once
// the deletion is committed. ctx is not sent: the deletion runs to its end
// on the writer's side once asked.
func (l *Client) Erase(ctx context.Context, userID, application string) (int64, error) {
	c := callPool.Get().(*call)
	c.scratch = appendErase(c.scratch[:0], userID, application)
	l.roundTrip(c, FrameErase, FrameErased)
	n, err := c.erased, c.err
	l.release(c)
	return n, err
}
