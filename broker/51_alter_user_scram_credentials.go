package broker

// AlterUserScramCredentials: v0
//
// Behavior:
//   - Needs ALTER on the cluster (authorizer.go), else every user answers
//     CLUSTER_AUTHORIZATION_FAILED.
//   - Upsertions carry the salt, the iteration count and the salted
//     password the client computed (kafka-configs.sh does it); the broker
//     derives StoredKey and ServerKey from them and stores those through Raft
//     (raftfsm.Node.UpsertScramCredential), never the salted password. Any
//     node accepts the request and forwards it to the metadata leader.
//   - Checked per user, as Kafka does, before anything is stored: an unknown
//     mechanism is UNSUPPORTED_SASL_MECHANISM; an empty name, fewer than
//     4096 or more than 16384 iterations, an empty salt or a salted password
//     of the wrong length is UNACCEPTABLE_CREDENTIAL; the same user and
//     mechanism twice (as upsertion or deletion) is DUPLICATE_RESOURCE. A
//     user with an error has none of its changes applied.
//   - Deleting a credential that does not exist is RESOURCE_NOT_FOUND.
//   - Each change is one Raft write; a user's changes apply in order
//     (deletions first) and stop at the first that fails.
//
// Version notes:
//   - v0 is the only version (KIP-554).

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/scram"
	"github.com/shardcache/shardcache/raftfsm"
)

func init() {
	register(kmsg.AlterUserSCRAMCredentials.Int16(), 0, 0, (*Broker).handleAlterUserSCRAMCredentials)
}

// scramChange is one deletion or upsertion of a user.
type scramChange struct {
	mech   scram.Mechanism
	delete bool
	cred   scram.Credential
}

func (b *Broker) handleAlterUserSCRAMCredentials(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)

	alterable := b.allowedCluster(rc, kmsg.ACLOperationAlter)
	var order []string
	changes := map[string][]scramChange{}
	failed := map[string]error{}
	seen := map[string]map[scram.Mechanism]bool{}
	add := func(user string, ch scramChange, err error) {
		if _, ok := changes[user]; !ok {
			order = append(order, user)
			changes[user] = nil
			seen[user] = map[scram.Mechanism]bool{}
		}
		if failed[user] != nil {
			return
		}
		switch {
		case !alterable:
			failed[user] = kerr.ClusterAuthorizationFailed
		case err != nil:
			failed[user] = err
		case seen[user][ch.mech]:
			failed[user] = newKafkaError(kerr.DuplicateResource, "A user credential cannot be altered twice in the same request")
		default:
			seen[user][ch.mech] = true
			changes[user] = append(changes[user], ch)
		}
	}
	for _, d := range req.Deletions {
		m := scram.Mechanism(d.Mechanism)
		add(d.Name, scramChange{mech: m, delete: true}, checkScramRequest(d.Name, m, nil))
	}
	for _, u := range req.Upsertions {
		m := scram.Mechanism(u.Mechanism)
		err := checkScramRequest(u.Name, m, &u)
		var cred scram.Credential
		if err == nil {
			cred, err = scram.Derive(m, u.Salt, u.SaltedPassword, u.Iterations)
			if err != nil {
				err = newKafkaError(kerr.UnacceptableCredential, "%v", err)
			}
		}
		add(u.Name, scramChange{mech: m, cred: cred}, err)
	}
	for _, user := range order {
		r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		r.User = user
		err := failed[user]
		for _, ch := range changes[user] {
			if err != nil {
				break
			}
			if ch.delete {
				err = b.node.DeleteScramCredential(ctx, user, ch.mech)
				if err == nil {
					b.log.Info("scram credential deleted", logKeyUser, user, logKeyMechanism, ch.mech.String())
				}
			} else {
				err = b.node.UpsertScramCredential(ctx, raftfsm.ScramCredential{User: user, Credential: ch.cred})
				if err == nil {
					b.log.Info("scram credential stored", logKeyUser, user, logKeyMechanism, ch.mech.String())
				}
			}
		}
		if err != nil {
			r.ErrorCode = b.codeFor(err, "alter scram credentials", logKeyUser, user)
			r.ErrorMessage = clientMessage(err)
			if r.ErrorCode == kerr.ResourceNotFound.Code {
				msg := "Attempt to delete a user credential that does not exist"
				r.ErrorMessage = &msg
			}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// checkScramRequest checks a deletion (u nil) or upsertion of user's
// credential for mechanism m.
func checkScramRequest(user string, m scram.Mechanism, u *kmsg.AlterUserSCRAMCredentialsRequestUpsertion) error {
	switch {
	case user == "":
		return newKafkaError(kerr.UnacceptableCredential, "Username must not be empty")
	case len(user) > raftfsm.MaxScramUserBytes:
		return newKafkaError(kerr.UnacceptableCredential, "Username must be at most %d bytes", raftfsm.MaxScramUserBytes)
	case !m.Valid():
		return newKafkaError(kerr.UnsupportedSaslMechanism, "Unknown SCRAM mechanism %d", int8(m))
	case u == nil:
		return nil
	case u.Iterations < scram.MinIterations || u.Iterations > scram.MaxIterations:
		return newKafkaError(kerr.UnacceptableCredential, "Iterations must be between %d and %d for %s", scram.MinIterations, scram.MaxIterations, m)
	case len(u.Salt) == 0 || len(u.Salt) > scram.MaxSaltBytes:
		return newKafkaError(kerr.UnacceptableCredential, "%s", fmt.Sprintf("Salt must be 1 to %d bytes", scram.MaxSaltBytes))
	}
	return nil
}
