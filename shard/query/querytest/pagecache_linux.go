package querytest

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Evict drops the file's clean pages from the operating system's page
// cache (posix_fadvise DONTNEED), as the kernel does under memory pressure
// or a reclaim of pages unused for a while: the next read of them goes to
// the disk. It changes nothing in the file.
func Evict(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("%w: %v", ErrNoPageCache, err)
	}
	return nil
}

// Resident is how many bytes of the file are in the page cache (mincore).
func Resident(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Size() == 0 {
		return 0, nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoPageCache, err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0, fmt.Errorf("%w: mincore: %v", ErrNoPageCache, e)
	}
	var n int64
	for _, v := range vec {
		n += int64(v & 1)
	}
	return min(n*int64(page), st.Size()), nil
}
