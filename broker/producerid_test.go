package broker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestInitProducerID(t *testing.T) {
	tb := newTestBroker(t)
	cl := tb.client(t)
	seen := map[int64]bool{}
	for _, v := range []int16{0, 2, 4} {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version = v
		req.TransactionTimeoutMillis = 3_600_000 // Flink's hour: ignored without a transactional id
		resp := rawRequest[*kmsg.InitProducerIDResponse](t, cl, req)
		if resp.ErrorCode != 0 || resp.ProducerID < 0 || resp.ProducerEpoch != 0 || seen[resp.ProducerID] {
			t.Fatalf("v%d: %+v", v, resp)
		}
		seen[resp.ProducerID] = true
	}

	// KIP-360: a producer that already has an id gets a fresh one.
	var old int64
	for id := range seen {
		old = id
	}
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = 4
	req.ProducerID = old
	req.ProducerEpoch = 0
	resp := rawRequest[*kmsg.InitProducerIDResponse](t, cl, req)
	if resp.ErrorCode != 0 || resp.ProducerID < 0 || seen[resp.ProducerID] || resp.ProducerEpoch != 0 {
		t.Fatalf("KIP-360 re-init: %+v", resp)
	}

	txn := "flink-sink-0"
	req = kmsg.NewPtrInitProducerIDRequest()
	req.Version = 4
	req.TransactionalID = &txn
	req.TransactionTimeoutMillis = 60_000
	resp = rawRequest[*kmsg.InitProducerIDResponse](t, cl, req)
	if resp.ErrorCode != 0 || resp.ProducerID < 0 || seen[resp.ProducerID] || resp.ProducerEpoch != 0 {
		t.Fatalf("transactional id: %+v (%v)", resp, kerr.ErrorForCode(resp.ErrorCode))
	}
}
