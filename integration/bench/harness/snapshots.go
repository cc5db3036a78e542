package harness

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RaftSnapshots returns, for each Raft group with a snapshot in the node's
// data dir, the log index of its newest one. It reads the layout of
// hashicorp/raft's FileSnapshotStore as shardcache places it:
// <data-dir>/raft/group-<id>/snapshots/<name>/meta.json, whose Index field is
// the last log index the snapshot covers. Raft compacts its log up to a
// snapshot (keeping some trailing entries), so a replica that starts empty
// must receive a snapshot once the first entries are gone.
func (n *Node) RaftSnapshots() (map[uint32]uint64, error) {
	groups, err := filepath.Glob(filepath.Join(n.DataDir, "raft", "group-*"))
	if err != nil {
		return nil, err
	}
	out := map[uint32]uint64{}
	for _, dir := range groups {
		id, err := strconv.ParseUint(strings.TrimPrefix(filepath.Base(dir), "group-"), 10, 32)
		if err != nil {
			continue
		}
		metas, err := filepath.Glob(filepath.Join(dir, "snapshots", "*", "meta.json"))
		if err != nil {
			return nil, err
		}
		for _, m := range metas {
			if strings.HasSuffix(filepath.Dir(m), ".tmp") {
				continue // being written
			}
			b, err := os.ReadFile(m)
			if errors.Is(err, fs.ErrNotExist) {
				continue // reaped meanwhile
			}
			if err != nil {
				return nil, err
			}
			var meta struct{ Index uint64 }
			if err := json.Unmarshal(b, &meta); err != nil {
				continue // being written
			}
			out[uint32(id)] = max(out[uint32(id)], meta.Index)
		}
	}
	return out, nil
}
