package raftfsm

// Where raftfsm keeps its keys. The node's store has two Pebble DBs
// (shardstore.Store): the state DB, without a WAL, holds the metadata keys
// ('m') beside the shards, written by the FSM with each group's applied index;
// the Raft log DB holds the Raft logs, stable stores and snapshot markers
// ('r') and the node's identity ('i'), each write synced.
//
// A data dir from before the split has one DB with every key. moveLogKeys
// moves the 'r' and 'i' keys to the Raft log DB before anything reads them:
// copy them (synced), delete them from the state DB, flush it. A crash before
// the flush leaves them in the state DB, and the next open copies them again
// over the same keys; nothing writes either DB in between.

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"

	"github.com/shardcache/shardcache/shardstore"
)

// logKeyPrefixes are the first bytes of the keys that live in the Raft log DB.
var logKeyPrefixes = []byte{prefixRaft, prefixIdentity}

// moveBatchBytes bounds one batch of moveLogKeys' copy.
const moveBatchBytes = 32 << 20

// moveLogKeys moves the Raft log DB's keys out of the state DB (see the top
// of the file); a no-op when the state DB holds none.
func moveLogKeys(store *shardstore.Store, log *slog.Logger) error {
	return moveLogKeysHook(store, log, nil)
}

// moveLogKeysHook is moveLogKeys; hook, when set, runs after each step
// ("copied", "deleted", "flushed") so tests can crash there.
func moveLogKeysHook(store *shardstore.Store, log *slog.Logger, hook func(step string)) error {
	state, logDB := store.DB(), store.LogDB()
	var keys, bytes int
	for _, p := range logKeyPrefixes {
		k, b, err := copyPrefix(state, logDB, p)
		if err != nil {
			return fmt.Errorf("raftfsm: move raft keys to the log db: %w", err)
		}
		keys, bytes = keys+k, bytes+b
	}
	if keys == 0 {
		return nil
	}
	if err := logDB.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("raftfsm: move raft keys to the log db: sync: %w", err)
	}
	if hook != nil {
		hook("copied")
	}
	for _, p := range logKeyPrefixes {
		if err := state.DeleteRange([]byte{p}, []byte{p + 1}, pebble.NoSync); err != nil {
			return fmt.Errorf("raftfsm: move raft keys to the log db: delete: %w", err)
		}
	}
	if hook != nil {
		hook("deleted")
	}
	if err := store.Flush(); err != nil {
		return fmt.Errorf("raftfsm: move raft keys to the log db: %w", err)
	}
	if hook != nil {
		hook("flushed")
	}
	log.Info("raft keys moved to the raft log db", "keys", keys, "bytes", bytes)
	return nil
}

// copyPrefix copies every key of src that starts with p into dst, in batches
// committed without sync; it returns how many keys and bytes it copied.
func copyPrefix(src, dst *pebble.DB, p byte) (keys, bytes int, err error) {
	it, err := src.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	b := dst.NewBatch()
	defer func() { b.Close() }()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return keys, bytes, err
		}
		if err := b.Set(it.Key(), v, nil); err != nil {
			return keys, bytes, err
		}
		keys, bytes = keys+1, bytes+len(it.Key())+len(v)
		if b.Len() >= moveBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return keys, bytes, err
			}
			b.Close()
			b = dst.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return keys, bytes, err
	}
	return keys, bytes, b.Commit(pebble.NoSync)
}

// CheckNewLogDB is shardstore.Options.NewLogDir: asked before a Raft log DB
// is created where none exists, it refuses (ErrIdentity) a state DB that holds
// a cluster's metadata but none of the Raft log DB's keys. That node's Raft
// log was lost, or the node was started with another --raft-log-dir; a new
// Raft log DB there would let Open bootstrap or join over the old data. A
// state DB from before the split, which still holds its 'r' and 'i' keys,
// gets its Raft log DB (moveLogKeys fills it), as does an empty one.
func CheckNewLogDB(state *pebble.DB) error {
	v, closer, err := state.Get(metaKey(metaKindCluster, ""))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cluster := string(v[min(len(v), 1):]) // after the version byte
	_ = closer.Close()
	for _, p := range logKeyPrefixes {
		it, err := state.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		if err != nil {
			return err
		}
		found := it.First()
		if err := it.Close(); err != nil {
			return err
		}
		if found {
			return nil
		}
	}
	return errNoRaftLog(cluster)
}

// errNoRaftLog is the refusal of a state DB holding cluster's data beside a
// Raft log DB that is missing or empty (CheckNewLogDB, Open).
func errNoRaftLog(cluster string) error {
	return fmt.Errorf("%w: the shard store holds data of cluster %s, but the Raft log store has no node identity and no Raft log "+
		"(start the node with the --raft-log-dir it ran with; a node whose Raft log is lost needs an empty data dir, then joins as a new node)",
		ErrIdentity, cluster)
}
