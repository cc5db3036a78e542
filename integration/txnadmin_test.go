package integration

// Transaction admin through the binary: Kafka's kafka-transactions.sh (list,
// describe, describe-producers, find-hanging, abort) checked on the output a
// user reads, and commit/abort markers of compacted topics expiring after
// delete.retention.ms while consumers of both isolation levels read the
// right data.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// toolTable parses the whitespace-aligned table kafka-transactions.sh
// prints: one map per row, by header name.
func toolTable(t testing.TB, out string) []map[string]string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	header := strings.Fields(lines[0])
	var rows []map[string]string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != len(header) {
			t.Fatalf("row %q does not match header %q", l, lines[0])
		}
		row := map[string]string{}
		for i, h := range header {
			row[h] = f[i]
		}
		rows = append(rows, row)
	}
	return rows
}

// rowWith returns the rows whose column col is val.
func rowsWith(rows []map[string]string, col, val string) []map[string]string {
	var out []map[string]string
	for _, r := range rows {
		if r[col] == val {
			out = append(out, r)
		}
	}
	return out
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// hangingBatch writes one transactional record to partition 0 of topic from
// a producer id that no transaction coordinator knows (an idempotent
// producer's id, a made-up transactional id): the partition then holds an
// open transaction that nothing will ever end, what Kafka calls a hanging
// transaction. The broker must run with --transaction-partition-verification
// off, as Kafka's check would refuse the batch. It returns the producer id
// and the record's offset.
func hangingBatch(t testing.TB, cl *kgo.Client, topic, key, value string) (int64, int64) {
	t.Helper()
	pid, epoch := rawInitTxn(t, cl, "")
	p := rawTxnProduce(t, cl, "never-initialized", topic, 0, txnRecordBatch(pid, epoch, 0, key, value))
	if p.ErrorCode != 0 {
		t.Fatalf("produce: error %d", p.ErrorCode)
	}
	return pid, p.BaseOffset
}

// txnRecordBatch is one record key=value in a RecordBatch v2 with the
// transactional attribute, from producer pid at epoch and sequence seq.
func txnRecordBatch(pid int64, epoch int16, seq int32, key, value string) []byte {
	var rec []byte
	rec = append(rec, 0)              // attributes
	rec = binary.AppendVarint(rec, 0) // timestamp delta
	rec = binary.AppendVarint(rec, 0) // offset delta
	rec = binary.AppendVarint(rec, int64(len(key)))
	rec = append(rec, key...)
	rec = binary.AppendVarint(rec, int64(len(value)))
	rec = append(rec, value...)
	rec = binary.AppendVarint(rec, 0) // headers
	recs := append(binary.AppendVarint(nil, int64(len(rec))), rec...)
	now := time.Now().UnixMilli()
	b := make([]byte, 0, 61+len(recs))
	b = binary.BigEndian.AppendUint64(b, 0)    // base offset
	b = binary.BigEndian.AppendUint32(b, 0)    // length, below
	b = binary.BigEndian.AppendUint32(b, 0)    // partition leader epoch
	b = append(b, 2)                           // magic
	b = binary.BigEndian.AppendUint32(b, 0)    // crc, below
	b = binary.BigEndian.AppendUint16(b, 0x10) // transactional
	b = binary.BigEndian.AppendUint32(b, 0)    // last offset delta
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, uint64(pid))
	b = binary.BigEndian.AppendUint16(b, uint16(epoch))
	b = binary.BigEndian.AppendUint32(b, uint32(seq))
	b = binary.BigEndian.AppendUint32(b, 1) // records
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// rawTxnProduce sends batch to one partition of topic in a Produce v9
// request naming transactional id txnID, and returns the partition's answer.
func rawTxnProduce(t testing.TB, cl kmsg.Requestor, txnID, topic string, partition int32, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = -1
	req.TimeoutMillis = 30000
	req.TransactionID = kmsg.StringPtr(txnID)
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce answered %+v", resp)
	}
	return resp.Topics[0].Partitions[0]
}

