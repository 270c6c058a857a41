//go:build !linux

package shard

// registerSyncVFS does nothing here: the fdatasync VFS is Linux only.
func registerSyncVFS() {}

// datasyncs counts the fdatasync calls made instead of fsync: none here.
func datasyncs() int64 { return 0 }

// walWrites counts the writes to WAL files that reached the file system:
// not counted here.
func walWrites() int64 { return 0 }
