package httpapi

// Key lookups: the live value of a key in a compacted topic, read from the key
// index of the topic's shards on this node.
//
//	GET  /v1/topics/{topic}/keys/{key}     one key
//	POST /v1/topics/{topic}/keys:batchGet  many keys, results in request order
//
// Behavior:
//   - {key} is the URL-encoded key bytes (a "/" in a key is %2F). ?key_base64=
//     (standard base64, padding optional, URL-safe alphabet accepted) gives a
//     binary key instead; the {key} segment is then ignored (use "_").
//   - Without ?partition=N every shard of the topic is read; when several hold
//     the key (producers with different partitioners) the newest wins: latest
//     timestamp, then highest offset. A tombstone that wins means "deleted".
//   - The body is the raw value (application/octet-stream); offset, partition,
//     timestamp and the record headers are response headers (see
//     writeRawRecord). ?format=json answers a JSON object instead.
//   - ?consistency=local (default) reads this node's replica, whatever its
//     role (a follower may be a little behind its leader). A node that carries
//     no replica of a partition it must read answers 421 no_replica: reading
//     only the partitions it has could miss the newest value.
//   - ?consistency=leader reads only partitions this node leads and has
//     caught up on; on any other node it answers 421 not_leader. Without
//     ?partition= every partition of the topic must be led by this node, so
//     clients that know the key's partition should name it.
//   - A 421 names the partition's leader when this node knows it: node id and
//     HTTP address in the JSON ("leader_node_id", "leader_http_addr") and the
//     address in the Shardcache-Leader header; retry there.
//   - Delete-policy topics keep no key index: 400 not_compacted.
//   - Errors: JSON {"error": "...", "code": "..."} with the codes below.
//
// Lookups allocate little: the query is parsed without url.Values, the topic
// metadata is one copy, and the store returns one owned record per shard read.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// Limits of the lookup API. A request beyond them answers 413.
const (
	// MaxKeyBytes bounds one looked-up key.
	MaxKeyBytes = 16 << 10
	// MaxBatchKeys bounds the keys of one batchGet.
	MaxBatchKeys = 1000
	// MaxBatchBodyBytes bounds a batchGet request body.
	MaxBatchBodyBytes = 4 << 20
)

// Error codes of the lookup API (the "code" of an error body).
const (
	codeBadRequest       = "bad_request"
	codeBadParameter     = "bad_parameter"
	codeBadPartition     = "bad_partition"
	codeBadBase64        = "bad_base64"
	codeBadJSON          = "bad_json"
	codeKeyTooLarge      = "key_too_large"
	codeBatchTooLarge    = "batch_too_large"
	codeBodyTooLarge     = "body_too_large"
	codeUnknownTopic     = "unknown_topic"
	codeKeyNotFound      = "key_not_found"
	codeKeyDeleted       = "key_deleted"
	codeNotCompacted     = "not_compacted"
	codeNotLeader        = "not_leader"
	codeNoReplica        = "no_replica"
	codeNotReady         = "not_ready"
	codeInternal         = "internal_error"
	codeUnsupportedMedia = "unsupported_media_type"
)

// Response headers of a raw (non-JSON) lookup.
const (
	hdrTopic     = "Shardcache-Topic"
	hdrPartition = "Shardcache-Partition"
	hdrOffset    = "Shardcache-Offset"
	hdrTimestamp = "Shardcache-Timestamp"
	// hdrHeaders carries the record headers in order, encoded like a query
	// string: name=value pairs joined by "&", names and values percent-encoded
	// (url.QueryEscape); a header with a null value is its name without "=".
	hdrHeaders = "Shardcache-Headers"
	// hdrLeader is the HTTP address (host:port) of the leader of the
	// partition a 421 is about.
	hdrLeader = "Shardcache-Leader"
)

// apiError is an error answered to the client.
type apiError struct {
	status int
	code   string
	msg    string
	// leader is set on a 421: where to ask instead.
	leader *leaderHint
}

