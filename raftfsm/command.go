package raftfsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/shardcache/shardcache/internal/acl"
	"github.com/shardcache/shardcache/internal/scram"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

// commandVersion is the first byte of every encoded command. A codec change that
// alters the bytes bumps it and keeps decoding the old version; the golden test in
// testdata pins the bytes of every type.
//
// Version 2 adds a codec byte before each record of a produce command (the
// compression of the producer's batch, kept with the record: shardstore
// Record.Codec). Only a produce command with a compressed record is written
// as version 2, so a node of an older build keeps applying everything else
// (uncompressed produce included) during a rolling upgrade; one that meets a
// version 2 entry stops the group (ErrNewerCommand) rather than drop codecs.
const (
	commandVersion       = 1
	commandVersionCodecs = 2
)

// CommandType is the second byte of an encoded command.
type CommandType uint8

// Command types. Data commands go to a data group's log, metadata commands to the
// metadata group's. Values are part of the log format: never renumber.
const (
	CmdProduce             CommandType = 1
	CmdCreateShards        CommandType = 2
	CmdDeleteShards        CommandType = 3
	CmdExpireTombstones    CommandType = 4
	CmdExpireSuperseded    CommandType = 5
	CmdDeleteRecordsBefore CommandType = 6
	CmdTxnMarker           CommandType = 8
	CmdExpireTxnMarkers    CommandType = 9
	CmdProduceParts        CommandType = 10
	CmdExpireProducers     CommandType = 40

	CmdCreateTopic         CommandType = 16
	CmdDeleteTopic         CommandType = 17
	CmdCreatePartitions    CommandType = 18
	CmdSetTopicConfig      CommandType = 19
	CmdAllocateProducerIDs CommandType = 20
	CmdSetClusterID        CommandType = 21
	CmdInitCluster         CommandType = 22
	CmdRegisterNode        CommandType = 23
	CmdRemoveNode          CommandType = 24
	CmdSetGroupLeader      CommandType = 25

	CmdUpsertScramCredential CommandType = 26
	CmdDeleteScramCredential CommandType = 27

	CmdCreateACLs CommandType = 28
	CmdDeleteACLs CommandType = 29

	// 30-31 are taken or reserved by other changes.

	CmdAlterTopicConfig CommandType = 32
)

var commandTypeNames = map[CommandType]string{
	CmdProduce:             "produce",
	CmdCreateShards:        "create_shards",
	CmdDeleteShards:        "delete_shards",
	CmdExpireTombstones:    "expire_tombstones",
	CmdExpireSuperseded:    "expire_superseded",
	CmdDeleteRecordsBefore: "delete_records_before",
	CmdTxnMarker:           "txn_marker",
	CmdExpireTxnMarkers:    "expire_txn_markers",
	CmdProduceParts:        "produce_parts",
	CmdExpireProducers:     "expire_producers",
	CmdCreateTopic:         "create_topic",
	CmdDeleteTopic:         "delete_topic",
	CmdCreatePartitions:    "create_partitions",
	CmdSetTopicConfig:      "set_topic_config",
	CmdAllocateProducerIDs: "allocate_producer_ids",
	CmdSetClusterID:        "set_cluster_id",
	CmdInitCluster:         "init_cluster",
	CmdRegisterNode:        "register_node",
	CmdRemoveNode:          "remove_node",
	CmdSetGroupLeader:      "set_group_leader",
	CmdAlterTopicConfig:    "alter_topic_config",

	CmdUpsertScramCredential: "upsert_scram_credential",
	CmdDeleteScramCredential: "delete_scram_credential",
	CmdCreateACLs:            "create_acls",
	CmdDeleteACLs:            "delete_acls",
}

