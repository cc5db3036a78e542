package broker

// DescribeClientQuotas: v0-1
//
// Behavior:
//   - shardcache has no client quotas, so a valid filter matches no entity
//     and the answer is an empty entry list, as Kafka answers when no quota
//     is set. It is served so that `kafka-configs.sh --describe
//     --entity-type users`, which asks for quotas before it lists the
//     users' SCRAM credentials, works.
//   - The principal needs DESCRIBE_CONFIGS on the cluster, as in Kafka;
//     without it the answer is CLUSTER_AUTHORIZATION_FAILED.
//   - The filter is checked as Kafka checks it: entity types are "user",
//     "client-id" and "ip" (any other is UNSUPPORTED_VERSION), each at most
//     once; an exact match needs a match string, default and any matches
//     must not have one; "ip" cannot be combined with "user" or
//     "client-id". A bad filter answers INVALID_REQUEST with a message.
//
// Version notes:
//   - v1 is v0 in the flexible encoding (KIP-482).

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.DescribeClientQuotas.Int16(), 0, 1, (*Broker).handleDescribeClientQuotas)
}

func (b *Broker) handleDescribeClientQuotas(_ context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClientQuotasResponse)
	if !b.allowedCluster(rc, kmsg.ACLOperationDescribeConfigs) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil
	}
	if code, err := checkQuotaFilter(req.Components); err != nil {
		msg := err.Error()
		resp.ErrorCode, resp.ErrorMessage = code, &msg
		return resp, nil
	}
	// No quotas exist: every valid filter matches nothing. An empty (not
	// null) list: null means an error to the Java client.
	resp.Entries = []kmsg.DescribeClientQuotasResponseEntry{}
	return resp, nil
}

// Quota entity types a DescribeClientQuotas filter may name.
const (
	quotaEntityUser     = "user"
	quotaEntityClientID = "client-id"
	quotaEntityIP       = "ip"
)

// checkQuotaFilter validates a DescribeClientQuotas filter and returns the
// Kafka error code and message for a bad one.
func checkQuotaFilter(components []kmsg.DescribeClientQuotasRequestComponent) (int16, error) {
	seen := map[string]bool{}
	for _, c := range components {
		switch c.EntityType {
		case "":
			return kerr.InvalidRequest.Code, fmt.Errorf("invalid empty entity type")
		case quotaEntityUser, quotaEntityClientID, quotaEntityIP:
		default:
			return kerr.UnsupportedVersion.Code, fmt.Errorf("unsupported entity type %q", c.EntityType)
		}
		if seen[c.EntityType] {
			return kerr.InvalidRequest.Code, fmt.Errorf("entity type %q appears more than once in the filter", c.EntityType)
		}
		seen[c.EntityType] = true
		switch c.MatchType {
		case kmsg.QuotasMatchTypeExact:
			if c.Match == nil {
				return kerr.InvalidRequest.Code, fmt.Errorf("entity type %q: an exact match needs a match string", c.EntityType)
			}
		case kmsg.QuotasMatchTypeDefault, kmsg.QuotasMatchTypeAny:
			if c.Match != nil {
				return kerr.InvalidRequest.Code, fmt.Errorf("entity type %q: match type %v takes no match string", c.EntityType, c.MatchType)
			}
		default:
			return kerr.UnsupportedVersion.Code, fmt.Errorf("entity type %q: unknown match type %d", c.EntityType, int8(c.MatchType))
		}
	}
	if seen[quotaEntityIP] && (seen[quotaEntityUser] || seen[quotaEntityClientID]) {
		return kerr.InvalidRequest.Code, fmt.Errorf("an ip filter component cannot be combined with user or client-id")
	}
	return 0, nil
}
