package broker

import (
	"context"
	"fmt"
	"net"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handlerFunc serves one request. req is the kmsg request of the handler's key,
// already decoded at rc.version. It returns the response (from req.ResponseKind(),
// so already at the request's version), or nil for no response (acks=0 produce).
// A non-nil error closes the connection; Kafka-level failures go in ErrorCode
// fields instead.
type handlerFunc func(b *Broker, ctx context.Context, rc *requestContext, req kmsg.Request) (kmsg.Response, error)

// api is one supported Kafka API: its key, the versions served, and its handler.
type api struct {
	key      int16
	name     string
	min, max int16
	handle   handlerFunc
}

// registry holds every supported API. Each NN_api_name.go file registers its
// handler from init; dispatch and the ApiVersions response both read it, so the
// advertised versions are exactly the ones served.
var registry = map[int16]api{}

// register adds an API to the registry. It panics on a duplicate key or a bad
// range: both are programming errors found by any test run.
func register(key, min, max int16, h handlerFunc) {
	if _, dup := registry[key]; dup {
		panic(fmt.Sprintf("broker: api key %d registered twice", key))
	}
	if min < 0 || max < min || h == nil {
		panic(fmt.Sprintf("broker: bad registration for api key %d", key))
	}
	if r := kmsg.RequestForKey(key); r == nil || max > r.MaxVersion() {
		panic(fmt.Sprintf("broker: api key %d v%d is beyond what kmsg knows", key, max))
	}
	registry[key] = api{key: key, name: kmsg.NameForKey(key), min: min, max: max, handle: h}
}

// supportedAPIs lists the registry in key order.
func supportedAPIs() []api {
	out := make([]api, 0, len(registry))
	for _, a := range registry {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// APIVersion is one row of the supported-API table.
type APIVersion struct {
	Key        int16
	Name       string
	MinVersion int16
	MaxVersion int16
}

// SupportedAPIs returns the APIs this broker serves, in key order. The README's
// table is generated from it (make api-table).
func SupportedAPIs() []APIVersion {
	var out []APIVersion
	for _, a := range supportedAPIs() {
		out = append(out, APIVersion{Key: a.key, Name: a.name, MinVersion: a.min, MaxVersion: a.max})
	}
	return out
}

// requestContext is what a handler knows about the request besides its body.
type requestContext struct {
	key           int16
	version       int16
	correlationID int32
	clientID      string
	remote        net.Addr
	// listener is the listener the connection came through; principal the
	// connection's identity when the request arrived (security.go).
	listener  *listener
	principal string
	// host is the client's IP address, the host ACLs name.
	host string
	// conn is the connection (the SASL handlers change its session);
	// closeAfter, set by a handler, closes it once the response is written.
	conn       *conn
	closeAfter bool
	// queued, when set (a produce the connection pipelines, conn.go), is
	// called by the handler once every proposal it makes is in its Raft
	// group's queue, so the connection may start the next request; the
	// handler's return stands for it otherwise.
	queued func()
	// fetchBufs are the record buffers a Fetch answer refers to, given back
	// once it is written (fetch_buffers.go).
	fetchBufs [][]byte
}
