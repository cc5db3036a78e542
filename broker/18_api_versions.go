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
//     Features (KIP-584), what `kafka-features describe` lists: only
//     metadata.version, supported 3.3-IV3..4.0-IV3 and finalized at 4.0-IV3
//     (feature levels 7..25), the Kafka release whose client APIs this broker
//     serves. It never changes, so FinalizedFeaturesEpoch is a constant 0.
//     Nothing else is advertised: no kraft.version (no KIP-853 voter APIs),
//     no group.version (no KIP-848 consumer protocol) and in particular no
//     transaction.version, so clients keep the classic transaction protocol
//     (docs/ARCHITECTURE.md rule 7).
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
	if req.Version >= 3 {
		addFeatures(resp)
	}
	return resp, nil
}

// Feature levels of metadata.version (Kafka's MetadataVersion): 3.3-IV3 is the
// lowest Kafka 4 accepts, 4.0-IV3 the level of Kafka 4.0.
const (
	metadataVersionMin = 7
	metadataVersionMax = 25
)

// addFeatures fills the supported and finalized features of a v3+ response.
func addFeatures(resp *kmsg.ApiVersionsResponse) {
	sf := kmsg.NewApiVersionsResponseSupportedFeature()
	sf.Name, sf.MinVersion, sf.MaxVersion = "metadata.version", metadataVersionMin, metadataVersionMax
	resp.SupportedFeatures = []kmsg.ApiVersionsResponseSupportedFeature{sf}
	ff := kmsg.NewApiVersionsResponseFinalizedFeature()
	ff.Name, ff.MinVersionLevel, ff.MaxVersionLevel = "metadata.version", metadataVersionMax, metadataVersionMax
	resp.FinalizedFeatures = []kmsg.ApiVersionsResponseFinalizedFeature{ff}
	resp.FinalizedFeaturesEpoch = 0
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