func (t CommandType) String() string {
	if s, ok := commandTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// ErrBadCommand is wrapped by every decoding error.
var ErrBadCommand = errors.New("raftfsm: bad command")

// ErrNewerCommand is wrapped (with ErrBadCommand) by the decoding error of a
// command whose version or type this build does not know: an entry written by
// a newer shardcache. Skipping it would let this replica's state drift from
// the replicas that applied it, so the FSM stops the group instead (fsm.go).
var ErrNewerCommand = errors.New("raftfsm: command from a newer version")

// Command is one Raft log command. Which fields are used depends on Type:
//
//	CmdProduce:             Shard, Options, Producer, Records
//	CmdCreateShards:        Shards
//	CmdDeleteShards:        Shards
//	CmdExpireTombstones:    Shard, BeforeMs
//	CmdExpireSuperseded:    Shard, BeforeMs
//	CmdDeleteRecordsBefore: Shard, Offset
//	CmdTxnMarker:           Shard, Options (policy, append time), Marker
//	CmdExpireTxnMarkers:    Shard, BeforeMs
//	CmdProduceParts:        Options.AppendTimeMs, Parts (one produce batch per partition)
//	CmdExpireProducers:     Shard, BeforeMs, Options.AppendTimeMs (the proposer's clock)
//	CmdCreateTopic:         Topic (name, id, partitions, overrides)
//	CmdDeleteTopic:         Topic.Name
//	CmdCreatePartitions:    Topic.Name, Topic.Partitions (only the new ones)
//	CmdSetTopicConfig:      Topic.Name, Topic.Overrides
//	CmdAllocateProducerIDs: Count
//	CmdSetClusterID:        ClusterID (kept for logs written before CmdInitCluster)
//	CmdInitCluster:         ClusterID, DataGroups, ReplicationFactor
//	CmdRegisterNode:        Member
//	CmdRemoveNode:          NodeID
//	CmdSetGroupLeader:      Group, NodeID, Term
//	CmdAlterTopicConfig:    Topic.Name, ConfigOps (applied to the overrides in force)
//	CmdUpsertScramCredential: Scram (user, mechanism, iterations, salt, keys)
//	CmdDeleteScramCredential: Scram.User, Scram.Mechanism
//	CmdCreateACLs:          ACLs
//	CmdDeleteACLs:          ACLFilters (resolved when applied; answers [][]acl.Binding)
//
// A decoded command's byte slices (record keys, values, header values) alias the
// encoded buffer.
type Command struct {
	Type CommandType

	Shard    shardstore.ShardID
	Options  shardstore.AppendOptions
	Producer shardstore.Producer
	Records  []shardstore.Record
	Shards   []shardstore.ShardID
	BeforeMs int64
	Offset   int64
	Marker   shardstore.Marker
	Parts    []ProducePart

	Topic     topicMeta
	Count     int64
	ClusterID string

	DataGroups        int64
	ReplicationFactor int64
	Member            NodeInfo
	NodeID            int32
	Group             uint32
	Term              uint64

	ConfigOps []topicconfig.Op

	Scram ScramCredential

	ACLs       []acl.Binding
	ACLFilters []acl.Filter
}

// ProducePart is one partition's produce batch in a CmdProduceParts command:
// what CmdProduce carries, less the append time the parts share. The parts
// of one command are applied in order, each as its own Append, so one
// failing (a duplicate, a sequence or epoch error, an unknown shard) fails
// only that part.
type ProducePart struct {
	Shard              shardstore.ShardID
	Policy             shardstore.Policy
	MinCompactionLagMs int64
	Producer           shardstore.Producer
	Records            []shardstore.Record
}

// EncodeCommand appends the encoding of c to dst.
func EncodeCommand(dst []byte, c *Command) []byte {
	if c.Type == CmdProduce || c.Type == CmdProduceParts {
		if n := len(dst) + produceSize(c); cap(dst) < n {
			grown := make([]byte, len(dst), n)
			copy(grown, dst)
			dst = grown
		}
	}
	codecs := hasCodecs(c)
	if codecs {
		dst = append(dst, commandVersionCodecs, byte(c.Type))
	} else {
		dst = append(dst, commandVersion, byte(c.Type))
	}
	switch c.Type {
	case CmdProduce:
		dst = binary.AppendUvarint(dst, uint64(c.Shard))
		dst = append(dst, byte(c.Options.Policy))
		dst = binary.AppendVarint(dst, c.Options.AppendTimeMs)
		dst = binary.AppendVarint(dst, c.Options.MinCompactionLagMs)
		dst = appendProducer(dst, c.Producer)
		dst = appendRecords(dst, c.Records, codecs)
	case CmdProduceParts:
		dst = binary.AppendVarint(dst, c.Options.AppendTimeMs)
		dst = binary.AppendUvarint(dst, uint64(len(c.Parts)))
		for i := range c.Parts {
			p := &c.Parts[i]
			dst = binary.AppendUvarint(dst, uint64(p.Shard))
			dst = append(dst, byte(p.Policy))
			dst = binary.AppendVarint(dst, p.MinCompactionLagMs)
			dst = appendProducer(dst, p.Producer)
			dst = appendRecords(dst, p.Records, codecs)
		}
	case CmdCreateShards, CmdDeleteShards:
		dst = binary.AppendUvarint(dst, uint64(len(c.Shards)))
		for _, s := range c.Shards {
			dst = binary.AppendUvarint(dst, uint64(s))
		}
	case CmdExpireTombstones, CmdExpireSuperseded, CmdExpireTxnMarkers:
		dst = binary.AppendUvarint(dst, uint64(c.Shard))
		dst = binary.AppendVarint(dst, c.BeforeMs)
	case CmdDeleteRecordsBefore:
		dst = binary.AppendUvarint(dst, uint64(c.Shard))
		dst = binary.AppendVarint(dst, c.Offset)
	case CmdTxnMarker:
		dst = binary.AppendUvarint(dst, uint64(c.Shard))
		dst = append(dst, byte(c.Options.Policy))
		dst = binary.AppendVarint(dst, c.Options.AppendTimeMs)
		dst = binary.AppendVarint(dst, c.Marker.ProducerID)
		dst = binary.AppendVarint(dst, int64(c.Marker.ProducerEpoch))
		dst = appendBool(dst, c.Marker.Commit)
		dst = binary.AppendVarint(dst, int64(c.Marker.CoordinatorEpoch))
	case CmdExpireProducers:
		dst = binary.AppendUvarint(dst, uint64(c.Shard))
		dst = binary.AppendVarint(dst, c.BeforeMs)
		dst = binary.AppendVarint(dst, c.Options.AppendTimeMs)
	case CmdCreateTopic:
		dst = appendTopic(dst, &c.Topic)
	case CmdDeleteTopic:
		dst = appendString(dst, c.Topic.Name)
	case CmdCreatePartitions:
		dst = appendString(dst, c.Topic.Name)
		dst = appendPartitions(dst, c.Topic.Partitions)
	case CmdSetTopicConfig:
		dst = appendString(dst, c.Topic.Name)
		dst = appendStringMap(dst, c.Topic.Overrides)
	case CmdAllocateProducerIDs:
		dst = binary.AppendVarint(dst, c.Count)
	case CmdSetClusterID:
		dst = appendString(dst, c.ClusterID)
	case CmdInitCluster:
		dst = appendString(dst, c.ClusterID)
		dst = binary.AppendVarint(dst, c.DataGroups)
		dst = binary.AppendVarint(dst, c.ReplicationFactor)
	case CmdRegisterNode:
		dst = appendNodeInfo(dst, &c.Member)
	case CmdRemoveNode:
		dst = binary.AppendVarint(dst, int64(c.NodeID))
	case CmdSetGroupLeader:
		dst = binary.AppendUvarint(dst, uint64(c.Group))
		dst = binary.AppendVarint(dst, int64(c.NodeID))
		dst = binary.AppendUvarint(dst, c.Term)
	case CmdAlterTopicConfig:
		dst = appendString(dst, c.Topic.Name)
		dst = binary.AppendUvarint(dst, uint64(len(c.ConfigOps)))
		for _, op := range c.ConfigOps {
			dst = append(dst, byte(op.Type))
			dst = appendString(dst, op.Name)
			dst = appendString(dst, op.Value)
		}
	case CmdUpsertScramCredential:
		dst = appendScram(dst, &c.Scram)
	case CmdDeleteScramCredential:
		dst = appendString(dst, c.Scram.User)
		dst = append(dst, byte(c.Scram.Mechanism))
	case CmdCreateACLs:
		dst = binary.AppendUvarint(dst, uint64(len(c.ACLs)))
		for i := range c.ACLs {
			dst = appendACL(dst, &c.ACLs[i])
		}
	case CmdDeleteACLs:
		dst = binary.AppendUvarint(dst, uint64(len(c.ACLFilters)))
		for i := range c.ACLFilters {
			dst = appendACLFilter(dst, &c.ACLFilters[i])
		}
	}
	return dst
}

// produceSize bounds the encoded size of a produce command (CmdProduce or
// CmdProduceParts), so encoding allocates once.
func produceSize(c *Command) int {
	n := 2 + 8*binary.MaxVarintLen64 + recordsSize(c.Records)
	for i := range c.Parts {
		n += 8*binary.MaxVarintLen64 + recordsSize(c.Parts[i].Records)
	}
	return n
}

func recordsSize(recs []shardstore.Record) int {
	n := 0
	for i := range recs {
		r := &recs[i]
		n += 1 + 4*binary.MaxVarintLen64 + len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			n += 2*binary.MaxVarintLen64 + len(h.Key) + len(h.Value)
		}
	}
	return n
}