// TestTxnTools: kafka-transactions.sh from Apache Kafka's tools against the
// binary. list and describe show a committed and an open transaction;
// describe-producers shows the open one's first offset; find-hanging finds a
// transaction no coordinator knows and leaves the live open one alone; abort
// --start-offset ends the hanging one, after which read_committed readers
// reach the end and the live transaction still commits.
func TestTxnTools(t *testing.T) {
	b := startBroker(t, "--transaction-partition-verification=false") // for hangingBatch
	k := requireKafkaTools(t, b)
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 1, nil)
	txnProduce(t, txnClient(t, b, "tools-done", topic), true, true, "a", "1")
	live := txnClient(t, b, "tools-live", topic)
	txnProduce(t, live, false, false, "b", "2") // open, offsets 2
	hangPID, hangOffset := hangingBatch(t, b.Client(t), topic, "c", "hanging")

	// list: both transactional ids with their states.
	var rows []map[string]string
	waitFor(t, opTimeout, 200*time.Millisecond, "tools-done CompleteCommit", func() error {
		rows = toolTable(t, k.ok(t, "", "kafka-transactions", k.with("list")...))
		if r := rowsWith(rows, "TransactionalId", "tools-done"); len(r) != 1 || r[0]["TransactionState"] != "CompleteCommit" {
			return fmt.Errorf("tools-done rows %v", r)
		}
		return nil
	})
	liveRows := rowsWith(rows, "TransactionalId", "tools-live")
	if len(liveRows) != 1 || liveRows[0]["TransactionState"] != "Ongoing" {
		t.Fatalf("list: tools-live rows %v in %v", liveRows, rows)
	}
	livePID := liveRows[0]["ProducerId"]
	// The filters of ListTransactions v1 and v2: a pattern the whole id
	// matches, and a duration no transaction has run for yet.
	rows = toolTable(t, k.ok(t, "", "kafka-transactions", k.with("list", "--transactional-id-pattern", "tools-l.*")...))
	if len(rows) != 1 || rows[0]["TransactionalId"] != "tools-live" {
		t.Fatalf("list --transactional-id-pattern: %v", rows)
	}
	if rows = toolTable(t, k.ok(t, "", "kafka-transactions", k.with("list", "--duration-filter", "3600000")...)); len(rows) != 0 {
		t.Fatalf("list --duration-filter 1h: %v", rows)
	}

	// describe: the open transaction's state, timeout and partition.
	desc := toolTable(t, k.ok(t, "", "kafka-transactions", k.with("describe", "--transactional-id", "tools-live")...))
	if len(desc) != 1 || desc[0]["TransactionState"] != "Ongoing" || desc[0]["ProducerId"] != livePID ||
		desc[0]["TransactionTimeoutMs"] != "60000" || desc[0]["TopicPartitions"] != topic+"-0" {
		t.Fatalf("describe tools-live: %v", desc)
	}
	if stdout, stderr, err := k.run(t, "", "kafka-transactions", k.with("describe", "--transactional-id", "nobody")...); err == nil ||
		!strings.Contains(stdout+stderr, "the ID could not be found") {
		t.Fatalf("describe of an unknown id: %v %s %s", err, stdout, stderr)
	}

	// describe-producers: each open transaction's first offset.
	prods := toolTable(t, k.ok(t, "", "kafka-transactions", k.with("describe-producers", "--topic", topic, "--partition", "0")...))
	if r := rowsWith(prods, "ProducerId", livePID); len(r) != 1 || r[0]["CurrentTransactionStartOffset"] != "2" {
		t.Fatalf("describe-producers: live producer %v in %v", r, prods)
	}
	hang := strconv.FormatInt(hangPID, 10)
	if r := rowsWith(prods, "ProducerId", hang); len(r) != 1 || r[0]["CurrentTransactionStartOffset"] != strconv.FormatInt(hangOffset, 10) {
		t.Fatalf("describe-producers: hanging producer %v in %v", r, prods)
	}

	// find-hanging: only the transaction no coordinator knows.
	found := toolTable(t, k.ok(t, "", "kafka-transactions", k.with("find-hanging", "--topic", topic, "--max-transaction-timeout", "0")...))
	if len(found) != 1 || found[0]["ProducerId"] != hang || found[0]["Topic"] != topic || found[0]["Partition"] != "0" ||
		found[0]["StartOffset"] != strconv.FormatInt(hangOffset, 10) {
		t.Fatalf("find-hanging: %v, want producer %s at %d only", found, hang, hangOffset)
	}

	// abort --start-offset: the hanging transaction ends.
	k.ok(t, "", "kafka-transactions", k.with("abort", "--topic", topic, "--partition", "0",
		"--start-offset", strconv.FormatInt(hangOffset, 10))...)
	prods = toolTable(t, k.ok(t, "", "kafka-transactions", k.with("describe-producers", "--topic", topic, "--partition", "0")...))
	if r := rowsWith(prods, "ProducerId", hang); len(r) != 1 || r[0]["CurrentTransactionStartOffset"] != "None" && r[0]["CurrentTransactionStartOffset"] != "-1" {
		t.Fatalf("describe-producers after the abort: %v", r)
	}
	if out := k.ok(t, "", "kafka-transactions", k.with("find-hanging", "--topic", topic, "--max-transaction-timeout", "0")...); len(toolTable(t, out)) != 0 {
		t.Fatalf("find-hanging after the abort:\n%s", out)
	}
	// The live transaction commits; read_committed reaches the end without
	// the aborted record.
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := live.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	seen := readCommitted(t, b, topic, map[string]string{"a": "1", "b": "2"})
	if _, ok := seen["c"]; ok {
		t.Fatalf("read_committed saw the aborted record: %v", seen)
	}
}

