package broker

// DescribeUserScramCredentials: v0
//
// Behavior:
//   - Needs DESCRIBE on the cluster (authorizer.go), else
//     CLUSTER_AUTHORIZATION_FAILED.
//   - Lists each user's SCRAM mechanisms and iteration counts (never salts or
//     keys) from the credentials stored through Raft. A null or empty user
//     list means every user with a credential (KIP-554; the Java Admin
//     client, and so kafka-configs.sh, sends an empty list); a user without
//     one is RESOURCE_NOT_FOUND; a user named twice is DUPLICATE_RESOURCE.
//
// Version notes:
//   - v0 is the only version (KIP-554).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() {
	register(kmsg.DescribeUserSCRAMCredentials.Int16(), 0, 0, (*Broker).handleDescribeUserSCRAMCredentials)
}

func (b *Broker) handleDescribeUserSCRAMCredentials(_ context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !b.allowedCluster(rc, kmsg.ACLOperationDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil
	}
	byUser := map[string][]raftfsm.ScramCredential{}
	var order []string
	for _, c := range b.node.ScramCredentials() {
		if _, ok := byUser[c.User]; !ok {
			order = append(order, c.User)
		}
		byUser[c.User] = append(byUser[c.User], c)
	}
	result := func(user string) kmsg.DescribeUserSCRAMCredentialsResponseResult {
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = user
		for _, c := range byUser[user] {
			ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
			ci.Mechanism, ci.Iterations = int8(c.Mechanism), c.Iterations
			r.CredentialInfos = append(r.CredentialInfos, ci)
		}
		return r
	}
	if len(req.Users) == 0 {
		for _, u := range order {
			resp.Results = append(resp.Results, result(u))
		}
		return resp, nil
	}
	count := map[string]int{}
	for _, u := range req.Users {
		count[u.Name]++
	}
	seen := map[string]bool{}
	for _, u := range req.Users {
		if seen[u.Name] {
			continue
		}
		seen[u.Name] = true
		r := result(u.Name)
		switch {
		case count[u.Name] > 1:
			msg := "Cannot describe the same user more than once"
			r.ErrorCode, r.ErrorMessage, r.CredentialInfos = kerr.DuplicateResource.Code, &msg, nil
		case len(r.CredentialInfos) == 0:
			msg := "Attempt to describe a user credential that does not exist"
			r.ErrorCode, r.ErrorMessage = kerr.ResourceNotFound.Code, &msg
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