// appendProducer and appendRecords encode the producer and records of a
// produce batch (CmdProduce, and each part of CmdProduceParts).
func appendProducer(dst []byte, p shardstore.Producer) []byte {
	dst = binary.AppendVarint(dst, p.ID)
	dst = binary.AppendVarint(dst, int64(p.Epoch))
	dst = binary.AppendVarint(dst, int64(p.BaseSequence))
	return appendBool(dst, p.Transactional)
}

// hasCodecs reports whether produce command c carries a compressed record,
// so that it is written as commandVersionCodecs.
func hasCodecs(c *Command) bool {
	has := func(recs []shardstore.Record) bool {
		for i := range recs {
			if recs[i].Codec != shardstore.CodecNone {
				return true
			}
		}
		return false
	}
	switch c.Type {
	case CmdProduce:
		return has(c.Records)
	case CmdProduceParts:
		for i := range c.Parts {
			if has(c.Parts[i].Records) {
				return true
			}
		}
	}
	return false
}

// appendRecords writes recs, each with its codec first when codecs is set
// (commandVersionCodecs).
func appendRecords(dst []byte, recs []shardstore.Record, codecs bool) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(recs)))
	for i := range recs {
		r := &recs[i]
		if codecs {
			dst = append(dst, byte(r.Codec))
		}
		dst = binary.AppendVarint(dst, r.Timestamp)
		dst = appendNullable(dst, r.Key)
		dst = appendNullable(dst, r.Value)
		dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			dst = appendString(dst, h.Key)
			dst = appendNullable(dst, h.Value)
		}
	}
	return dst
}

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// appendNullable writes 0 for nil, else len+1 and the bytes.
func appendNullable(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendStringMap(dst []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		dst = appendString(dst, k)
		dst = appendString(dst, m[k])
	}
	return dst
}

