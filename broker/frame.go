package broker

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Request framing, kept free of sockets so it can be fuzzed (FuzzParseRequest).
//
// A request on the wire is a 4-byte big-endian size and then that many bytes:
//
//	api key int16 | api version int16 | correlation id int32 |
//	client id nullable string (int16 length, -1 = null; non-compact even in
//	flexible header v2) | [flexible only: tagged fields] | body
//
// A response is a 4-byte size, the correlation id, for flexible responses one
// empty tagged-field byte (header v1) except ApiVersions, which always uses
// header v0 so that a client that does not yet know our versions can read it,
// and then the body.

// frameHeaderLen is the fixed part of a request header: key, version and
// correlation id.
const frameHeaderLen = 8

// Errors from checkFrameSize and parseRequest. Each one closes the connection.
var (
	errFrameSize          = errors.New("request frame size out of range")
	errShortHeader        = errors.New("request header truncated")
	errUnknownAPIKey      = errors.New("unknown api key")
	errUnsupportedVersion = errors.New("unsupported api version")
	errBadBody            = errors.New("request body does not parse")
)

// request is one decoded request frame.
type request struct {
	key           int16
	version       int16
	correlationID int32
	clientID      string // "" when the client sent null
	// body is the request at version (decoded once readBody has run); nil
	// when unsupportedVersion.
	body kmsg.Request
	// unsupportedVersion marks an ApiVersions request above our maximum: its
	// body is not parsed and it is answered with a v0 UNSUPPORTED_VERSION
	// response that lists our range (KIP-511).
	unsupportedVersion bool
}

// checkFrameSize checks a frame's size prefix against the limit before
// anything is allocated for it.
func checkFrameSize(size, maxBytes int32) error {
	if size < frameHeaderLen || size > maxBytes {
		return fmt.Errorf("%w: %d bytes (limit %d)", errFrameSize, size, maxBytes)
	}
	return nil
}

// parseRequest decodes one frame (without its size prefix) against the
// registry: parseHeader, then walkBody with maxDecoded as the most the body
// may decode to, then readBody. On error the returned request still carries
// whatever header fields were read (key, version, correlation id), for
// logging; it is nil only when the fixed header is truncated. The decoded body
// may alias frame. The connection does the same in steps, charging the memory
// budget between the walk and the decode (conn.go).
func parseRequest(frame []byte, maxDecoded int64) (*request, error) {
	rq, body, err := parseHeader(frame)
	if err != nil || rq.unsupportedVersion {
		return rq, err
	}
	if _, err := walkBody(rq.body, body, maxDecoded); err != nil {
		return rq, rq.bodyError(err)
	}
	return rq, readBody(rq, body)
}

// parseHeader decodes a frame's request header and returns the request, whose
// body is a fresh kmsg request of its key and version (nil when
// unsupportedVersion), and the body's bytes.
func parseHeader(frame []byte) (*request, []byte, error) {
	if len(frame) < frameHeaderLen {
		return nil, nil, fmt.Errorf("%w: %d bytes", errShortHeader, len(frame))
	}
	rq := &request{
		key:           int16(binary.BigEndian.Uint16(frame[0:])),
		version:       int16(binary.BigEndian.Uint16(frame[2:])),
		correlationID: int32(binary.BigEndian.Uint32(frame[4:])),
	}
	a, ok := registry[rq.key]
	if !ok {
		return rq, nil, fmt.Errorf("%w %d", errUnknownAPIKey, rq.key)
	}
	if rq.version < a.min || rq.version > a.max {
		if rq.key == kmsg.ApiVersions.Int16() && rq.version > a.max {
			// KIP-511: a newer client opens with its own highest ApiVersions
			// version; tell it ours instead of hanging up.
			rq.unsupportedVersion = true
			return rq, nil, nil
		}
		return rq, nil, fmt.Errorf("%w: %s v%d (serving v%d-v%d)", errUnsupportedVersion, a.name, rq.version, a.min, a.max)
	}
	body := kmsg.RequestForKey(rq.key)
	if body == nil { // register guarantees otherwise; guard anyway
		return rq, nil, fmt.Errorf("%w %d", errUnknownAPIKey, rq.key)
	}
	body.SetVersion(rq.version)

	r := kbin.Reader{Src: frame[frameHeaderLen:]}
	if id := r.NullableString(); id != nil {
		rq.clientID = *id
	}
	if body.IsFlexible() {
		kmsg.SkipTags(&r)
	}
	if err := r.Complete(); err != nil {
		return rq, nil, fmt.Errorf("%w: header: %v", errShortHeader, err)
	}
	rq.body = body
	return rq, r.Src, nil
}

// bodyError wraps an error of walkBody for the log: errBudgetTooLarge stays
// recognisable, the rest is a body that does not parse.
func (rq *request) bodyError(err error) error {
	name := kmsg.NameForKey(rq.key)
	if errors.Is(err, errBudgetTooLarge) {
		return fmt.Errorf("%s v%d: %w", name, rq.version, err)
	}
	return fmt.Errorf("%w: %s v%d: %v", errBadBody, name, rq.version, err)
}

// readBody decodes body, which walkBody has checked, into rq.body. Trailing
// bytes after a complete body are tolerated, as kmsg does: no client sends
// them and rejecting them would need a second encoding pass.
func readBody(rq *request, body []byte) error {
	if err := rq.body.ReadFrom(body); err != nil {
		return fmt.Errorf("%w: %s v%d: %v", errBadBody, kmsg.NameForKey(rq.key), rq.version, err)
	}
	return nil
}

// responseSizeHint is an upper estimate of a response's framed size when it
// can be large, else 0. A Fetch response is the one that carries megabytes:
// kmsg's AppendTo copies each partition's record batches into the growing
// buffer, and growing a pooled 64 KiB buffer by doubling to a few MiB copied
// the batches about twice more and was a third of the fetch handler's CPU in
// a full read (integration/bench/profiles/README.md, "Read path: the response
// buffer"). The estimate counts every byte of the batches and aborted
// transactions and a generous fixed cost per topic and partition; a low guess
// only costs the growth it was meant to avoid.
func responseSizeHint(resp kmsg.Response) int {
	fr, ok := resp.(*kmsg.FetchResponse)
	if !ok {
		return 0
	}
	const (
		fixed        = 64 // frame, header and the response's own fields
		perTopic     = 40 // name length or id, array length, tags
		perPartition = 48 // index, error, offsets, replica, length prefixes, tags: 43 at most
		perAborted   = 17 // producer id, first offset, tags
	)
	n := fixed
	for i := range fr.Topics {
		t := &fr.Topics[i]
		n += perTopic + len(t.Topic)
		for j := range t.Partitions {
			p := &t.Partitions[j]
			n += perPartition + len(p.RecordBatches) + perAborted*len(p.AbortedTransactions)
		}
	}
	return n
}

// appendResponse appends the framed response to dst: size, correlation id,
// the tag byte of flexible response headers (never for ApiVersions), body.
func appendResponse(dst []byte, key int16, correlationID int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if resp.IsFlexible() && key != kmsg.ApiVersions.Int16() {
		dst = append(dst, 0) // empty tagged fields
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}
