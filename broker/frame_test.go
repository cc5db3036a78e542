package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// frameOf encodes req as a client would, without the 4-byte size prefix.
func frameOf(t testing.TB, req kmsg.Request, version int16, clientID *string, corr int32) []byte {
	t.Helper()
	req.SetVersion(version)
	var opts []kmsg.RequestFormatterOpt
	if clientID != nil {
		opts = append(opts, kmsg.FormatterClientID(*clientID))
	}
	b := kmsg.NewRequestFormatter(opts...).AppendRequest(nil, req, corr)
	return b[4:]
}

func metadataReq(topics ...string) *kmsg.MetadataRequest {
	r := kmsg.NewPtrMetadataRequest()
	for _, name := range topics {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(name)
		r.Topics = append(r.Topics, t)
	}
	return r
}

func TestParseRequest(t *testing.T) {
	id := "cli-1"
	apiV3 := kmsg.NewPtrApiVersionsRequest()
	apiV3.ClientSoftwareName, apiV3.ClientSoftwareVersion = "test", "1.0"
	valid12 := frameOf(t, metadataReq("a", "b"), 12, &id, 7)

	tests := []struct {
		name    string
		frame   []byte
		wantErr error
		// checked when wantErr is nil
		key, version  int16
		corr          int32
		clientID      string
		unsupported   bool
		checkMetadata func(*testing.T, *kmsg.MetadataRequest)
	}{
		{name: "api versions v3 flexible header", frame: frameOf(t, apiV3, 3, &id, 1),
			key: 18, version: 3, corr: 1, clientID: id},
		{name: "api versions v0", frame: frameOf(t, kmsg.NewPtrApiVersionsRequest(), 0, nil, 2),
			key: 18, version: 0, corr: 2},
		{name: "metadata v12 with topics", frame: valid12, key: 3, version: 12, corr: 7, clientID: id,
			checkMetadata: func(t *testing.T, r *kmsg.MetadataRequest) {
				if len(r.Topics) != 2 || *r.Topics[0].Topic != "a" || *r.Topics[1].Topic != "b" {
					t.Fatalf("topics = %+v", r.Topics)
				}
			}},
		{name: "metadata v1 null client id", frame: frameOf(t, metadataReq("x"), 1, nil, 3), key: 3, version: 1, corr: 3},
		{name: "valid then garbage is tolerated", frame: append(append([]byte{}, valid12...), 0xde, 0xad),
			key: 3, version: 12, corr: 7, clientID: id},
		{name: "api versions above max", frame: []byte{0, 18, 0, 99, 0, 0, 0, 9},
			key: 18, version: 99, corr: 9, unsupported: true},
		{name: "empty", frame: nil, wantErr: errShortHeader},
		{name: "short header", frame: []byte{0, 3, 0, 1, 0}, wantErr: errShortHeader},
		{name: "unknown key", frame: []byte{0, 200, 0, 0, 0, 0, 0, 1, 255, 255}, wantErr: errUnknownAPIKey},
		{name: "negative key", frame: []byte{255, 255, 0, 0, 0, 0, 0, 1, 255, 255}, wantErr: errUnknownAPIKey},
		{name: "metadata v0 below min", frame: frameOf(t, metadataReq("x"), 0, nil, 1), wantErr: errUnsupportedVersion},
		{name: "metadata v13 above max", frame: frameOf(t, metadataReq("x"), 13, nil, 1), wantErr: errUnsupportedVersion},
		{name: "api versions negative version", frame: []byte{0, 18, 255, 255, 0, 0, 0, 1, 255, 255}, wantErr: errUnsupportedVersion},
		{name: "truncated client id", frame: []byte{0, 3, 0, 1, 0, 0, 0, 1, 0, 10, 'a'}, wantErr: errShortHeader},
		{name: "truncated body", frame: valid12[:len(valid12)-3], wantErr: errBadBody},
		{name: "garbage body", frame: append([]byte{0, 3, 0, 5, 0, 0, 0, 1, 255, 255}, 0x7f, 0xff, 0xff, 0xff), wantErr: errBadBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rq, err := parseRequest(tt.frame, 1<<30)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if rq.key != tt.key || rq.version != tt.version || rq.correlationID != tt.corr ||
				rq.clientID != tt.clientID || rq.unsupportedVersion != tt.unsupported {
				t.Fatalf("got %+v", rq)
			}
			if tt.unsupported {
				if rq.body != nil {
					t.Fatal("body parsed for an unsupported version")
				}
				return
			}
			if rq.body.Key() != tt.key || rq.body.GetVersion() != tt.version {
				t.Fatalf("body key %d v%d", rq.body.Key(), rq.body.GetVersion())
			}
			if tt.checkMetadata != nil {
				tt.checkMetadata(t, rq.body.(*kmsg.MetadataRequest))
			}
		})
	}
}

