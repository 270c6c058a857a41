package shard

/*
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// The few declarations of SQLite's public VFS interface this file needs
// (sqlite3.h, API version 3). The SQLite library itself is the one
// github.com/mattn/go-sqlite3 compiles into the binary.
typedef long long gc_int64;
typedef struct gc_file gc_file;
typedef struct gc_io_methods gc_io_methods;
typedef struct gc_vfs gc_vfs;
struct gc_file { const gc_io_methods *pMethods; };
struct gc_io_methods {
	int iVersion;
	int (*xClose)(gc_file*);
	int (*xRead)(gc_file*, void*, int, gc_int64);
	int (*xWrite)(gc_file*, const void*, int, gc_int64);
	int (*xTruncate)(gc_file*, gc_int64);
	int (*xSync)(gc_file*, int);
	int (*xFileSize)(gc_file*, gc_int64*);
	int (*xLock)(gc_file*, int);
	int (*xUnlock)(gc_file*, int);
	int (*xCheckReservedLock)(gc_file*, int*);
	int (*xFileControl)(gc_file*, int, void*);
	int (*xSectorSize)(gc_file*);
	int (*xDeviceCharacteristics)(gc_file*);
	int (*xShmMap)(gc_file*, int, int, int, void volatile**);
	int (*xShmLock)(gc_file*, int, int, int);
	void (*xShmBarrier)(gc_file*);
	int (*xShmUnmap)(gc_file*, int);
	int (*xFetch)(gc_file*, gc_int64, int, void**);
	int (*xUnfetch)(gc_file*, gc_int64, void*);
};
struct gc_vfs {
	int iVersion;
	int szOsFile;
	int mxPathname;
	gc_vfs *pNext;
	const char *zName;
	void *pAppData;
	int (*xOpen)(gc_vfs*, const char*, gc_file*, int, int*);
	void *rest[13]; // xDelete ... xNextSystemCall, taken over unchanged
};
extern gc_vfs *sqlite3_vfs_find(const char*);
extern int sqlite3_vfs_register(gc_vfs*, int);

#define GC_OPEN_MAIN_DB 0x00000100
#define GC_OPEN_WAL     0x00080000
#define GC_IOERR_FSYNC  (10 | (4 << 8))

// What this VFS adds after the unix VFS's own file object.
struct gc_extra {
	int fd;     // the file's descriptor, or -1: use the unix VFS's xSync
	int synced; // the unix VFS's xSync ran once (it syncs the folder too)
	// A WAL's writes, gathered (see gc_write): len bytes of buf belong at
	// off; commit says the next write is the page of a commit frame.
	// end is the end of what was appended since the WAL last started.
	int wal, len, commit;
	gc_int64 off, end;
	char *buf;
};

// GC_WBUF is the most a WAL's gathered writes hold: 31 frames of 4 KiB
// pages, since the unix VFS writes at most 128 KiB - 1 bytes in one call
// (more, and it reports a short write as SQLITE_FULL). A larger write goes
// straight to the file.
#define GC_WBUF (31 * (24 + 4096))
#define GC_WAL_FRAME_HDR 24

static gc_vfs *gc_unix;
static gc_vfs gc_self;
// The unix VFS gives files one of a few method tables (the database file
// gets posix locking, its WAL none); each gets a copy with xSync and xClose
// replaced. A file whose table is not among them is left as it is.
#define GC_TABLES 4
static struct gc_table {
	const gc_io_methods *orig;
	gc_io_methods self;
} gc_tables[GC_TABLES];
static int gc_extra_off;
// 32 bits: armv6 (Raspberry Pi Zero/1) has no lock-free 64-bit atomics
// without libatomic, and the count only needs to be seen to move.
static volatile uint32_t gc_datasyncs;
// gc_walwrites counts the writes to WAL files that reach the file system.
static volatile uint32_t gc_walwrites;

static struct gc_extra *gc_extra_of(gc_file *f) {
	return (struct gc_extra *)((char *)f + gc_extra_off);
}

// gc_unix_of returns the unix VFS's methods of a file this VFS wrapped.
static const gc_io_methods *gc_unix_of(gc_file *f) {
	return ((const struct gc_table *)((const char *)f->pMethods - offsetof(struct gc_table, self)))->orig;
}

static int gc_close(gc_file *f);

// gc_flush writes what a WAL's writes gathered, in one write of the unix
// VFS (which retries short writes and reports a full disk as SQLITE_FULL).
// The bytes are dropped either way: after a failed write SQLite rolls the
// transaction back and writes its frames again.
static int gc_flush(gc_file *f, struct gc_extra *x) {
	if (x->len == 0) return 0;
	int n = x->len;
	x->len = 0;
	__atomic_add_fetch(&gc_walwrites, 1, __ATOMIC_RELAXED);
	return gc_unix_of(f)->xWrite(f, x->buf, n, x->off);
}

// gc_write gathers a WAL's appends. SQLite writes each frame of a
// transaction as two writes (its 24-byte header, then the page), one after
// the other at the end of the WAL; here the frames of a transaction go to
// the file in one write, made when the page of its commit frame (a header
// whose bytes 4-7, the database size after the commit, are not zero) has
// been added. So a committed transaction's frames are all in the file
// before SQLite syncs the WAL or publishes them in the wal-index, whatever
// the synchronous setting, and nothing stays gathered between
// transactions. A write at 0 (the header of a WAL started again) and any
// write below the end of what was appended (SQLite rewriting a frame of the
// transaction under way, or the checksums of its headers) is written
// through at once, after what was gathered, and so is an append that does
// not follow the gathered bytes. A read, a sync, a truncate, a size query,
// a file control and the close write what was gathered first, so SQLite's
// view of the file never differs from the file's. Other files, and a WAL
// whose buffer could not be allocated, are written as the unix VFS does.
static int gc_write(gc_file *f, const void *p, int n, gc_int64 off) {
	struct gc_extra *x = gc_extra_of(f);
	if (!x->wal) return gc_unix_of(f)->xWrite(f, p, n, off);
	int commitPage = x->commit;
	x->commit = 0;
	int through = off == 0 || off < x->end || n > GC_WBUF;
	if (x->len > 0 && (through || off != x->off + x->len || x->len + n > GC_WBUF)) {
		int rc = gc_flush(f, x);
		if (rc != 0) return rc;
	}
	if (off == 0) x->end = 0;
	if (off + n > x->end) x->end = off + n;
	if (through || (x->buf == NULL && (x->buf = malloc(GC_WBUF)) == NULL)) {
		__atomic_add_fetch(&gc_walwrites, 1, __ATOMIC_RELAXED);
		return gc_unix_of(f)->xWrite(f, p, n, off);
	}
	if (x->len == 0) x->off = off;
	memcpy(x->buf + x->len, p, n);
	x->len += n;
	if (commitPage) return gc_flush(f, x);
	if (n == GC_WAL_FRAME_HDR) {
		const unsigned char *h = p;
		x->commit = (h[4] | h[5] | h[6] | h[7]) != 0;
	}
	return 0;
}

// The other methods of a WAL write what was gathered before they act.
static int gc_flush_gathered(gc_file *f) {
	struct gc_extra *x = gc_extra_of(f);
	return x->len > 0 ? gc_flush(f, x) : 0;
}

static int gc_read(gc_file *f, void *p, int n, gc_int64 off) {
	int rc = gc_flush_gathered(f);
	if (rc != 0) return rc;
	return gc_unix_of(f)->xRead(f, p, n, off);
}

static int gc_truncate(gc_file *f, gc_int64 size) {
	struct gc_extra *x = gc_extra_of(f);
	int rc = gc_flush_gathered(f);
	if (rc != 0) return rc;
	if (size < x->end) x->end = size;
	return gc_unix_of(f)->xTruncate(f, size);
}

static int gc_file_size(gc_file *f, gc_int64 *size) {
	int rc = gc_flush_gathered(f);
	if (rc != 0) return rc;
	return gc_unix_of(f)->xFileSize(f, size);
}

static int gc_file_control(gc_file *f, int op, void *arg) {
	int rc = gc_flush_gathered(f);
	if (rc != 0) return rc;
	return gc_unix_of(f)->xFileControl(f, op, arg);
}

static int gc_sync(gc_file *f, int flags) {
	struct gc_extra *x = gc_extra_of(f);
	int rc = gc_flush_gathered(f);
	if (rc != 0) return rc;
	if (x->fd < 0 || !x->synced) {
		rc = gc_unix_of(f)->xSync(f, flags);
		if (rc == 0) x->synced = 1;
		return rc;
	}
	do { rc = fdatasync(x->fd); } while (rc != 0 && errno == EINTR);
	if (rc != 0) return GC_IOERR_FSYNC;
	__atomic_add_fetch(&gc_datasyncs, 1, __ATOMIC_RELAXED);
	return 0;
}

static pthread_mutex_t gc_mu = PTHREAD_MUTEX_INITIALIZER;

static int gc_open(gc_vfs *vfs, const char *name, gc_file *f, int flags, int *out) {
	int rc = gc_unix->xOpen(gc_unix, name, f, flags, out);
	if (rc != 0 || f->pMethods == NULL) return rc;
	struct gc_extra *x = gc_extra_of(f);
	memset(x, 0, sizeof *x);
	x->fd = -1;
	if (name == NULL || !(flags & (GC_OPEN_MAIN_DB | GC_OPEN_WAL))) return rc;
	struct gc_table *t = NULL;
	pthread_mutex_lock(&gc_mu);
	for (int i = 0; i < GC_TABLES && t == NULL; i++) {
		if (gc_tables[i].orig == f->pMethods) {
			t = &gc_tables[i];
		} else if (gc_tables[i].orig == NULL && f->pMethods->iVersion >= 3) {
			t = &gc_tables[i];
			t->self = *f->pMethods;
			t->self.xSync = gc_sync;
			t->self.xClose = gc_close;
			t->self.xWrite = gc_write;
			t->self.xRead = gc_read;
			t->self.xTruncate = gc_truncate;
			t->self.xFileSize = gc_file_size;
			t->self.xFileControl = gc_file_control;
			t->orig = f->pMethods;
		}
	}
	pthread_mutex_unlock(&gc_mu);
	if (t == NULL) return rc;
	// The unix VFS's file object starts with three pointers, then the
	// descriptor. Use it only if it is the named file's.
	int fd = *(int *)((char *)f + 3 * sizeof(void *));
	struct stat a, b;
	if (fd < 0 || fstat(fd, &a) != 0 || stat(name, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) return rc;
	x->fd = fd;
	x->wal = (flags & GC_OPEN_WAL) != 0;
	f->pMethods = &t->self;
	return rc;
}

static int gc_close(gc_file *f) {
	struct gc_extra *x = gc_extra_of(f);
	int flushed = gc_flush(f, x);
	free(x->buf);
	x->buf = NULL;
	f->pMethods = gc_unix_of(f);
	int rc = f->pMethods->xClose(f);
	return flushed != 0 ? flushed : rc;
}

// gc_register makes "gocolytics" the default VFS: the unix VFS, except
// that a database or WAL file, after its first sync, is synced with
// fdatasync instead of fsync. Returns SQLite's result code, or -1 when the
// unix VFS is not what this expects (then nothing is registered).
static int gc_register(void) {
	gc_unix = sqlite3_vfs_find("unix");
	if (gc_unix == NULL || gc_unix->iVersion < 3) return -1;
	gc_self = *gc_unix;
	gc_extra_off = (gc_unix->szOsFile + 7) & ~7;
	gc_self.szOsFile = gc_extra_off + sizeof(struct gc_extra);
	gc_self.zName = "gocolytics";
	gc_self.pNext = NULL;
	gc_self.xOpen = gc_open;
	return sqlite3_vfs_register(&gc_self, 1);
}

static uint32_t gc_datasync_count(void) {
	return __atomic_load_n(&gc_datasyncs, __ATOMIC_RELAXED);
}

static uint32_t gc_walwrite_count(void) {
	return __atomic_load_n(&gc_walwrites, __ATOMIC_RELAXED);
}
*/
import "C"

import "sync"

var registerOnce sync.Once

// registerSyncVFS makes the process's SQLite sync a database or WAL file
// with fdatasync rather than fsync, after the file's first sync (which also
// syncs its folder, as SQLite does for a new WAL). See DESIGN.md, "fdatasync".
func registerSyncVFS() {
	registerOnce.Do(func() {
		if rc := C.gc_register(); rc != 0 {
			syncVFSErr = rc
		}
	})
}

var syncVFSErr C.int

// datasyncs counts the fdatasync calls made instead of fsync.
func datasyncs() int64 { return int64(C.gc_datasync_count()) }

// walWrites counts the writes to WAL files that reached the file system.
func walWrites() int64 { return int64(C.gc_walwrite_count()) }