func appendPartitions(dst []byte, ps []PartitionInfo) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ps)))
	for _, p := range ps {
		dst = binary.AppendVarint(dst, int64(p.Partition))
		dst = binary.AppendUvarint(dst, uint64(p.Shard))
		dst = binary.AppendUvarint(dst, uint64(p.Group))
	}
	return dst
}

// appendTopic is shared by CmdCreateTopic and the stored metadata value.
func appendTopic(dst []byte, t *topicMeta) []byte {
	dst = appendString(dst, t.Name)
	dst = append(dst, t.ID[:]...)
	dst = appendPartitions(dst, t.Partitions)
	return appendStringMap(dst, t.Overrides)
}

// DecodeCommand decodes one command. It never panics; unknown versions and
// types, short input and trailing bytes are errors wrapping ErrBadCommand.
func DecodeCommand(b []byte) (*Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(b))
	}
	if b[0] != commandVersion && b[0] != commandVersionCodecs {
		return nil, fmt.Errorf("%w: %w: unknown version %d", ErrBadCommand, ErrNewerCommand, b[0])
	}
	c := &Command{Type: CommandType(b[1])}
	d := decoder{b: b[2:], codecs: b[0] == commandVersionCodecs}
	switch c.Type {
	case CmdProduce:
		c.Shard = shardstore.ShardID(d.uvarint())
		c.Options.Policy = shardstore.Policy(d.byte())
		c.Options.AppendTimeMs = d.varint()
		c.Options.MinCompactionLagMs = d.varint()
		c.Producer = d.producer()
		c.Records = d.records()
	case CmdProduceParts:
		c.Options.AppendTimeMs = d.varint()
		n := d.count(minProducePartBytes)
		if n > 0 {
			c.Parts = make([]ProducePart, n)
		}
		for i := 0; i < n && d.err == nil; i++ {
			p := &c.Parts[i]
			p.Shard = shardstore.ShardID(d.uvarint())
			p.Policy = shardstore.Policy(d.byte())
			p.MinCompactionLagMs = d.varint()
			p.Producer = d.producer()
			p.Records = d.records()
		}
	case CmdCreateShards, CmdDeleteShards:
		n := d.count(1)
		c.Shards = make([]shardstore.ShardID, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			c.Shards = append(c.Shards, shardstore.ShardID(d.uvarint()))
		}
	case CmdExpireTombstones, CmdExpireSuperseded, CmdExpireTxnMarkers:
		c.Shard = shardstore.ShardID(d.uvarint())
		c.BeforeMs = d.varint()
	case CmdDeleteRecordsBefore:
		c.Shard = shardstore.ShardID(d.uvarint())
		c.Offset = d.varint()
	case CmdTxnMarker:
		c.Shard = shardstore.ShardID(d.uvarint())
		c.Options.Policy = shardstore.Policy(d.byte())
		c.Options.AppendTimeMs = d.varint()
		c.Marker.ProducerID = d.varintRange(0, math.MaxInt64)
		c.Marker.ProducerEpoch = int16(d.varintRange(0, math.MaxInt16))
		c.Marker.Commit = d.bool()
		c.Marker.CoordinatorEpoch = int32(d.varintRange(math.MinInt32, math.MaxInt32))
	case CmdExpireProducers:
		c.Shard = shardstore.ShardID(d.uvarint())
		c.BeforeMs = d.varint()
		c.Options.AppendTimeMs = d.varint()
	case CmdCreateTopic:
		d.topic(&c.Topic)
	case CmdDeleteTopic:
		c.Topic.Name = d.string()
	case CmdCreatePartitions:
		c.Topic.Name = d.string()
		c.Topic.Partitions = d.partitions()
	case CmdSetTopicConfig:
		c.Topic.Name = d.string()
		c.Topic.Overrides = d.stringMap()
	case CmdAllocateProducerIDs:
		c.Count = d.varint()
	case CmdSetClusterID:
		c.ClusterID = d.string()
	case CmdInitCluster:
		c.ClusterID = d.string()
		c.DataGroups = d.varint()
		c.ReplicationFactor = d.varint()
	case CmdRegisterNode:
		d.nodeInfo(&c.Member)
	case CmdRemoveNode:
		c.NodeID = int32(d.varintRange(0, math.MaxInt32))
	case CmdSetGroupLeader:
		c.Group = uint32(d.uvarintMax(math.MaxUint32))
		c.NodeID = int32(d.varintRange(0, math.MaxInt32))
		c.Term = d.uvarint()
	case CmdAlterTopicConfig:
		c.Topic.Name = d.string()
		n := d.count(3) // an op takes at least 3 bytes
		if n > 0 {
			c.ConfigOps = make([]topicconfig.Op, n)
		}
		for i := 0; i < n && d.err == nil; i++ {
			op := &c.ConfigOps[i]
			op.Type = topicconfig.OpType(int8(d.byte()))
			op.Name = d.string()
			op.Value = d.string()
		}
	case CmdUpsertScramCredential:
		d.scram(&c.Scram)
	case CmdDeleteScramCredential:
		c.Scram.User = d.string()
		c.Scram.Mechanism = scram.Mechanism(int8(d.byte()))
	case CmdCreateACLs:
		n := d.count(minACLBytes)
		if n > 0 {
			c.ACLs = make([]acl.Binding, n)
		}
		for i := 0; i < n && d.err == nil; i++ {
			d.acl(&c.ACLs[i])
		}
	case CmdDeleteACLs:
		n := d.count(minACLBytes)
		if n > 0 {
			c.ACLFilters = make([]acl.Filter, n)
		}
		for i := 0; i < n && d.err == nil; i++ {
			d.aclFilter(&c.ACLFilters[i])
		}
	default:
		return nil, fmt.Errorf("%w: %w: unknown type %d", ErrBadCommand, ErrNewerCommand, b[1])
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, c.Type, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %s: %d trailing bytes", ErrBadCommand, c.Type, len(d.b))
	}
	return c, nil
}

