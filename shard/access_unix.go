//go:build unix

package shard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// checkAccess fails when this user cannot write the database's folder (SQLite
// creates the -wal and -shm files there) or cannot read and write the file.
// SQLite's own errors for these cases mislead: a read-only folder reads as
// "no such file or directory" or "attempt to write a readonly database".
func checkAccess(path string) error {
	const r, w = 0x4, 0x2 // R_OK, W_OK
	dir := filepath.Dir(path)
	if err := syscall.Access(dir, w); err != nil {
		return fmt.Errorf("%w: folder %q is not writable by this user (%v); the database, its -wal and -shm files are created there", ErrNoAccess, dir, err)
	}
	err := syscall.Access(path, r|w)
	switch {
	case err == nil || errors.Is(err, os.ErrNotExist):
		return nil
	}
	return fmt.Errorf("%w: file is not readable and writable by this user: %v", ErrNoAccess, err)
}
