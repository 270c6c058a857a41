package query

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// The funnel and value statistics read raw rows, bounded by the summary
// tables' id ranges: one range per day (stats_day), split in pieces of at
// most chunkIDs ids, then the tail above every id stats_day holds (rows not
// summarised yet). Each piece is one query answering one row that packs all
// the piece's rows into one text (group_concat), read by chunkWorkers
// connections at once: a row costs the driver about a microsecond, more
// than SQLite takes to find it, and the pieces of a range are independent.

// chunkIDs is the most ids one piece covers: its packed text stays within
// a few megabytes (about 45 bytes a funnel row). Tests make it small
// (SetChunkIDs).
var chunkIDs int64 = 50_000

const (
	// chunkWorkers is how many pieces are read at once, on as many of the
	// reader's connections (two of its four: the other requests of a
	// dashboard's load still find one).
	chunkWorkers = 2
	// chunkWindow is how many pieces may be read and not yet used: the
	// memory a request holds is about that many packed texts.
	chunkWindow = chunkWorkers + 1
)

// chunk is one piece of a range's rows: the ids lo to hi of the day Day
// (its time within that day), or, for the tail, the ids from lo on with the
// time anywhere in the range.
type chunk struct {
	lo, hi int64
	day    time.Time
	tail   bool
}

// filter is f narrowed to c's day (the tail keeps f's range).
func (c chunk) filter(f Filter) Filter {
	if !c.tail {
		f.Since, f.Until = c.day, c.day
	}
	return f
}

// rangeChunks lists f's pieces, days in order then the tail; ok is false
// when the summaries are not ready (the caller reads the raw rows). The
// days' ranges and the tail's start come from one statement, so they meet
// exactly: a row summarised after it has an id above the tail's start and
// is read there.
func rangeChunks(ctx context.Context, q Querier, f Filter) (out []chunk, ok bool, err error) {
	if !summariesReady(ctx, q) {
		return nil, false, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT day, min_id, max_id FROM stats_day WHERE application = ? AND day >= ? AND day <= ?
UNION ALL SELECT NULL, 0, coalesce(max(max_id), 0) FROM stats_day ORDER BY 1 NULLS LAST`,
		f.Application, f.Since.Format(DayFormat), f.Until.Format(DayFormat))
	if err != nil {
		return nil, false, fmt.Errorf("query id ranges: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var day *string
		var lo, hi int64
		if err := rows.Scan(&day, &lo, &hi); err != nil {
			return nil, false, fmt.Errorf("read id ranges: %w", err)
		}
		if day == nil {
			out = append(out, chunk{lo: hi + 1, hi: math.MaxInt64, tail: true})
			continue
		}
		d, err := time.Parse(DayFormat, *day)
		if err != nil {
			return nil, false, fmt.Errorf("read id ranges: day %q: %w", *day, err)
		}
		for ; lo <= hi; lo += chunkIDs {
			out = append(out, chunk{lo: lo, hi: min(hi, lo+chunkIDs-1), day: d})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read id ranges: %w", err)
	}
	return out, true, nil
}

// eachChunk reads every chunk with read, at most chunkWorkers at once, and
// hands the answers to use one by one in the chunks' order. It returns the
// first error of either.
func eachChunk[T any](ctx context.Context, chunks []chunk, read func(context.Context, chunk) (T, error), use func(chunk, T) error) error {
	type result struct {
		v   T
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	results := make([]chan result, len(chunks))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	// window holds a token for each chunk taken and not yet used: chunks
	// are taken in order, so the one used next is always among them.
	window := make(chan struct{}, chunkWindow)
	var next atomic.Int64
	for range min(chunkWorkers, len(chunks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case window <- struct{}{}:
				case <-ctx.Done():
					return
				}
				i := int(next.Add(1) - 1)
				if i >= len(chunks) {
					return
				}
				v, err := read(ctx, chunks[i])
				results[i] <- result{v, err}
			}
		}()
	}
	for i, c := range chunks {
		var r result
		select {
		case r = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-window
		if r.err != nil {
			return r.err
		}
		if err := use(c, r.v); err != nil {
			return err
		}
	}
	return nil
}