// decoder reads fields; after the first error every read returns zero values.
type decoder struct {
	b      []byte
	codecs bool // records carry their codec (commandVersionCodecs)
	err    error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("short or invalid %s", what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bool")
	return false
}

// uvarint and varint refuse overlong encodings (a last byte of 0 after
// continuation bytes, as 0x80 0x00 for 0). The encoders here write the
// shortest form (binary.AppendUvarint), so only damaged bytes hold one, and
// taking it would let two byte strings decode to one value: a stored ACL key
// that encodes back to another key (FuzzACLKey), which deleting its binding
// would leave behind.
func (d *decoder) uvarint() uint64 {
	// One byte, the common case (counts, short lengths), without
	// binary.Uvarint's loop; a single byte is always canonical.
	if len(d.b) > 0 && d.b[0] < 0x80 {
		v := uint64(d.b[0])
		d.b = d.b[1:]
		return v
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if len(d.b) > 0 && d.b[0] < 0x80 {
		u := uint64(d.b[0])
		d.b = d.b[1:]
		return int64(u>>1) ^ -int64(u&1)
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varintRange(lo, hi int64) int64 {
	v := d.varint()
	if v < lo || v > hi {
		d.fail("integer range")
		return 0
	}
	return v
}

func (d *decoder) uvarintMax(hi uint64) uint64 {
	v := d.uvarint()
	if v > hi {
		d.fail("integer range")
		return 0
	}
	return v
}

// count reads an element count and checks that the remaining input can hold
// that many elements of at least min bytes each, so a forged count cannot make
// the decoder allocate more than the input justifies.
func (d *decoder) count(min int) int {
	v := d.uvarint()
	if v > uint64(len(d.b)/min) {
		d.fail("count")
		return 0
	}
	return int(v)
}

func (d *decoder) bytes(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail("bytes")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) nullable() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	return d.bytes(n - 1)
}

func (d *decoder) string() string {
	return string(d.bytes(d.uvarint()))
}

// minProducePartBytes is the smallest encoding of a ProducePart: shard,
// policy, lag, the producer's three varints and bool, a record count.
const minProducePartBytes = 8

func (d *decoder) producer() shardstore.Producer {
	var p shardstore.Producer
	p.ID = d.varint()
	p.Epoch = int16(d.varintRange(math.MinInt16, math.MaxInt16))
	p.BaseSequence = int32(d.varintRange(math.MinInt32, math.MaxInt32))
	p.Transactional = d.bool()
	return p
}

func (d *decoder) records() []shardstore.Record {
	n := d.count(3) // a record takes at least 3 bytes
	if n == 0 {
		return nil
	}
	recs := make([]shardstore.Record, n)
	for i := 0; i < n && d.err == nil; i++ {
		r := &recs[i]
		if d.codecs {
			if r.Codec = shardstore.Codec(d.byte()); r.Codec > shardstore.MaxCodec {
				d.fail("record codec")
			}
		}
		r.Timestamp = d.varint()
		r.Key = d.nullable()
		r.Value = d.nullable()
		if nh := d.count(2); nh > 0 {
			r.Headers = make([]shardstore.Header, nh)
			for j := 0; j < nh && d.err == nil; j++ {
				r.Headers[j].Key = d.string()
				r.Headers[j].Value = d.nullable()
			}
		}
	}
	return recs
}

func (d *decoder) stringMap() map[string]string {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := d.string()
		m[k] = d.string()
	}
	return m
}

func (d *decoder) partitions() []PartitionInfo {
	n := d.count(3)
	ps := make([]PartitionInfo, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		var p PartitionInfo
		p.Partition = int32(d.varintRange(0, math.MaxInt32))
		p.Shard = shardstore.ShardID(d.uvarint())
		p.Group = uint32(d.uvarint())
		ps = append(ps, p)
	}
	return ps
}

func (d *decoder) topic(t *topicMeta) {
	t.Name = d.string()
	copy(t.ID[:], d.bytes(16))
	t.Partitions = d.partitions()
	t.Overrides = d.stringMap()
}
