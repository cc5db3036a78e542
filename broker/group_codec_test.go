package broker

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
)

func TestGroupRecordCodecRoundTrip(t *testing.T) {
	meta := "checkpoint-1"
	inst := "i-1"
	proto := "range"
	leader := "m-1"
	tests := []struct {
		name string
		key  []byte
		want decodedKey
	}{
		{"offset", offsetKey("g", "orders", 3), decodedKey{typ: recordTypeOffset, group: "g", topic: "orders", partition: 3}},
		{"group", groupKey("g"), decodedKey{typ: recordTypeGroup, group: "g"}},
		{"empty group name", groupKey(""), decodedKey{typ: recordTypeGroup}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeGroupRecordKey(tt.key)
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	o := committedOffset{Offset: 42, LeaderEpoch: 7, Metadata: &meta, CommitMs: 1000, ExpireMs: -1, TopicID: [16]byte{1, 2, 3}}
	if got, err := decodeCommittedOffset(o.encode()); err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("offset round trip: %+v %v", got, err)
	}
	// Version 1 (before topic ids) still decodes, with a zero topic id.
	v1 := append(kbin.AppendInt16(nil, offsetValueV1), o.encode()[2:len(o.encode())-16]...)
	want := o
	want.TopicID = [16]byte{}
	if got, err := decodeCommittedOffset(v1); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("version 1 offset: %+v %v", got, err)
	}
	if _, err := decodeCommittedOffset(o.encode()[:len(o.encode())-1]); err == nil {
		t.Fatal("short topic id decoded")
	}
	sg := &storedGroup{ProtocolType: "consumer", Generation: 5, Protocol: &proto, Leader: &leader, StateMs: 99,
		Members: []storedMember{{ID: "m-1", InstanceID: &inst, ClientID: "c", ClientHost: "/127.0.0.1",
			RebalanceTimeoutMs: 1, SessionTimeoutMs: 2, Metadata: []byte{1}, Assignment: []byte{2}}}}
	if got, err := decodeStoredGroup(sg.encode()); err != nil || !reflect.DeepEqual(got, sg) {
		t.Fatalf("group round trip: %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {0}, {0, 9, 0, 0}, append(groupKey("g"), 1)} {
		if _, err := decodeGroupRecordKey(bad); err == nil {
			t.Errorf("key %x decoded", bad)
		}
	}
}

// FuzzGroupRecord: the __consumer_offsets decoders never panic, and what
// they accept re-encodes to the same bytes.
func FuzzGroupRecord(f *testing.F) {
	meta := "m"
	f.Add(offsetKey("g", "t", 1), committedOffset{Offset: 1, Metadata: &meta}.encode())
	f.Add(groupKey("g"), (&storedGroup{ProtocolType: "consumer", Members: []storedMember{{ID: "x"}}}).encode())
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0, 1, 0xff, 0xff}, []byte{0, 1, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		if k, err := decodeGroupRecordKey(key); err == nil {
			var again []byte
			if k.typ == recordTypeOffset {
				again = offsetKey(k.group, k.topic, k.partition)
			} else {
				again = groupKey(k.group)
			}
			if !bytes.Equal(again, key) {
				t.Fatalf("key %x re-encodes to %x", key, again)
			}
		}
		// Version 2 values re-encode to the same bytes (version 1 values
		// re-encode as version 2).
		if o, err := decodeCommittedOffset(value); err == nil && value[1] == byte(offsetValueVersion) && !bytes.Equal(o.encode(), value) {
			t.Fatalf("offset %x re-encodes to %x", value, o.encode())
		}
		_, _ = decodeStoredGroup(value)
	})
}
