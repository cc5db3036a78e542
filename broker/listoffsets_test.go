package broker

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func listOffsetsOne(version int16, topic string, partition int32, ts int64) *kmsg.ListOffsetsRequest {
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = version
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition = partition
	rp.Timestamp = ts
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func TestListOffsetsGappyLog(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "times", 1, nil)
	cl := tb.client(t, kgo.DefaultProduceTopic("times"))
	at := func(key string, ms int64) *kgo.Record {
		return &kgo.Record{Key: []byte(key), Value: []byte("v"), Timestamp: time.UnixMilli(ms)}
	}
	// Offsets 0-3 at 100..400, then b again at 500: offset 1 (ts 200) is gone.
	for _, r := range []*kgo.Record{at("a", 100), at("b", 200), at("c", 300), at("d", 400), at("b", 500)} {
		if err := cl.ProduceSync(dataCtx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := tb.admin(t)
	tests := []struct {
		ms, offset, ts int64
	}{
		{0, 0, 100},
		{100, 0, 100},
		{150, 2, 300}, // offset 1 was compacted away
		{200, 2, 300},
		{401, 4, 500},
		{500, 4, 500},
	}
	for _, tt := range tests {
		l, err := adm.ListOffsetsAfterMilli(dataCtx(t), tt.ms, "times")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := l.Lookup("times", 0)
		if o.Err != nil || o.Offset != tt.offset || o.Timestamp != tt.ts {
			t.Fatalf("after %d ms: %+v, want offset %d at %d", tt.ms, o, tt.offset, tt.ts)
		}
	}
	// None at or after 501: Kafka answers -1/-1 (kadm turns that into the end).
	p := rawRequest[*kmsg.ListOffsetsResponse](t, cl, listOffsetsOne(7, "times", 0, 501)).Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.Offset != -1 || p.Timestamp != -1 {
		t.Fatalf("after the last timestamp: %+v", p)
	}

	start, err := adm.ListStartOffsets(dataCtx(t), "times")
	if err != nil {
		t.Fatal(err)
	}
	end, err := adm.ListEndOffsets(dataCtx(t), "times")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := start.Lookup("times", 0); s.Offset != 0 {
		t.Fatalf("earliest %+v", s)
	}
	if e, _ := end.Lookup("times", 0); e.Offset != 5 {
		t.Fatalf("latest %+v", e)
	}

	ti, _ := tb.Node.Topic("times")
	epoch := tb.Node.LeaderEpoch(ti.Partitions[0].Group)
	cases := []struct {
		name                string
		version             int16
		ts                  int64
		current             int32
		code                *kerr.Error
		offset, timestamp   int64
		leaderEpochAnswered bool
	}{
		{"v1 earliest", 1, -2, -1, nil, 0, -1, false},
		{"v1 latest", 1, -1, -1, nil, 5, -1, false},
		{"v7 max timestamp", 7, -3, -1, nil, 4, 500, true},
		{"v4 latest with epoch", 4, -1, epoch, nil, 5, -1, true},
		{"newer epoch", 4, -1, epoch + 1, kerr.UnknownLeaderEpoch, -1, -1, false},
		{"older epoch", 4, -1, epoch - 1, kerr.FencedLeaderEpoch, -1, -1, false},
		{"bad timestamp", 7, -7, -1, kerr.InvalidRequest, -1, -1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := listOffsetsOne(c.version, "times", 0, c.ts)
			req.Topics[0].Partitions[0].CurrentLeaderEpoch = c.current
			p := rawRequest[*kmsg.ListOffsetsResponse](t, cl, req).Topics[0].Partitions[0]
			want := int16(0)
			if c.code != nil {
				want = c.code.Code
			}
			if p.ErrorCode != want || p.Offset != c.offset || p.Timestamp != c.timestamp {
				t.Fatalf("answer %+v (%v)", p, kerr.ErrorForCode(p.ErrorCode))
			}
			if c.leaderEpochAnswered && p.LeaderEpoch != epoch {
				t.Fatalf("leader epoch %d, want %d", p.LeaderEpoch, epoch)
			}
		})
	}
}

func TestListOffsetsUnknown(t *testing.T) {
	tb := newTestBroker(t)
	p := directRequest[*kmsg.ListOffsetsResponse](t, tb.Addr, listOffsetsOne(7, "absent", 0, -1)).Topics[0].Partitions[0]
	if p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("answer %+v", p)
	}
	if _, ok := tb.Node.Topic("absent"); ok {
		t.Fatal("ListOffsets created a topic")
	}
}

// TestListOffsetsMaxTimestampNeverNamesCompactedAwayOffset pins issue 9:
// ListOffsets -3 (KIP-734) answered the record with the largest timestamp ever
// appended, even after compaction had taken it, so a client seeking there
// landed on an offset that no longer exists. Kafka answers from the records
// the log still holds: the first one with the largest timestamp, and -1/-1
// when it holds none.
func TestListOffsetsMaxTimestampNeverNamesCompactedAwayOffset(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "maxts", 1, nil)
	cl := tb.client(t, kgo.DefaultProduceTopic("maxts"))
	at := func(key string, ms int64, value []byte) *kgo.Record {
		return &kgo.Record{Key: []byte(key), Value: value, Timestamp: time.UnixMilli(ms)}
	}
	produce := func(rs ...*kgo.Record) {
		t.Helper()
		for _, r := range rs {
			if err := cl.ProduceSync(dataCtx(t), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	maxTimestamp := func() (int64, int64) {
		t.Helper()
		p := rawRequest[*kmsg.ListOffsetsResponse](t, cl, listOffsetsOne(7, "maxts", 0, -3)).Topics[0].Partitions[0]
		if p.ErrorCode != 0 {
			t.Fatalf("max timestamp: %v", kerr.ErrorForCode(p.ErrorCode))
		}
		return p.Offset, p.Timestamp
	}
	v := []byte("v")

	// b at 5000 (offset 1) is replaced by b at 3000 (offset 3).
	produce(at("a", 1000, v), at("b", 5000, v), at("c", 2000, v), at("b", 3000, v))
	if off, ts := maxTimestamp(); off != 3 || ts != 3000 {
		t.Fatalf("after compaction: offset %d at %d, want offset 3 at 3000 (offset 1 is gone)", off, ts)
	}
	// Equal timestamps: the first offset, as Kafka's batch search finds it.
	produce(at("d", 3000, v))
	if off, ts := maxTimestamp(); off != 3 || ts != 3000 {
		t.Fatalf("with a tie: offset %d at %d, want offset 3 at 3000", off, ts)
	}
	// Every key deleted and the tombstones expired: nothing is left.
	produce(at("a", 100, nil), at("b", 100, nil), at("c", 100, nil), at("d", 100, nil))
	if off, ts := maxTimestamp(); off != 5 || ts != 100 {
		t.Fatalf("tombstones only: offset %d at %d, want the first tombstone (5 at 100)", off, ts)
	}
	if err := tb.Node.ExpireTombstones(dataCtx(t), "maxts", 0, time.Now().Add(time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if off, ts := maxTimestamp(); off != -1 || ts != -1 {
		t.Fatalf("nothing readable: offset %d at %d, want -1/-1", off, ts)
	}
}