// leaderHint names the leader of the partition a 421 is about.
type leaderHint struct {
	partition int32
	node      int32  // -1: unknown
	httpAddr  string // "": unknown
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// apiErrorBody is the JSON body of a lookup API error. The leader fields are
// set on a 421 only, and only those this node knows.
type apiErrorBody struct {
	Error          string `json:"error"`
	Code           string `json:"code"`
	Partition      *int32 `json:"partition,omitempty"`
	LeaderNodeID   *int32 `json:"leader_node_id,omitempty"`
	LeaderHTTPAddr string `json:"leader_http_addr,omitempty"`
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	body := apiErrorBody{Error: e.msg, Code: e.code}
	if l := e.leader; l != nil {
		body.Partition = &l.partition
		if l.node >= 0 {
			body.LeaderNodeID = &l.node
		}
		if l.httpAddr != "" {
			body.LeaderHTTPAddr = l.httpAddr
			w.Header().Set(hdrLeader, l.httpAddr)
		}
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(body)
}

// lookupParams are the parsed query parameters of a lookup.
type lookupParams struct {
	json bool
	// utf8: text values and keys are JSON strings when they are valid UTF-8.
	utf8      bool
	partition int32 // -1: every partition
	leader    bool
	key       []byte // from key_base64
	hasKey    bool
}

// parseLookupQuery parses the query string by hand: url.ParseQuery builds a map
// per request. allowKey permits key_base64 (single lookups only).
func parseLookupQuery(raw string, allowKey bool) (lookupParams, *apiError) {
	p := lookupParams{partition: -1}
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" {
			continue
		}
		name, val, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(val, "%+") {
			v, err := url.QueryUnescape(val)
			if err != nil {
				return p, errorf(http.StatusBadRequest, codeBadParameter, "query parameter %q is not URL-encoded correctly", name)
			}
			val = v
		}
		switch name {
		case "format":
			switch val {
			case "json":
				p.json = true
			case "raw", "":
				p.json = false
			default:
				return p, errorf(http.StatusBadRequest, codeBadParameter, "unknown format %q: use json or raw", val)
			}
		case "encoding":
			switch val {
			case "utf8":
				p.utf8 = true
			case "base64", "":
				p.utf8 = false
			default:
				return p, errorf(http.StatusBadRequest, codeBadParameter, "unknown encoding %q: use base64 or utf8", val)
			}
		case "partition":
			n, err := strconv.ParseInt(val, 10, 32)
			if err != nil || n < 0 {
				return p, errorf(http.StatusBadRequest, codeBadPartition, "partition %q is not a partition number", val)
			}
			p.partition = int32(n)
		case "consistency":
			switch val {
			case "leader":
				p.leader = true
			case "local", "":
				p.leader = false
			default:
				return p, errorf(http.StatusBadRequest, codeBadParameter, "unknown consistency %q: use local or leader", val)
			}
		case "key_base64":
			if !allowKey {
				return p, errorf(http.StatusBadRequest, codeBadParameter, "key_base64 is not a parameter of batchGet: set key_encoding in the body")
			}
			k, err := decodeBase64(val)
			if err != nil {
				return p, errorf(http.StatusBadRequest, codeBadBase64, "key_base64 is not valid base64: %v", err)
			}
			p.key, p.hasKey = k, true
		default:
			return p, errorf(http.StatusBadRequest, codeBadParameter, "unknown query parameter %q", name)
		}
	}
	return p, nil
}

// decodeBase64 accepts standard and URL-safe base64, padded or not (query
// strings often lose "=" or turn "+" into a space, which the caller undid).
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	return enc.DecodeString(s)
}

// found is the outcome of looking one key up in a topic.
type found struct {
	rec       shardstore.Record
	partition int32
	ok        bool // a record, possibly a tombstone, was found
}

// backend returns the open backend or the error to answer.
func (h *Handler) backend() (*Backend, *apiError) {
	var b *Backend
	if h.cfg.Backend != nil {
		b = h.cfg.Backend()
	}
	if b == nil || b.Node == nil || b.Store == nil {
		return nil, errorf(http.StatusServiceUnavailable, codeNotReady, "the node is starting: storage is not open yet")
	}
	if !b.Node.Ready() {
		return nil, errorf(http.StatusServiceUnavailable, codeNotReady, "the node is not ready: Raft groups are electing leaders or replaying their logs")
	}
	return b, nil
}

