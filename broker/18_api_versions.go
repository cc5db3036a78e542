package broker

// ApiVersions: v0-4
//
// Behavior:
//   - The registry is the answer: every registered API with its served range, so
//     dispatch and advertisement cannot drift apart.
//   - A request above v4 is not parsed; it gets a v0-shaped response with
//     UNSUPPORTED_VERSION that lists the ApiVersions range (KIP-511), and the
//     client retries at our maximum.
//
// Version notes:
//   - v3+: the client software name and version are accepted and not checked.
//     No supported or finalized features are advertised (in particular no
//     transaction.version, so clients keep the classic transaction protocol);
//     FinalizedFeaturesEpoch stays -1.
//   - The response header is always v0, even for flexible versions (frame.go).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.ApiVersions.Int16(), 0, 4, (*Broker).handleAPIVersions) }

func (b *Broker) handleAPIVersions(_ context.Context, _ *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = apiVersionsKeys()
	return resp, nil
}

// unsupportedAPIVersionsResponse is the KIP-511 answer to an ApiVersions
// request above our maximum.
func unsupportedAPIVersionsResponse() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = apiVersionsKeys()
	return resp
}

func apiVersionsKeys() []kmsg.ApiVersionsResponseApiKey {
	apis := supportedAPIs()
	out := make([]kmsg.ApiVersionsResponseApiKey, 0, len(apis))
	for _, a := range apis {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = a.key, a.min, a.max
		out = append(out, k)
	}
	return out
}