func TestCheckFrameSize(t *testing.T) {
	tests := []struct {
		size, limit int32
		ok          bool
	}{
		{0, 1024, false},
		{-1, 1024, false},
		{-1 << 31, 1024, false},
		{7, 1024, false}, // shorter than the fixed header
		{8, 1024, true},
		{1024, 1024, true},
		{1025, 1024, false},
		{1<<31 - 1, 100 << 20, false},
	}
	for _, tt := range tests {
		err := checkFrameSize(tt.size, tt.limit)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, errFrameSize)) {
			t.Errorf("checkFrameSize(%d, %d) = %v, want ok=%v", tt.size, tt.limit, err, tt.ok)
		}
	}
}

func TestAppendResponse(t *testing.T) {
	tests := []struct {
		name    string
		key     int16
		resp    kmsg.Response
		wantTag bool
	}{
		{"api versions v3 keeps header v0", 18, &kmsg.ApiVersionsResponse{Version: 3}, false},
		{"metadata v12 flexible header", 3, &kmsg.MetadataResponse{Version: 12}, true},
		{"metadata v1 header v0", 3, &kmsg.MetadataResponse{Version: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("xx")
			out := appendResponse(append([]byte{}, prefix...), tt.key, 42, tt.resp)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatal("dst prefix lost")
			}
			out = out[len(prefix):]
			if got := int(binary.BigEndian.Uint32(out)); got != len(out)-4 {
				t.Fatalf("size %d, frame has %d bytes", got, len(out)-4)
			}
			if corr := int32(binary.BigEndian.Uint32(out[4:])); corr != 42 {
				t.Fatalf("correlation id %d", corr)
			}
			body := out[8:]
			if tt.wantTag {
				if body[0] != 0 {
					t.Fatalf("tag byte %d", body[0])
				}
				body = body[1:]
			}
			back := kmsg.ResponseForKey(tt.key)
			back.SetVersion(tt.resp.GetVersion())
			if err := back.ReadFrom(body); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(back.AppendTo(nil), body) {
				t.Fatal("body does not round-trip")
			}
		})
	}
}