// lookupTopic resolves the topic and checks that it can answer lookups with p.
func lookupTopic(b *Backend, topic string, p *lookupParams) (raftfsm.TopicInfo, *apiError) {
	t, ok := b.Node.Topic(topic)
	if !ok {
		return t, errorf(http.StatusNotFound, codeUnknownTopic, "unknown topic %q", topic)
	}
	if t.Config.CleanupPolicy != shardstore.PolicyCompact {
		return t, errorf(http.StatusBadRequest, codeNotCompacted,
			"topic %q has cleanup.policy=%s: only compacted topics keep a key index, so its keys cannot be looked up", topic, t.Config.CleanupPolicy)
	}
	if p.partition >= int32(len(t.Partitions)) {
		return t, errorf(http.StatusBadRequest, codeBadPartition, "partition %d out of range: topic %q has %d partitions", p.partition, topic, len(t.Partitions))
	}
	for _, pi := range t.Partitions {
		if p.partition >= 0 && pi.Partition != p.partition {
			continue
		}
		if p.leader && !b.Node.IsLeader(pi.Group) {
			l := partitionLeader(b.Node, pi)
			if l.node == b.Node.NodeID() {
				return t, errorf(http.StatusServiceUnavailable, codeNotReady,
					"consistency=leader: this node is the last known leader of partition %d of topic %q but is not serving as its leader yet (an election or a log replay is under way); retry", pi.Partition, topic)
			}
			e := errorf(http.StatusMisdirectedRequest, codeNotLeader,
				"consistency=leader: this node does not lead partition %d of topic %q (raft group %d); ask its leader%s, or use consistency=local", pi.Partition, topic, pi.Group, l.where())
			e.leader = &l
			return t, e
		}
		if !p.leader && !b.Node.Carries(pi.Group) {
			l := partitionLeader(b.Node, pi)
			e := errorf(http.StatusMisdirectedRequest, codeNoReplica,
				"this node carries no replica of partition %d of topic %q (raft group %d); ask its leader%s", pi.Partition, topic, pi.Group, l.where())
			e.leader = &l
			return t, e
		}
	}
	return t, nil
}

// partitionLeader names the leader of pi's Raft group as this node knows it.
func partitionLeader(n *raftfsm.Node, pi raftfsm.PartitionInfo) leaderHint {
	l := leaderHint{partition: pi.Partition, node: -1}
	id, _, ok := n.GroupLeader(pi.Group)
	if !ok {
		return l
	}
	l.node = id
	if ni, ok := n.NodeInfo(id); ok && !ni.Removed {
		l.httpAddr = ni.HTTPAddr
	}
	return l
}

// where is the leader for an error message: " (node 2 at host:port)".
func (l *leaderHint) where() string {
	switch {
	case l.node < 0:
		return " (none is known right now)"
	case l.httpAddr == "":
		return fmt.Sprintf(" (node %d)", l.node)
	}
	return fmt.Sprintf(" (node %d at %s)", l.node, l.httpAddr)
}

// lookupKey reads key from the topic's shards (or the one p names) and returns
// the newest record: latest timestamp, then highest offset.
func (h *Handler) lookupKey(b *Backend, t *raftfsm.TopicInfo, p *lookupParams, key []byte) (found, *apiError) {
	var best found
	for _, pi := range t.Partitions {
		if p.partition >= 0 && pi.Partition != p.partition {
			continue
		}
		rec, ok, err := b.Store.Lookup(pi.Shard, key)
		if errors.Is(err, shardstore.ErrUnknownShard) {
			// Created in metadata, not yet applied here (or just deleted).
			continue
		}
		if err != nil {
			h.log.Error("key lookup failed", keyTopic, t.Name, keyPartition, pi.Partition, keyError, err)
			return best, errorf(http.StatusInternalServerError, codeInternal, "reading partition %d failed", pi.Partition)
		}
		if !ok {
			continue
		}
		if !best.ok || rec.Timestamp > best.rec.Timestamp ||
			(rec.Timestamp == best.rec.Timestamp && rec.Offset > best.rec.Offset) {
			best = found{rec: rec, partition: pi.Partition, ok: true}
		}
	}
	return best, nil
}

func checkKey(key []byte) *apiError {
	if len(key) > MaxKeyBytes {
		return errorf(http.StatusRequestEntityTooLarge, codeKeyTooLarge, "key of %d bytes exceeds the limit of %d bytes", len(key), MaxKeyBytes)
	}
	return nil
}