// topicLiveRecords reads a topic's live-record count from /v1/status.
func topicLiveRecords(t testing.TB, b *testBroker, topic string) (records, keys int64) {
	t.Helper()
	resp, err := http.Get("http://" + b.HTTPAddr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Topics []struct {
			Name        string `json:"name"`
			LiveRecords int64  `json:"live_records"`
			LiveKeys    int64  `json:"live_keys"`
		} `json:"topics"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, tp := range st.Topics {
		if tp.Name == topic {
			return tp.LiveRecords, tp.LiveKeys
		}
	}
	t.Fatalf("/v1/status has no topic %s", topic)
	return 0, 0
}

// TestTxnMarkerExpiry: many small transactions over a few keys of a
// compacted topic (Flink's one commit per checkpoint) leave a marker each;
// with delete.retention.ms short the compaction loop removes them, so the
// live-record count comes back to the number of keys and stays bounded as
// more transactions come, while a read_committed and a read_uncommitted
// consumer from the start each see exactly every key's last committed value
// at increasing offsets and reach the high watermark.
func TestTxnMarkerExpiry(t *testing.T) {
	b := startBroker(t) // --compaction-interval 100ms
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 1, map[string]string{"delete.retention.ms": "100"})
	p := txnClient(t, b, "expiry", topic)
	const keys, rounds, perRound = 4, 3, 40
	want := map[string]string{}
	bound := int64(keys + perRound) // at most one round's markers waiting
	for round := range rounds {
		for i := range perRound {
			n := round*perRound + i
			key, value := fmt.Sprintf("k%d", n%keys), fmt.Sprintf("v%d", n)
			commit := n%7 != 3
			txnProduce(t, p, true, commit, key, value)
			if commit {
				want[key] = value
			}
			// The previous round's markers are gone (below), so at most this
			// round's are left besides one record per key.
			if i%10 == 9 {
				if recs, _ := topicLiveRecords(t, b, topic); recs > bound {
					t.Fatalf("round %d: %d live records, bound %d", round, recs, bound)
				}
			}
		}
		waitFor(t, opTimeout, 100*time.Millisecond, "markers expired", func() error {
			if recs, ks := topicLiveRecords(t, b, topic); recs != keys || ks != keys {
				return fmt.Errorf("round %d: %d live records, %d keys; want %d each", round, recs, ks, keys)
			}
			return nil
		})
	}
	end := endOffsets(t, b.Admin(t), topic)[0]
	if end != 2*rounds*perRound {
		t.Fatalf("high watermark %d, want %d (offsets stay put)", end, 2*rounds*perRound)
	}
	for _, iso := range []kgo.IsolationLevel{kgo.ReadCommitted(), kgo.ReadUncommitted()} {
		cl := b.Client(t, kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords(),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
			kgo.FetchMaxWait(200*time.Millisecond))
		got := map[string]string{}
		var offsets []int64
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		pos := int64(0)
		for pos < end {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("%v: reached %d of %d; got %v", iso, pos, end, got)
			}
			fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
			fs.EachPartition(func(fp kgo.FetchTopicPartition) {
				for _, r := range fp.Records {
					if r.Attrs.IsControl() {
						t.Fatalf("%v: a control record at %d survived expiry", iso, r.Offset)
					}
					got[string(r.Key)] = string(r.Value)
					offsets = append(offsets, r.Offset)
					pos = max(pos, r.Offset+1)
				}
				if fp.HighWatermark > 0 && fp.LastStableOffset == fp.HighWatermark {
					pos = max(pos, fp.HighWatermark)
				}
			})
		}
		cancel()
		cl.Close()
		if !slices.IsSorted(offsets) || len(got) != keys {
			t.Fatalf("%v: offsets %v, values %v", iso, offsets, got)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%v: %s=%s, want %s (all %v)", iso, k, got[k], v, got)
			}
		}
	}
}
