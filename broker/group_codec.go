package broker

// The records the group coordinator keeps in __consumer_offsets. Kafka's own
// encodings are not needed (nothing but this broker reads the topic), so these
// are ours, each starting with a version so they can change:
//
//	key:    int16 type (1 offset, 2 group) | string group | offsets: string topic, int32 partition
//	offset: int16 version 2 | int64 offset | int32 leader epoch | nullable string metadata |
//	        int64 commit ms | int64 expire ms (-1: retention from the broker config) |
//	        16 bytes topic id (version 1 ends before it: no topic id)
//	group:  int16 version 1 | string protocol type | int32 generation | nullable string protocol |
//	        nullable string leader | int64 state ms | array of members:
//	        string id | nullable string instance id | string client id | string client host |
//	        int32 rebalance timeout ms | int32 session timeout ms | bytes metadata | bytes assignment
//
// A tombstone (null value) deletes an offset or a group. Integers are
// big-endian, strings and bytes carry an int16/int32 length (kbin's
// non-compact forms).

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
)

const (
	recordTypeOffset int16 = 1
	recordTypeGroup  int16 = 2

	offsetValueVersion int16 = 2
	// offsetValueV1 is the offset value before topic ids; still decoded.
	offsetValueV1     int16 = 1
	groupValueVersion int16 = 1
)

// errBadGroupRecord: a __consumer_offsets record this code cannot decode.
var errBadGroupRecord = errors.New("broker: bad __consumer_offsets record")

// offsetKey is the record key of a committed offset.
func offsetKey(group, topic string, partition int32) []byte {
	b := make([]byte, 0, 2+2+len(group)+2+len(topic)+4)
	b = kbin.AppendInt16(b, recordTypeOffset)
	b = kbin.AppendString(b, group)
	b = kbin.AppendString(b, topic)
	return kbin.AppendInt32(b, partition)
}

// groupKey is the record key of a group's metadata.
func groupKey(group string) []byte {
	b := make([]byte, 0, 4+len(group))
	b = kbin.AppendInt16(b, recordTypeGroup)
	return kbin.AppendString(b, group)
}

// decodedKey is a parsed record key.
type decodedKey struct {
	typ       int16
	group     string
	topic     string
	partition int32
}

func decodeGroupRecordKey(b []byte) (decodedKey, error) {
	r := kbin.Reader{Src: b}
	k := decodedKey{typ: r.Int16(), group: r.String()}
	switch k.typ {
	case recordTypeOffset:
		k.topic = r.String()
		k.partition = r.Int32()
	case recordTypeGroup:
	default:
		return k, fmt.Errorf("%w: key type %d", errBadGroupRecord, k.typ)
	}
	if err := r.Complete(); err != nil || len(r.Src) != 0 {
		return k, fmt.Errorf("%w: key", errBadGroupRecord)
	}
	return k, nil
}

// committedOffset is one committed offset as stored.
type committedOffset struct {
	Offset      int64
	LeaderEpoch int32
	Metadata    *string
	CommitMs    int64
	ExpireMs    int64 // -1: the broker's offsets retention applies
	// TopicID is the id of the topic the offset was committed on, so an
	// offset of a deleted topic never applies to a re-created one of the same
	// name. Zero for offsets stored before topic ids were (version 1).
	TopicID [16]byte
}

func (o committedOffset) encode() []byte {
	b := make([]byte, 0, 2+8+4+2+16+8+8+16)
	b = kbin.AppendInt16(b, offsetValueVersion)
	b = kbin.AppendInt64(b, o.Offset)
	b = kbin.AppendInt32(b, o.LeaderEpoch)
	b = kbin.AppendNullableString(b, o.Metadata)
	b = kbin.AppendInt64(b, o.CommitMs)
	b = kbin.AppendInt64(b, o.ExpireMs)
	return append(b, o.TopicID[:]...)
}

func decodeCommittedOffset(b []byte) (committedOffset, error) {
	r := kbin.Reader{Src: b}
	v := r.Int16()
	if v != offsetValueVersion && v != offsetValueV1 {
		return committedOffset{}, fmt.Errorf("%w: offset value version %d", errBadGroupRecord, v)
	}
	o := committedOffset{
		Offset:      r.Int64(),
		LeaderEpoch: r.Int32(),
		Metadata:    r.NullableString(),
		CommitMs:    r.Int64(),
		ExpireMs:    r.Int64(),
	}
	if v == offsetValueVersion {
		if len(r.Src) != len(o.TopicID) {
			return committedOffset{}, fmt.Errorf("%w: offset value topic id", errBadGroupRecord)
		}
		copy(o.TopicID[:], r.Src)
		r.Src = nil
	}
	if err := r.Complete(); err != nil {
		return committedOffset{}, fmt.Errorf("%w: offset value", errBadGroupRecord)
	}
	return o, nil
}

// storedGroup is a group's metadata as stored: what a restarted coordinator
// needs to serve the current generation (members, their assignments).
type storedGroup struct {
	ProtocolType string
	Generation   int32
	Protocol     *string
	Leader       *string
	StateMs      int64
	Members      []storedMember
}

type storedMember struct {
	ID                 string
	InstanceID         *string
	ClientID           string
	ClientHost         string
	RebalanceTimeoutMs int32
	SessionTimeoutMs   int32
	Metadata           []byte
	Assignment         []byte
}

func (g *storedGroup) encode() []byte {
	b := kbin.AppendInt16(nil, groupValueVersion)
	b = kbin.AppendString(b, g.ProtocolType)
	b = kbin.AppendInt32(b, g.Generation)
	b = kbin.AppendNullableString(b, g.Protocol)
	b = kbin.AppendNullableString(b, g.Leader)
	b = kbin.AppendInt64(b, g.StateMs)
	b = kbin.AppendArrayLen(b, len(g.Members))
	for _, m := range g.Members {
		b = kbin.AppendString(b, m.ID)
		b = kbin.AppendNullableString(b, m.InstanceID)
		b = kbin.AppendString(b, m.ClientID)
		b = kbin.AppendString(b, m.ClientHost)
		b = kbin.AppendInt32(b, m.RebalanceTimeoutMs)
		b = kbin.AppendInt32(b, m.SessionTimeoutMs)
		b = kbin.AppendBytes(b, m.Metadata)
		b = kbin.AppendBytes(b, m.Assignment)
	}
	return b
}

func decodeStoredGroup(b []byte) (*storedGroup, error) {
	r := kbin.Reader{Src: b}
	if v := r.Int16(); v != groupValueVersion {
		return nil, fmt.Errorf("%w: group value version %d", errBadGroupRecord, v)
	}
	g := &storedGroup{
		ProtocolType: r.String(),
		Generation:   r.Int32(),
		Protocol:     r.NullableString(),
		Leader:       r.NullableString(),
		StateMs:      r.Int64(),
	}
	n := r.ArrayLen()
	if n < 0 || int(n) > len(r.Src) {
		return nil, fmt.Errorf("%w: group members", errBadGroupRecord)
	}
	for i := int32(0); i < n && r.Ok(); i++ {
		g.Members = append(g.Members, storedMember{
			ID:                 r.String(),
			InstanceID:         r.NullableString(),
			ClientID:           r.String(),
			ClientHost:         r.String(),
			RebalanceTimeoutMs: r.Int32(),
			SessionTimeoutMs:   r.Int32(),
			Metadata:           r.Bytes(),
			Assignment:         r.Bytes(),
		})
	}
	if err := r.Complete(); err != nil {
		return nil, fmt.Errorf("%w: group value", errBadGroupRecord)
	}
	return g, nil
}
