package shard

// Datasyncs and SyncVFSRegistered expose the fdatasync VFS to the tests.
var Datasyncs = datasyncs

var WALWrites = walWrites

func SyncVFSRegistered() bool { return syncVFSErr == 0 }

// CheckpointRuns is how many checkpoints db's checkpointer ran.
func CheckpointRuns(db *DB) int64 { return db.ckpt.runs.Load() }