// FuzzParseRequest checks that no frame panics the parser and that a frame
// it accepts holds a body of the announced key and version that encodes and
// decodes again.
func FuzzParseRequest(f *testing.F) {
	id := "fuzz"
	valid := frameOf(f, metadataReq("t1", "t2"), 12, &id, 5)
	f.Add([]byte{})                         // empty
	f.Add([]byte{0, 3, 0})                  // short
	f.Add([]byte{0, 18, 0, 99, 0, 0, 0, 1}) // api versions above max
	f.Add(valid)
	f.Add(append(append([]byte{}, valid...), 0xff, 0xff, 0xff, 0xff)) // valid then garbage
	f.Add(frameOf(f, kmsg.NewPtrApiVersionsRequest(), 3, &id, 1))
	f.Add(frameOf(f, kmsg.NewPtrCreateTopicsRequest(), 7, nil, 1))
	// The tools' APIs: a nullable struct (the cursor), a null array, nested arrays.
	dtp := kmsg.NewPtrDescribeTopicPartitionsRequest()
	dtp.Topics = []kmsg.DescribeTopicPartitionsRequestTopic{{Topic: "t1"}}
	dtp.Cursor = &kmsg.DescribeTopicPartitionsRequestCursor{Topic: "t1", Partition: 3}
	f.Add(frameOf(f, dtp, 0, &id, 1))
	f.Add(frameOf(f, kmsg.NewPtrDescribeLogDirsRequest(), 4, &id, 1))
	f.Add(frameOf(f, deleteRecordsOne("t1", 0, -1), 2, &id, 1))
	f.Add(frameOf(f, kmsg.NewPtrDescribeQuorumRequest(), 2, &id, 1))
	maximal := append([]byte{0, 3, 0, 12, 0, 0, 0, 1, 0x7f, 0xff}, bytes.Repeat([]byte{0xff}, 4096)...)
	f.Add(maximal) // maximal lengths everywhere
	f.Fuzz(func(t *testing.T, frame []byte) {
		rq, err := parseRequest(frame, 64<<20)
		if err != nil || rq.unsupportedVersion {
			return
		}
		if rq.body == nil || rq.body.Key() != rq.key || rq.body.GetVersion() != rq.version {
			t.Fatalf("accepted frame with body %v for key %d v%d", rq.body, rq.key, rq.version)
		}
		enc := rq.body.AppendTo(nil)
		again := kmsg.RequestForKey(rq.key)
		again.SetVersion(rq.version)
		if err := again.ReadFrom(enc); err != nil {
			t.Fatalf("re-encoded body does not decode: %v", err)
		}
	})
}

// TestResponseSizeHintCoversFetch checks that a fetch response, at every
// version, fits in the buffer its hint sizes: the hint exists so that
// appendResponse never grows a large fetch's buffer.
func TestResponseSizeHintCoversFetch(t *testing.T) {
	build := func(topics, parts, batchBytes, aborted int) *kmsg.FetchResponse {
		r := kmsg.NewPtrFetchResponse()
		r.SessionID = 1 << 30
		for ti := range topics {
			ft := kmsg.NewFetchResponseTopic()
			ft.Topic = "topic-with-a-long-name-" + string(rune('a'+ti))
			ft.TopicID = [16]byte{byte(ti + 1)}
			for p := range parts {
				fp := kmsg.NewFetchResponseTopicPartition()
				fp.Partition = int32(p)
				fp.HighWatermark, fp.LastStableOffset, fp.LogStartOffset = 1<<40, 1<<40, 1<<39
				fp.PreferredReadReplica = 3
				fp.RecordBatches = bytes.Repeat([]byte{7}, batchBytes)
				for a := range aborted {
					at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
					at.ProducerID, at.FirstOffset = int64(a)<<40, 1<<41
					fp.AbortedTransactions = append(fp.AbortedTransactions, at)
				}
				ft.Partitions = append(ft.Partitions, fp)
			}
			r.Topics = append(r.Topics, ft)
		}
		return r
	}
	shapes := []struct{ topics, parts, batchBytes, aborted int }{
		{0, 0, 0, 0},
		{1, 1, 0, 0},
		{1, 1, 1 << 20, 0},
		{3, 100, 1000, 2},
		{1, 10000, 1, 0},
		{2, 8, 200 << 10, 40},
	}
	for v := int16(0); v <= kmsg.NewPtrFetchResponse().MaxVersion(); v++ {
		for _, sh := range shapes {
			resp := build(sh.topics, sh.parts, sh.batchBytes, sh.aborted)
			resp.SetVersion(v)
			hint := responseSizeHint(resp)
			got := len(appendResponse(nil, kmsg.Fetch.Int16(), 9, resp))
			if got > hint {
				t.Errorf("fetch v%d %+v: response %d bytes, hint %d", v, sh, got, hint)
			}
			// The hint sizes an allocation, so where batches are most of the
			// response it must not be far above it either.
			if sh.batchBytes >= 1000 && hint > got+got/8 {
				t.Errorf("fetch v%d %+v: hint %d for a %d-byte response", v, sh, hint, got)
			}
		}
	}
	if n := responseSizeHint(kmsg.NewPtrMetadataResponse()); n != 0 {
		t.Errorf("metadata response hint %d, want 0", n)
	}
}
