package shard

// Datasyncs and SyncVFSRegistered expose the fdatasync VFS to the tests.
var Datasyncs = datasyncs

func SyncVFSRegistered() bool { return syncVFSErr == 0 }