// getKey serves GET /v1/topics/{topic}/keys/{key}.
func (h *Handler) getKey(w http.ResponseWriter, r *http.Request) {
	p, aerr := parseLookupQuery(r.URL.RawQuery, true)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	topic := r.PathValue("topic")
	key := p.key
	if !p.hasKey {
		key = []byte(r.PathValue("key"))
	}
	if aerr := checkKey(key); aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	b, aerr := h.backend()
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	t, aerr := lookupTopic(b, topic, &p)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	f, aerr := h.lookupKey(b, &t, &p, key)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	switch {
	case !f.ok:
		writeAPIError(w, errorf(http.StatusNotFound, codeKeyNotFound, "key not found in topic %q", topic))
		return
	case f.rec.Value == nil:
		writeAPIError(w, errorf(http.StatusNotFound, codeKeyDeleted, "key deleted: its live record in partition %d at offset %d is a tombstone", f.partition, f.rec.Offset))
		return
	}
	if p.json {
		writeJSON(w, http.StatusOK, newRecordJSON(topic, &f, p.utf8))
		return
	}
	writeRawRecord(w, topic, &f)
}

// writeRawRecord answers the value as the body and the rest as headers.
func writeRawRecord(w http.ResponseWriter, topic string, f *found) {
	hd := w.Header()
	// One backing array for every header value, and direct map writes with
	// canonical names (Set would canonicalize and allocate a slice each).
	vals := new([7]string)
	vals[0] = "application/octet-stream"
	vals[1] = strconv.Itoa(len(f.rec.Value))
	vals[2] = topic
	vals[3] = strconv.FormatInt(int64(f.partition), 10)
	vals[4] = strconv.FormatInt(f.rec.Offset, 10)
	vals[5] = strconv.FormatInt(f.rec.Timestamp, 10)
	hd["Content-Type"] = vals[0:1:1]
	hd["Content-Length"] = vals[1:2:2]
	hd[hdrTopic] = vals[2:3:3]
	hd[hdrPartition] = vals[3:4:4]
	hd[hdrOffset] = vals[4:5:5]
	hd[hdrTimestamp] = vals[5:6:6]
	if len(f.rec.Headers) > 0 {
		vals[6] = encodeHeaders(f.rec.Headers)
		hd[hdrHeaders] = vals[6:7:7]
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(f.rec.Value)
}

// encodeHeaders is the value of the Shardcache-Headers response header.
func encodeHeaders(hs []shardstore.Header) string {
	var sb strings.Builder
	for i, h := range hs {
		if i > 0 {
			sb.WriteByte('&')
		}
		sb.WriteString(url.QueryEscape(h.Key))
		if h.Value != nil {
			sb.WriteByte('=')
			sb.WriteString(url.QueryEscape(string(h.Value)))
		}
	}
	return sb.String()
}

// recordJSON is a found record in JSON answers. Key, value and header values
// are base64 unless utf8 was asked and they are valid UTF-8; the *_encoding
// fields say which.
type recordJSON struct {
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Timestamp     int64        `json:"timestamp"`
	Key           string       `json:"key"`
	KeyEncoding   string       `json:"key_encoding"`
	Value         string       `json:"value"`
	ValueEncoding string       `json:"value_encoding"`
	Headers       []headerJSON `json:"headers"`
}

// headerJSON is one record header; Value is null for a null header value.
type headerJSON struct {
	Key           string  `json:"key"`
	Value         *string `json:"value"`
	ValueEncoding string  `json:"value_encoding"`
}

// encodeBytes returns b as a JSON-safe string and its encoding name.
func encodeBytes(b []byte, utf8Wanted bool) (string, string) {
	if utf8Wanted && utf8.Valid(b) {
		return string(b), "utf8"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

func newRecordJSON(topic string, f *found, utf8Wanted bool) *recordJSON {
	rj := &recordJSON{
		Topic:     topic,
		Partition: f.partition,
		Offset:    f.rec.Offset,
		Timestamp: f.rec.Timestamp,
		Headers:   make([]headerJSON, len(f.rec.Headers)),
	}
	rj.Key, rj.KeyEncoding = encodeBytes(f.rec.Key, utf8Wanted)
	rj.Value, rj.ValueEncoding = encodeBytes(f.rec.Value, utf8Wanted)
	for i, h := range f.rec.Headers {
		hj := headerJSON{Key: h.Key}
		if h.Value != nil {
			v, enc := encodeBytes(h.Value, utf8Wanted)
			hj.Value, hj.ValueEncoding = &v, enc
		}
		rj.Headers[i] = hj
	}
	return rj
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeAPIError(w, errorf(http.StatusInternalServerError, codeInternal, "encoding the response failed"))
		return
	}
	body = append(body, '\n')
	hd := w.Header()
	hd["Content-Type"] = []string{"application/json"}
	hd["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// batchGetRequest is the body of POST /v1/topics/{topic}/keys:batchGet.
type batchGetRequest struct {
	Keys []string `json:"keys"`
	// KeyEncoding is "utf8" (default: keys are the JSON strings' bytes) or
	// "base64" (binary keys).
	KeyEncoding string `json:"key_encoding"`
}

// batchResult is one key's answer: Found with the record's fields, or not
// found, with Deleted when its live record is a tombstone.
type batchResult struct {
	Found   bool   `json:"found"`
	Deleted bool   `json:"deleted,omitempty"`
	Error   string `json:"error,omitempty"`
	*recordJSON
	// RequestKey echoes the key as the request gave it (always present).
	RequestKey string `json:"request_key"`
}

type batchGetResponse struct {
	Topic   string        `json:"topic"`
	Results []batchResult `json:"results"`
}

// batchGet serves POST /v1/topics/{topic}/keys:batchGet.
func (h *Handler) batchGet(w http.ResponseWriter, r *http.Request) {
	p, aerr := parseLookupQuery(r.URL.RawQuery, false)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	// format is accepted and ignored: batchGet always answers JSON.
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		if mt = strings.TrimSpace(strings.ToLower(mt)); mt != "application/json" {
			writeAPIError(w, errorf(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Content-Type %q: the body must be application/json", ct))
			return
		}
	}
	req, aerr := readBatchRequest(w, r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	keys := make([][]byte, len(req.Keys))
	for i, k := range req.Keys {
		if req.KeyEncoding == "base64" {
			b, err := decodeBase64(k)
			if err != nil {
				writeAPIError(w, errorf(http.StatusBadRequest, codeBadBase64, "keys[%d] is not valid base64: %v", i, err))
				return
			}
			keys[i] = b
		} else {
			keys[i] = []byte(k)
		}
		if len(keys[i]) > MaxKeyBytes {
			writeAPIError(w, errorf(http.StatusRequestEntityTooLarge, codeKeyTooLarge, "keys[%d] has %d bytes, over the limit of %d bytes", i, len(keys[i]), MaxKeyBytes))
			return
		}
	}
	b, aerr := h.backend()
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	topic := r.PathValue("topic")
	t, aerr := lookupTopic(b, topic, &p)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	resp := batchGetResponse{Topic: topic, Results: make([]batchResult, len(keys))}
	for i, k := range keys {
		res := &resp.Results[i]
		res.RequestKey = req.Keys[i]
		f, aerr := h.lookupKey(b, &t, &p, k)
		switch {
		case aerr != nil:
			res.Error = aerr.msg
		case !f.ok:
		case f.rec.Value == nil:
			res.Deleted = true
		default:
			res.Found = true
			res.recordJSON = newRecordJSON(topic, &f, p.utf8)
		}
	}
	writeJSON(w, http.StatusOK, &resp)
}

// readBatchRequest reads and validates a batchGet body within the limits.
func readBatchRequest(w http.ResponseWriter, r *http.Request) (*batchGetRequest, *apiError) {
	if r.ContentLength > MaxBatchBodyBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, MaxBatchBodyBytes)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBatchBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errorf(http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body exceeds the limit of %d bytes", MaxBatchBodyBytes)
		}
		return nil, errorf(http.StatusBadRequest, codeBadRequest, "reading the request body failed")
	}
	var req batchGetRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, errorf(http.StatusBadRequest, codeBadJSON, "request body is not a valid batchGet request: %v", err)
	}
	if dec.More() {
		return nil, errorf(http.StatusBadRequest, codeBadJSON, "request body has data after the JSON object")
	}
	if req.Keys == nil {
		return nil, errorf(http.StatusBadRequest, codeBadJSON, `request body needs a "keys" array`)
	}
	switch req.KeyEncoding {
	case "", "utf8", "base64":
	default:
		return nil, errorf(http.StatusBadRequest, codeBadParameter, "unknown key_encoding %q: use utf8 or base64", req.KeyEncoding)
	}
	if len(req.Keys) > MaxBatchKeys {
		return nil, errorf(http.StatusRequestEntityTooLarge, codeBatchTooLarge, "%d keys exceed the limit of %d keys per batchGet", len(req.Keys), MaxBatchKeys)
	}
	return &req, nil
}
