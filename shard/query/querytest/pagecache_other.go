//go:build !linux

package querytest

// Evict is ErrNoPageCache outside Linux.
func Evict(path string) error { return ErrNoPageCache }

// Resident is ErrNoPageCache outside Linux.
func Resident(path string) (int64, error) { return 0, ErrNoPageCache }
