package shard

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// ErrBackupExists is a backup's target file that already exists: a backup
// never overwrites a file.
var ErrBackupExists = errors.New("backup file already exists")

// Backup writes a consistent copy of the database at path to dst with
// VACUUM INTO, from a read-only connection of its own: in WAL mode it
// reads one snapshot while the writer goes on committing, so it is safe
// while the server ingests and holds everything committed before it
// started. The copy is written to a temporary file beside dst, must pass
// PRAGMA integrity_check, is synced, and only then renamed to dst. It
// returns the copy's size.
func Backup(ctx context.Context, path, dst string, busyTimeout time.Duration) (int64, error) {
	if busyTimeout <= 0 {
		busyTimeout = DefaultBusyTimeout
	}
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, fmt.Errorf("%w: %s", ErrBackupExists, dst)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", dst, os.Getpid())
	os.Remove(tmp)
	defer os.Remove(tmp)
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	src, err := (&sqlite3.SQLiteDriver{}).Open("file:" + escapePath(path) + "?" + q.Encode())
	if err != nil {
		return 0, fmt.Errorf("backup: open %s: %w", path, err)
	}
	c := src.(*sqlite3.SQLiteConn)
	_, err = c.ExecContext(ctx, "VACUUM INTO ?", []driver.NamedValue{{Ordinal: 1, Value: tmp}})
	c.Close()
	if err != nil {
		return 0, fmt.Errorf("backup: VACUUM INTO %s: %w", tmp, err)
	}
	if err := mergeCopy(ctx, tmp); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	// A backup holds what the database holds: as private as the database.
	if err := os.Chmod(tmp, 0o600); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if err := IntegrityCheck(tmp); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	f, err := os.Open(tmp)
	if err != nil {
		return 0, err
	}
	err = f.Sync()
	fi, _ := f.Stat()
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("backup: sync: %w", err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, fmt.Errorf("%w: %s", ErrBackupExists, dst)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	syncDir(filepath.Dir(dst))
	return fi.Size(), nil
}

// mergeCopy moves the events a copy holds staged (in the ring, or in the
// staging table of an older version) into its event table and empties
// them, so that a backup read with sqlite3 or pandas holds in event every
// event committed before it began, and no stale copy besides.
func mergeCopy(ctx context.Context, path string) error {
	dc, err := (&sqlite3.SQLiteDriver{}).Open("file:" + escapePath(path))
	if err != nil {
		return fmt.Errorf("open copy: %w", err)
	}
	c := dc.(*sqlite3.SQLiteConn)
	defer c.Close()
	var qs []string
	for _, t := range []struct{ table, live, after string }{
		{oldStagingTable, "TRUE", ""},
		{StagingTable, "id > (SELECT merged FROM " + StagingMeta + ")",
			"UPDATE " + StagingMeta + " SET merged = max(merged, (SELECT coalesce(max(id), 0) FROM event))"},
	} {
		_, ok, err := queryInt64(c, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", t.table)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		qs = append(qs, fmt.Sprintf("INSERT INTO event (%s) SELECT %s FROM %s WHERE %s ORDER BY id", mergeColumns, mergeColumns, t.table, t.live),
			"DELETE FROM "+t.table)
		if t.after != "" {
			qs = append(qs, t.after)
		}
	}
	if len(qs) == 0 {
		return nil
	}
	qs = append(qs, "COMMIT")
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE", nil); err != nil {
		return fmt.Errorf("merge staged events in the copy: %w", err)
	}
	for _, q := range qs {
		if _, err := c.ExecContext(ctx, q, nil); err != nil {
			return fmt.Errorf("merge staged events in the copy: %w", rollback(c, err))
		}
	}
	return nil
}

// IntegrityCheck runs PRAGMA integrity_check on the database at path,
// read-only, and returns nil when it answers "ok".
func IntegrityCheck(path string) error {
	dc, err := (&sqlite3.SQLiteDriver{}).Open("file:" + escapePath(path) + "?mode=ro")
	if err != nil {
		return fmt.Errorf("integrity check of %s: %w", path, err)
	}
	c := dc.(*sqlite3.SQLiteConn)
	defer c.Close()
	res, err := queryStrings(c, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check of %s: %w", path, err)
	}
	if len(res) != 1 || res[0] != "ok" {
		return fmt.Errorf("integrity check of %s failed: %s", path, strings.Join(res, "; "))
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Scheduled backups are named BackupPrefix + UTC time + ".db" in their
// folder, so that their names sort by age and nothing else is ever
// deleted by the rotation.
const (
	BackupPrefix     = "gocolytics-"
	backupStampFmt   = "20060102T150405Z"
	backupNameSuffix = ".db"
)

// BackupName is the file name of a scheduled backup taken at t.
func BackupName(t time.Time) string {
	return BackupPrefix + t.UTC().Format(backupStampFmt) + backupNameSuffix
}

// Backups lists the scheduled backups in dir, oldest first, with the time
// each was taken.
func Backups(dir string) ([]string, []time.Time, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, BackupPrefix) || !strings.HasSuffix(n, backupNameSuffix) {
			continue
		}
		if _, err := time.Parse(backupStampFmt, strings.TrimSuffix(strings.TrimPrefix(n, BackupPrefix), backupNameSuffix)); err == nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	times := make([]time.Time, len(names))
	for i, n := range names {
		times[i], _ = time.Parse(backupStampFmt, strings.TrimSuffix(strings.TrimPrefix(n, BackupPrefix), backupNameSuffix))
		names[i] = filepath.Join(dir, n)
	}
	return names, times, nil
}

// RotateBackups deletes the oldest scheduled backups in dir until keep are
// left, and returns the deleted paths.
func RotateBackups(dir string, keep int) ([]string, error) {
	names, _, err := Backups(dir)
	if err != nil {
		return nil, err
	}
	var gone []string
	for len(names) > keep {
		if err := os.Remove(names[0]); err != nil {
			return gone, err
		}
		gone = append(gone, names[0])
		names = names[1:]
	}
	return gone, nil
}
