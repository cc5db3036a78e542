package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/acl"
	"github.com/shardcache/shardcache/internal/scram"
	"github.com/shardcache/shardcache/raftfsm"
)

// bindingsOf parses bindings written as parseTestBinding reads them.
func bindingsOf(t testing.TB, specs ...string) []acl.Binding {
	t.Helper()
	var out []acl.Binding
	for _, s := range specs {
		b, err := parseTestBinding(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// parseTestBinding reads "PERM PRINCIPAL HOST OP TYPE PATTERN NAME", for
// example "ALLOW User:alice * READ TOPIC LITERAL orders".
func parseTestBinding(s string) (acl.Binding, error) {
	var perm, principal, host, op, typ, pat, name string
	if _, err := fmt.Sscan(s, &perm, &principal, &host, &op, &typ, &pat, &name); err != nil {
		return acl.Binding{}, fmt.Errorf("%q: %v", s, err)
	}
	var b acl.Binding
	var err error
	b.Principal, b.Host, b.Name = principal, host, name
	if b.Permission, err = kmsg.ParseACLPermissionType(perm); err != nil {
		return b, err
	}
	if b.Operation, err = kmsg.ParseACLOperation(op); err != nil {
		return b, err
	}
	if b.ResourceType, err = kmsg.ParseACLResourceType(typ); err != nil {
		return b, err
	}
	if b.Pattern, err = kmsg.ParseACLResourcePatternType(pat); err != nil {
		return b, err
	}
	return b, b.Validate()
}

// TestAuthorizerRules pins Kafka's StandardAuthorizer rules, one binding
// set per case.
func TestAuthorizerRules(t *testing.T) {
	tb := newTestBroker(t)
	ctx := testCtx(t)
	type check struct {
		principal, host string
		op              kmsg.ACLOperation
		rt              kmsg.ACLResourceType
		name            string
		want            bool
	}
	const (
		alice = "User:alice"
		bob   = "User:bob"
		admin = "User:admin"
		h1    = "10.0.0.1"
		h2    = "10.0.0.2"
		topic = kmsg.ACLResourceTypeTopic
		group = kmsg.ACLResourceTypeGroup
	)
	tests := []struct {
		name     string
		acls     []string
		allowAll bool
		checks   []check
	}{
		{"no acls: allow everyone flag decides", nil, true, []check{
			{alice, h1, kmsg.ACLOperationWrite, topic, "t", true},
		}},
		{"no acls, flag off", nil, false, []check{
			{alice, h1, kmsg.ACLOperationWrite, topic, "t", false},
			{admin, h1, kmsg.ACLOperationWrite, topic, "t", true}, // super user
		}},
		{"an acl on the resource closes it to others", []string{"ALLOW User:alice * READ TOPIC LITERAL t"}, true, []check{
			{alice, h1, kmsg.ACLOperationRead, topic, "t", true},
			{bob, h1, kmsg.ACLOperationRead, topic, "t", false},
			{bob, h1, kmsg.ACLOperationRead, topic, "other", true}, // no acl applies
			{alice, h1, kmsg.ACLOperationWrite, topic, "t", false},
		}},
		{"implied describe", []string{
			"ALLOW User:alice * READ TOPIC LITERAL r", "ALLOW User:alice * WRITE TOPIC LITERAL w",
			"ALLOW User:alice * DELETE TOPIC LITERAL d", "ALLOW User:alice * ALTER TOPIC LITERAL a",
			"ALLOW User:alice * ALTER_CONFIGS TOPIC LITERAL c", "ALLOW User:alice * CREATE TOPIC LITERAL n",
		}, false, []check{
			{alice, h1, kmsg.ACLOperationDescribe, topic, "r", true},
			{alice, h1, kmsg.ACLOperationDescribe, topic, "w", true},
			{alice, h1, kmsg.ACLOperationDescribe, topic, "d", true},
			{alice, h1, kmsg.ACLOperationDescribe, topic, "a", true},
			{alice, h1, kmsg.ACLOperationDescribeConfigs, topic, "c", true},
			{alice, h1, kmsg.ACLOperationDescribe, topic, "c", false},
			{alice, h1, kmsg.ACLOperationDescribe, topic, "n", false},
			{alice, h1, kmsg.ACLOperationRead, topic, "w", false},
		}},
		{"all implies everything", []string{"ALLOW User:alice * ALL GROUP LITERAL g"}, false, []check{
			{alice, h1, kmsg.ACLOperationRead, group, "g", true},
			{alice, h1, kmsg.ACLOperationDelete, group, "g", true},
			{alice, h1, kmsg.ACLOperationRead, topic, "g", false},
		}},
		{"deny beats allow", []string{"ALLOW User:* * ALL TOPIC PREFIXED p", "DENY User:bob * WRITE TOPIC LITERAL p1"}, false, []check{
			{alice, h1, kmsg.ACLOperationWrite, topic, "p1", true},
			{bob, h1, kmsg.ACLOperationWrite, topic, "p1", false},
			{bob, h1, kmsg.ACLOperationRead, topic, "p1", true},
			{bob, h1, kmsg.ACLOperationWrite, topic, "p2", true},
		}},
		{"deny does not imply", []string{"ALLOW User:alice * ALL TOPIC LITERAL t", "DENY User:alice * READ TOPIC LITERAL t"}, false, []check{
			{alice, h1, kmsg.ACLOperationRead, topic, "t", false},
			{alice, h1, kmsg.ACLOperationDescribe, topic, "t", true},
		}},
		{"deny all", []string{"ALLOW User:alice * READ TOPIC LITERAL *", "DENY User:alice * ALL TOPIC LITERAL secret"}, false, []check{
			{alice, h1, kmsg.ACLOperationRead, topic, "anything", true},
			{alice, h1, kmsg.ACLOperationRead, topic, "secret", false},
			{alice, h1, kmsg.ACLOperationDescribe, topic, "secret", false},
		}},
		{"hosts", []string{"ALLOW User:alice 10.0.0.1 READ TOPIC LITERAL t", "DENY User:* 10.0.0.2 ALL TOPIC PREFIXED " + "x"}, false, []check{
			{alice, h1, kmsg.ACLOperationRead, topic, "t", true},
			{alice, h2, kmsg.ACLOperationRead, topic, "t", false},
		}},
		{"prefixes", []string{"ALLOW User:alice * READ TOPIC PREFIXED app-", "ALLOW User:alice * WRITE TOPIC PREFIXED app-orders"}, false, []check{
			{alice, h1, kmsg.ACLOperationRead, topic, "app-orders-eu", true},
			{alice, h1, kmsg.ACLOperationWrite, topic, "app-orders-eu", true},
			{alice, h1, kmsg.ACLOperationWrite, topic, "app-users", false},
			{alice, h1, kmsg.ACLOperationRead, topic, "ap", false},
		}},
		{"cluster", []string{"ALLOW User:alice * CREATE CLUSTER LITERAL kafka-cluster"}, false, []check{
			{alice, h1, kmsg.ACLOperationCreate, kmsg.ACLResourceTypeCluster, acl.ClusterName, true},
			{alice, h1, kmsg.ACLOperationAlter, kmsg.ACLResourceTypeCluster, acl.ClusterName, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tb.Node.DeleteACLs(ctx, []acl.Filter{{ResourceType: kmsg.ACLResourceTypeAny, Pattern: kmsg.ACLResourcePatternTypeAny,
				Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}}); err != nil {
				t.Fatal(err)
			}
			if len(tt.acls) > 0 {
				if err := tb.Node.CreateACLs(ctx, bindingsOf(t, tt.acls...)); err != nil {
					t.Fatal(err)
				}
			}
			a := newAuthorizer([]string{admin}, tt.allowAll, tb.Node.ACLs)
			for _, c := range tt.checks {
				if got := a.authorize(c.principal, c.host, c.op, c.rt, c.name); got != c.want {
					t.Errorf("%s from %s %s %s %q = %v, want %v", c.principal, c.host, c.op, c.rt, c.name, got, c.want)
				}
			}
		})
	}
}

// BenchmarkAuthorize measures a decision on the produce/fetch path: no ACLs
// at all, and 1,000 bindings (literal and prefixed, many principals).
func BenchmarkAuthorize(b *testing.B) {
	tb := newTestBroker(b)
	ctx := testCtx(b)
	check := func(b *testing.B, a *authorizer) {
		b.ReportAllocs()
		for b.Loop() {
			if !a.authorize("User:alice", "127.0.0.1", kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, "app-orders-17") {
				b.Fatal("denied")
			}
		}
	}
	b.Run("no-acls", func(b *testing.B) { check(b, newAuthorizer(nil, true, tb.Node.ACLs)) })
	var bs []acl.Binding
	for i := range 500 {
		bs = append(bs,
			acl.Binding{ResourceType: kmsg.ACLResourceTypeTopic, Name: fmt.Sprintf("topic-%d", i), Pattern: kmsg.ACLResourcePatternTypeLiteral,
				Principal: fmt.Sprintf("User:u%d", i), Host: "*", Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeAllow},
			acl.Binding{ResourceType: kmsg.ACLResourceTypeTopic, Name: fmt.Sprintf("p%d-", i), Pattern: kmsg.ACLResourcePatternTypePrefixed,
				Principal: fmt.Sprintf("User:u%d", i), Host: "*", Operation: kmsg.ACLOperationWrite, Permission: kmsg.ACLPermissionTypeAllow})
	}
	bs = append(bs, acl.Binding{ResourceType: kmsg.ACLResourceTypeTopic, Name: "app-", Pattern: kmsg.ACLResourcePatternTypePrefixed,
		Principal: "User:alice", Host: "*", Operation: kmsg.ACLOperationWrite, Permission: kmsg.ACLPermissionTypeAllow})
	for len(bs) > 0 {
		n := min(len(bs), raftfsm.MaxACLsPerCommand)
		if err := tb.Node.CreateACLs(ctx, bs[:n]); err != nil {
			b.Fatal(err)
		}
		bs = bs[n:]
	}
	b.Run("1001-acls", func(b *testing.B) { check(b, newAuthorizer(nil, false, tb.Node.ACLs)) })
}

// aclBroker is a broker whose PLAINTEXT listener is anonymous and whose
// SASL_PLAINTEXT listener knows admin (a super user), alice and bob.
type aclBroker struct {
	*secureBroker
	sasl string
}

func newACLBroker(t testing.TB, opts ...func(*testBrokerConfig)) *aclBroker {
	t.Helper()
	opts = append([]func(*testBrokerConfig){func(c *testBrokerConfig) { c.SuperUsers = []string{"User:admin"} }}, opts...)
	ab := &aclBroker{secureBroker: newSecureBroker(t, opts...)}
	ab.sasl = ab.listen(t, ProtocolSASLPlaintext)
	for _, u := range []string{"admin", "alice", "bob"} {
		c, err := scram.NewCredential(scram.SHA256, u+"-pw", scram.MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		if err := ab.Node.UpsertScramCredential(testCtx(t), raftfsm.ScramCredential{User: u, Credential: c}); err != nil {
			t.Fatal(err)
		}
	}
	return ab
}

// as returns a client authenticated as user.
func (ab *aclBroker) as(t testing.TB, user string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return newClient(t, ab.sasl, append([]kgo.Opt{kgo.SASL(saslMechanism(MechanismScramSHA256, user, user+"-pw"))}, opts...)...)
}

func (ab *aclBroker) allow(t testing.TB, b *kadm.ACLBuilder) {
	t.Helper()
	res, err := kadm.NewClient(ab.as(t, "admin")).CreateACLs(testCtx(t), b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("create acl %+v: %v %s", r, r.Err, r.ErrMessage)
		}
	}
}

// TestACLAdminAPIs drives CreateAcls, DescribeAcls and DeleteAcls through
// kadm: literal and prefixed bindings, filters, Kafka's validation errors,
// and the cluster ALTER/DESCRIBE they need.
func TestACLAdminAPIs(t *testing.T) {
	ab := newACLBroker(t, func(c *testBrokerConfig) { c.DenyIfNoACLFound = true })
	ctx := testCtx(t)
	adm := kadm.NewClient(ab.as(t, "admin"))
	ab.allow(t, kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpRead, kadm.OpWrite).ResourcePatternType(kadm.ACLPatternLiteral))
	ab.allow(t, kadm.NewACLs().Allow("User:bob").AllowHosts("127.0.0.1").Topics("app-").Groups("app-").Operations(kadm.OpAll).ResourcePatternType(kadm.ACLPatternPrefixed))
	ab.allow(t, kadm.NewACLs().Deny("User:bob").Topics("app-secret").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral))

	describe := func(b *kadm.ACLBuilder) []string {
		t.Helper()
		res, err := adm.DescribeACLs(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("describe: %v %s", r.Err, r.ErrMessage)
			}
			for _, d := range r.Described {
				out = append(out, fmt.Sprintf("%s %s %s %s %s %s %s", d.Permission, d.Principal, d.Host, d.Operation, d.Type, d.Pattern, d.Name))
			}
		}
		sort.Strings(out)
		return out
	}
	all := kadm.NewACLs().AnyResource().Allow().Deny().AllowHosts().DenyHosts().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny)
	if got := describe(all); len(got) != 5 {
		t.Fatalf("every acl: %q", got)
	}
	match := kadm.NewACLs().Topics("app-secret").Allow().Deny().AllowHosts().DenyHosts().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternMatch)
	want := []string{"ALLOW User:bob 127.0.0.1 ALL TOPIC PREFIXED app-", "DENY User:bob * READ TOPIC LITERAL app-secret"}
	if got := describe(match); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("MATCH app-secret = %q, want %q", got, want)
	}

	// Validation, with Kafka's errors.
	raw := func(c kmsg.CreateACLsRequestCreation) *kmsg.CreateACLsResponseResult {
		req := kmsg.NewPtrCreateACLsRequest()
		req.Creations = append(req.Creations, c)
		resp, err := req.RequestWith(ctx, ab.as(t, "admin"))
		if err != nil {
			t.Fatal(err)
		}
		return &resp.Results[0]
	}
	good := kmsg.NewCreateACLsRequestCreation()
	good.ResourceType, good.ResourceName, good.ResourcePatternType = kmsg.ACLResourceTypeTopic, "x", kmsg.ACLResourcePatternTypeLiteral
	good.Principal, good.Host, good.Operation, good.PermissionType = "User:alice", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow
	for _, tt := range []struct {
		name string
		mod  func(*kmsg.CreateACLsRequestCreation)
	}{
		{"empty name", func(c *kmsg.CreateACLsRequestCreation) { c.ResourceName = "" }},
		{"pattern MATCH", func(c *kmsg.CreateACLsRequestCreation) { c.ResourcePatternType = kmsg.ACLResourcePatternTypeMatch }},
		{"operation ANY", func(c *kmsg.CreateACLsRequestCreation) { c.Operation = kmsg.ACLOperationAny }},
		{"permission ANY", func(c *kmsg.CreateACLsRequestCreation) { c.PermissionType = kmsg.ACLPermissionTypeAny }},
		{"resource ANY", func(c *kmsg.CreateACLsRequestCreation) { c.ResourceType = kmsg.ACLResourceTypeAny }},
		{"principal without type", func(c *kmsg.CreateACLsRequestCreation) { c.Principal = "alice" }},
		{"cluster name", func(c *kmsg.CreateACLsRequestCreation) { c.ResourceType = kmsg.ACLResourceTypeCluster }},
	} {
		c := good
		tt.mod(&c)
		if r := raw(c); r.ErrorCode != kerr.InvalidRequest.Code || r.ErrorMessage == nil {
			t.Errorf("%s: error %d %v, want INVALID_REQUEST with a message", tt.name, r.ErrorCode, r.ErrorMessage)
		}
	}

	// alice is no super user and has no ALTER/DESCRIBE on the cluster.
	aliceAdm := kadm.NewClient(ab.as(t, "alice"))
	cres, err := aliceAdm.CreateACLs(ctx, kadm.NewACLs().Allow("User:alice").Topics("t").Operations(kadm.OpRead))
	if err != nil || len(cres) != 1 || !errors.Is(cres[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alice CreateACLs = %+v, %v; want CLUSTER_AUTHORIZATION_FAILED", cres, err)
	}
	dres, err := aliceAdm.DescribeACLs(ctx, all)
	if err != nil || len(dres) != 1 || !errors.Is(dres[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alice DescribeACLs = %+v, %v; want CLUSTER_AUTHORIZATION_FAILED", dres, err)
	}

	// DeleteAcls answers what it deleted, per filter.
	del, err := adm.DeleteACLs(ctx, kadm.NewACLs().Topics("app-").Groups("app-").Allow("User:bob").AllowHosts("127.0.0.1").Operations(kadm.OpAll).ResourcePatternType(kadm.ACLPatternPrefixed))
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for _, r := range del {
		if r.Err != nil {
			t.Fatalf("delete: %v", r.Err)
		}
		deleted += len(r.Deleted)
	}
	if deleted != 2 {
		t.Fatalf("deleted %d bindings, want 2: %+v", deleted, del)
	}
	if got := describe(all); len(got) != 3 {
		t.Fatalf("after delete: %q", got)
	}
}

// TestACLProduceFetchMetadata checks the per-partition and per-topic errors
// of the data path: WRITE for Produce, READ for Fetch, DESCRIBE for
// Metadata (which lists only what the principal may see), CREATE for
// auto-creation, and that an anonymous client gets nothing once the
// broker refuses what no ACL allows.
func TestACLProduceFetchMetadata(t *testing.T) {
	ab := newACLBroker(t, func(c *testBrokerConfig) { c.DenyIfNoACLFound = true })
	ctx := testCtx(t)
	adm := kadm.NewClient(ab.as(t, "admin"))
	for _, topic := range []string{"allowed", "denied", "app-1"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	ab.allow(t, kadm.NewACLs().Allow("User:alice").Topics("allowed").Operations(kadm.OpRead, kadm.OpWrite))
	ab.allow(t, kadm.NewACLs().Allow("User:alice").Topics("app-").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternPrefixed))
	alice := ab.as(t, "alice", kgo.RecordRetries(0), kgo.AllowAutoTopicCreation())

	// Produce.
	if err := alice.ProduceSync(ctx, &kgo.Record{Topic: "allowed", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("produce to allowed: %v", err)
	}
	if err := alice.ProduceSync(ctx, &kgo.Record{Topic: "denied", Key: []byte("k"), Value: []byte("v")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("produce to denied = %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	preq := kmsg.NewPtrProduceRequest()
	preq.Acks, preq.TimeoutMillis = -1, 5000
	for _, topic := range []string{"denied", "app-1"} {
		pt := kmsg.NewProduceRequestTopic()
		pt.Topic = topic
		pp := kmsg.NewProduceRequestTopicPartition()
		pt.Partitions = append(pt.Partitions, pp)
		preq.Topics = append(preq.Topics, pt)
	}
	presp, err := preq.RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range presp.Topics {
		if pt.Partitions[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
			t.Errorf("raw produce to %s: error %d, want TOPIC_AUTHORIZATION_FAILED", pt.Topic, pt.Partitions[0].ErrorCode)
		}
	}
	txnID := "txn-1"
	preq.TransactionID = &txnID
	preq.Topics = preq.Topics[:1]
	preq.Topics[0].Topic = "allowed"
	if presp, err = preq.RequestWith(ctx, alice); err != nil || presp.Topics[0].Partitions[0].ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Fatalf("produce with a transactional id: %+v %v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", presp, err)
	}

	// Fetch.
	freq := kmsg.NewPtrFetchRequest()
	freq.MaxBytes = 1 << 20
	for _, topic := range []string{"allowed", "denied", "app-1"} {
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = topic
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.PartitionMaxBytes = 1 << 20
		ft.Partitions = append(ft.Partitions, fp)
		freq.Topics = append(freq.Topics, ft)
	}
	fresp, err := freq.RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	wantFetch := map[string]int16{"allowed": 0, "denied": kerr.TopicAuthorizationFailed.Code, "app-1": 0}
	for _, ft := range fresp.Topics {
		if got := ft.Partitions[0].ErrorCode; got != wantFetch[ft.Topic] {
			t.Errorf("fetch %s: error %d, want %d", ft.Topic, got, wantFetch[ft.Topic])
		}
	}

	// Metadata: the full list holds what alice may describe; named topics
	// she may not describe, existing or not, are TOPIC_AUTHORIZATION_FAILED.
	mresp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, mt := range mresp.Topics {
		listed = append(listed, *mt.Topic)
	}
	sort.Strings(listed)
	if fmt.Sprint(listed) != "[allowed app-1]" {
		t.Fatalf("alice's metadata lists %q, want [allowed app-1]", listed)
	}
	// KIP-430: READ and WRITE, and the DESCRIBE they imply.
	oreq := kmsg.NewPtrMetadataRequest()
	oreq.IncludeTopicAuthorizedOperations = true
	ot := kmsg.NewMetadataRequestTopic()
	ot.Topic = kmsg.StringPtr("allowed")
	oreq.Topics = append(oreq.Topics, ot)
	if mresp, err = oreq.RequestWith(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if got, want := mresp.Topics[0].AuthorizedOperations, int32(1<<3|1<<4|1<<8); got != want {
		t.Fatalf("authorized operations on allowed: %b, want %b", got, want)
	}
	mreq := kmsg.NewPtrMetadataRequest()
	mreq.AllowAutoTopicCreation = true
	for _, topic := range []string{"denied", "no-such-topic", "app-new"} {
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(topic)
		mreq.Topics = append(mreq.Topics, mt)
	}
	if mresp, err = mreq.RequestWith(ctx, alice); err != nil {
		t.Fatal(err)
	}
	for _, mt := range mresp.Topics {
		// app-new: alice may describe it (prefixed READ) but not create it.
		if mt.ErrorCode != kerr.TopicAuthorizationFailed.Code {
			t.Errorf("metadata %s: error %d, want TOPIC_AUTHORIZATION_FAILED", *mt.Topic, mt.ErrorCode)
		}
	}
	if _, ok := ab.Node.Topic("app-new"); ok {
		t.Fatal("app-new was auto-created without CREATE")
	}
	ab.allow(t, kadm.NewACLs().Allow("User:alice").Topics("app-").Operations(kadm.OpCreate).ResourcePatternType(kadm.ACLPatternPrefixed))
	if mresp, err = mreq.RequestWith(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if e := mresp.Topics[2].ErrorCode; e != 0 {
		t.Fatalf("metadata app-new with CREATE: error %d", e)
	}

	// The anonymous PLAINTEXT client: no ACL names it.
	anon := ab.client(t, kgo.RecordRetries(0))
	if err := anon.ProduceSync(ctx, &kgo.Record{Topic: "allowed", Key: []byte("k"), Value: []byte("v")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("anonymous produce = %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if mresp, err = kmsg.NewPtrMetadataRequest().RequestWith(ctx, anon); err != nil || len(mresp.Topics) != 0 {
		t.Fatalf("anonymous metadata lists %d topics (%v), want none", len(mresp.Topics), err)
	}
	if got := testutil.ToFloat64(ab.Broker.metrics.authorizationDenied.WithLabelValues("TOPIC")); got == 0 {
		t.Fatal("no denial counted")
	}
}

// TestACLAllowEveryoneIfNoACLFound: with the flag on (the default) a
// resource no binding names is open to all, and the first binding on it
// closes it to the others; with it off only super users and bound
// principals get in.
func TestACLAllowEveryoneIfNoACLFound(t *testing.T) {
	ctx := testCtx(t)
	t.Run("on", func(t *testing.T) {
		ab := newACLBroker(t)
		anon := ab.client(t, kgo.RecordRetries(0), kgo.AllowAutoTopicCreation())
		if err := anon.ProduceSync(ctx, &kgo.Record{Topic: "open", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("produce with no acls: %v", err)
		}
		ab.allow(t, kadm.NewACLs().Allow("User:alice").Topics("open").Operations(kadm.OpWrite))
		if err := anon.ProduceSync(ctx, &kgo.Record{Topic: "open", Key: []byte("k"), Value: []byte("v")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("anonymous produce after an acl on the topic = %v, want TOPIC_AUTHORIZATION_FAILED", err)
		}
		if err := ab.as(t, "alice").ProduceSync(ctx, &kgo.Record{Topic: "open", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("alice: %v", err)
		}
	})
	t.Run("off", func(t *testing.T) {
		ab := newACLBroker(t, func(c *testBrokerConfig) { c.DenyIfNoACLFound = true })
		bob := ab.as(t, "bob", kgo.RecordRetries(0), kgo.AllowAutoTopicCreation())
		if err := bob.ProduceSync(ctx, &kgo.Record{Topic: "open", Key: []byte("k"), Value: []byte("v")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("bob with no acls = %v, want TOPIC_AUTHORIZATION_FAILED", err)
		}
		if err := ab.as(t, "admin", kgo.AllowAutoTopicCreation()).ProduceSync(ctx, &kgo.Record{Topic: "open", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("super user: %v", err)
		}
	})
}

// testCtx is a context that ends with the test or after 30 s.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestACLErrorsPerAPI sends every checked API as a principal with no
// rights on a broker that refuses what no ACL allows, and checks the
// authorization error lands where Kafka puts it.
func TestACLErrorsPerAPI(t *testing.T) {
	ab := newACLBroker(t, func(c *testBrokerConfig) { c.DenyIfNoACLFound = true })
	ctx := testCtx(t)
	if _, err := kadm.NewClient(ab.as(t, "admin")).CreateTopic(ctx, 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	bob := ab.as(t, "bob")
	const (
		topicDenied   = 29 // kerr.TopicAuthorizationFailed.Code
		groupDenied   = 30
		clusterDenied = 31
		txnDenied     = 53
	)
	txn := "tx"
	tests := []struct {
		name string
		req  kmsg.Request
		code func(kmsg.Response) int16
		want int16
	}{
		{"ListOffsets", func() kmsg.Request {
			r := kmsg.NewPtrListOffsetsRequest()
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = "t"
			rt.Partitions = []kmsg.ListOffsetsRequestTopicPartition{kmsg.NewListOffsetsRequestTopicPartition()}
			r.Topics = append(r.Topics, rt)
			return r
		}(), func(r kmsg.Response) int16 { return r.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0].ErrorCode }, topicDenied},
		{"OffsetCommit", func() kmsg.Request {
			r := kmsg.NewPtrOffsetCommitRequest()
			r.Group, r.Generation = "g", -1
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic = "t"
			rt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{kmsg.NewOffsetCommitRequestTopicPartition()}
			r.Topics = append(r.Topics, rt)
			return r
		}(), func(r kmsg.Response) int16 { return r.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode }, groupDenied},
		{"OffsetFetch", func() kmsg.Request {
			r := kmsg.NewPtrOffsetFetchRequest()
			g := kmsg.NewOffsetFetchRequestGroup()
			g.Group = "g"
			r.Groups = append(r.Groups, g)
			return r
		}(), func(r kmsg.Response) int16 { return r.(*kmsg.OffsetFetchResponse).Groups[0].ErrorCode }, groupDenied},
		{"FindCoordinator group", func() kmsg.Request {
			r := kmsg.NewPtrFindCoordinatorRequest()
			r.CoordinatorKeys = []string{"g"}
			return r
		}(), func(r kmsg.Response) int16 { return r.(*kmsg.FindCoordinatorResponse).Coordinators[0].ErrorCode }, groupDenied},
		{"FindCoordinator txn", func() kmsg.Request {
			r := kmsg.NewPtrFindCoordinatorRequest()
			r.CoordinatorType, r.CoordinatorKeys = 1, []string{txn}
			return r
		}(), func(r kmsg.Response) int16 { return r.(*kmsg.FindCoordinatorResponse).Coordinators[0].ErrorCode }, txnDenied},
		{"JoinGroup", func() kmsg.Request {
			r := kmsg.NewPtrJoinGroupRequest()
			r.Group, r.ProtocolType, r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = "g", "consumer", 10000, 10000
			p := kmsg.NewJoinGroupRequestProtocol()
			p.Name = "range"
			r.Protocols = append(r.Protocols, p)
			return r
		}(), func(r kmsg.Response) int16 { return r.(*kmsg.JoinGroupResponse).ErrorCode }, groupDenied},
		{"Heartbeat", &kmsg.HeartbeatRequest{Group: "g", MemberID: "m"}, func(r kmsg.Response) int16 { return r.(*kmsg.HeartbeatResponse).ErrorCode }, groupDenied},
		{"SyncGroup", &kmsg.SyncGroupRequest{Group: "g", MemberID: "m"}, func(r kmsg.Response) int16 { return r.(*kmsg.SyncGroupResponse).ErrorCode }, groupDenied},
		{"LeaveGroup", &kmsg.LeaveGroupRequest{Group: "g", Version: 3, Members: []kmsg.LeaveGroupRequestMember{{MemberID: "m"}}},
			func(r kmsg.Response) int16 { return r.(*kmsg.LeaveGroupResponse).ErrorCode }, groupDenied},
		{"DescribeGroups", &kmsg.DescribeGroupsRequest{Groups: []string{"g"}}, func(r kmsg.Response) int16 { return r.(*kmsg.DescribeGroupsResponse).Groups[0].ErrorCode }, groupDenied},
		{"DeleteGroups", &kmsg.DeleteGroupsRequest{Groups: []string{"g"}}, func(r kmsg.Response) int16 { return r.(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode }, groupDenied},
		{"OffsetDelete", &kmsg.OffsetDeleteRequest{Group: "g"}, func(r kmsg.Response) int16 { return r.(*kmsg.OffsetDeleteResponse).ErrorCode }, groupDenied},
		{"CreateTopics", func() kmsg.Request {
			r := kmsg.NewPtrCreateTopicsRequest()
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "new", 1, -1
			r.Topics = append(r.Topics, rt)
			return r
		}(), func(r kmsg.Response) int16 { return r.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode }, topicDenied},
		{"DeleteTopics", &kmsg.DeleteTopicsRequest{TopicNames: []string{"t"}, Topics: []kmsg.DeleteTopicsRequestTopic{{Topic: kmsg.StringPtr("t")}}}, func(r kmsg.Response) int16 { return r.(*kmsg.DeleteTopicsResponse).Topics[0].ErrorCode }, topicDenied},
		{"DeleteRecords", &kmsg.DeleteRecordsRequest{Topics: []kmsg.DeleteRecordsRequestTopic{{Topic: "t", Partitions: []kmsg.DeleteRecordsRequestTopicPartition{{Offset: 0}}}}},
			func(r kmsg.Response) int16 { return r.(*kmsg.DeleteRecordsResponse).Topics[0].Partitions[0].ErrorCode }, topicDenied},
		{"CreatePartitions", &kmsg.CreatePartitionsRequest{Topics: []kmsg.CreatePartitionsRequestTopic{{Topic: "t", Count: 2}}},
			func(r kmsg.Response) int16 { return r.(*kmsg.CreatePartitionsResponse).Topics[0].ErrorCode }, topicDenied},
		{"DescribeConfigs topic", &kmsg.DescribeConfigsRequest{Resources: []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "t"}}},
			func(r kmsg.Response) int16 { return r.(*kmsg.DescribeConfigsResponse).Resources[0].ErrorCode }, topicDenied},
		{"DescribeConfigs broker", &kmsg.DescribeConfigsRequest{Resources: []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeBroker, ResourceName: "1"}}},
			func(r kmsg.Response) int16 { return r.(*kmsg.DescribeConfigsResponse).Resources[0].ErrorCode }, clusterDenied},
		{"IncrementalAlterConfigs", &kmsg.IncrementalAlterConfigsRequest{Resources: []kmsg.IncrementalAlterConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "t"}}},
			func(r kmsg.Response) int16 { return r.(*kmsg.IncrementalAlterConfigsResponse).Resources[0].ErrorCode }, topicDenied},
		{"InitProducerId idempotent", &kmsg.InitProducerIDRequest{ProducerID: -1, ProducerEpoch: -1},
			func(r kmsg.Response) int16 { return r.(*kmsg.InitProducerIDResponse).ErrorCode }, clusterDenied},
		{"InitProducerId transactional", &kmsg.InitProducerIDRequest{TransactionalID: &txn, TransactionTimeoutMillis: 60000, ProducerID: -1, ProducerEpoch: -1},
			func(r kmsg.Response) int16 { return r.(*kmsg.InitProducerIDResponse).ErrorCode }, txnDenied},
		{"AddPartitionsToTxn", &kmsg.AddPartitionsToTxnRequest{TransactionalID: txn, Topics: []kmsg.AddPartitionsToTxnRequestTopic{{Topic: "t", Partitions: []int32{0}}}},
			func(r kmsg.Response) int16 {
				return r.(*kmsg.AddPartitionsToTxnResponse).Topics[0].Partitions[0].ErrorCode
			}, txnDenied},
		{"AddOffsetsToTxn", &kmsg.AddOffsetsToTxnRequest{TransactionalID: txn, Group: "g"}, func(r kmsg.Response) int16 { return r.(*kmsg.AddOffsetsToTxnResponse).ErrorCode }, txnDenied},
		{"EndTxn", &kmsg.EndTxnRequest{TransactionalID: txn}, func(r kmsg.Response) int16 { return r.(*kmsg.EndTxnResponse).ErrorCode }, txnDenied},
		{"TxnOffsetCommit", &kmsg.TxnOffsetCommitRequest{TransactionalID: txn, Group: "g", Topics: []kmsg.TxnOffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.TxnOffsetCommitRequestTopicPartition{{}}}}},
			func(r kmsg.Response) int16 {
				return r.(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
			}, txnDenied},
		{"DescribeLogDirs", &kmsg.DescribeLogDirsRequest{Version: 4}, func(r kmsg.Response) int16 { return r.(*kmsg.DescribeLogDirsResponse).ErrorCode }, clusterDenied},
		{"DescribeUserScramCredentials", &kmsg.DescribeUserSCRAMCredentialsRequest{}, func(r kmsg.Response) int16 { return r.(*kmsg.DescribeUserSCRAMCredentialsResponse).ErrorCode }, clusterDenied},
		{"AlterUserScramCredentials", &kmsg.AlterUserSCRAMCredentialsRequest{Deletions: []kmsg.AlterUserSCRAMCredentialsRequestDeletion{{Name: "alice", Mechanism: 1}}},
			func(r kmsg.Response) int16 { return r.(*kmsg.AlterUserSCRAMCredentialsResponse).Results[0].ErrorCode }, clusterDenied},
		{"DescribeQuorum", func() kmsg.Request {
			r := kmsg.NewPtrDescribeQuorumRequest()
			rt := kmsg.NewDescribeQuorumRequestTopic()
			rt.Topic = metadataLogTopic
			rt.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{kmsg.NewDescribeQuorumRequestTopicPartition()}
			r.Topics = append(r.Topics, rt)
			return r
		}(), func(r kmsg.Response) int16 { return r.(*kmsg.DescribeQuorumResponse).ErrorCode }, clusterDenied},
		{"DescribeTopicPartitions", &kmsg.DescribeTopicPartitionsRequest{Topics: []kmsg.DescribeTopicPartitionsRequestTopic{{Topic: "t"}}, ResponsePartitionLimit: 10},
			func(r kmsg.Response) int16 { return r.(*kmsg.DescribeTopicPartitionsResponse).Topics[0].ErrorCode }, topicDenied},
		{"WriteTxnMarkers", &kmsg.WriteTxnMarkersRequest{Version: 1, Markers: []kmsg.WriteTxnMarkersRequestMarker{{
			ProducerID: 1, Topics: []kmsg.WriteTxnMarkersRequestMarkerTopic{{Topic: "t", Partitions: []int32{0}}}}}},
			func(r kmsg.Response) int16 {
				return r.(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics[0].Partitions[0].ErrorCode
			}, clusterDenied},
		{"DescribeProducers", &kmsg.DescribeProducersRequest{Topics: []kmsg.DescribeProducersRequestTopic{{Topic: "t", Partitions: []int32{0}}}},
			func(r kmsg.Response) int16 {
				return r.(*kmsg.DescribeProducersResponse).Topics[0].Partitions[0].ErrorCode
			}, topicDenied},
		{"DescribeTransactions", &kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{txn}},
			func(r kmsg.Response) int16 {
				return r.(*kmsg.DescribeTransactionsResponse).TransactionStates[0].ErrorCode
			}, txnDenied},
	}
	// Straight to the broker: the client's own routing (FindCoordinator,
	// Metadata) would stop at their authorization errors first.
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, bob); err != nil {
		t.Fatal(err)
	}
	direct := bob.DiscoveredBrokers()[0]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := direct.Request(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.code(resp); got != tt.want {
				t.Fatalf("error %d (%v), want %d (%v)", got, kerr.ErrorForCode(got), tt.want, kerr.ErrorForCode(tt.want))
			}
		})
	}
	// Lists hold only what bob may describe: nothing (the admin's open
	// transaction is left out of bob's ListTransactions).
	admin := ab.as(t, "admin", kgo.TransactionalID(txn))
	if err := admin.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ProduceSync(ctx, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lt, err := kmsg.NewPtrListTransactionsRequest().RequestWith(ctx, bob)
	if err != nil || len(lt.TransactionStates) != 0 {
		t.Fatalf("ListTransactions as bob = %+v, %v; want no transactions", lt, err)
	}
	lt, err = kmsg.NewPtrListTransactionsRequest().RequestWith(ctx, admin)
	if err != nil || len(lt.TransactionStates) != 1 || lt.TransactionStates[0].TransactionalID != txn {
		t.Fatalf("ListTransactions as admin = %+v, %v; want %q", lt, err, txn)
	}
	lg, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctx, bob)
	if err != nil || len(lg.Groups) != 0 {
		t.Fatalf("ListGroups = %+v, %v; want no groups", lg, err)
	}
}

// TestACLConsumerGroup: a consumer with READ on its topic and group joins,
// consumes and commits; the same client without READ on the group gets
// GROUP_AUTHORIZATION_FAILED.
func TestACLConsumerGroup(t *testing.T) {
	ab := newACLBroker(t, func(c *testBrokerConfig) { c.DenyIfNoACLFound = true })
	ctx := testCtx(t)
	admin := ab.as(t, "admin")
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, 1, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	if err := admin.ProduceSync(ctx, &kgo.Record{Topic: "events", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ab.allow(t, kadm.NewACLs().Allow("User:alice").Topics("events").Groups("readers").Operations(kadm.OpRead))
	alice := ab.as(t, "alice", kgo.ConsumeTopics("events"), kgo.ConsumerGroup("readers"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for got := 0; got == 0; {
		fs := alice.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatal(err)
		}
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got = fs.NumRecords()
	}
	if err := alice.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	ab.allow(t, kadm.NewACLs().Allow("User:bob").Topics("events").Operations(kadm.OpRead))
	bob := ab.as(t, "bob", kgo.ConsumeTopics("events"), kgo.ConsumerGroup("readers"))
	fs := bob.PollFetches(ctx)
	var gotErr error
	fs.EachError(func(_ string, _ int32, err error) { gotErr = err })
	if !errors.Is(gotErr, kerr.GroupAuthorizationFailed) {
		t.Fatalf("bob's poll error = %v, want GROUP_AUTHORIZATION_FAILED", gotErr)
	}
}

// TestACLTransactions: a transactional producer with WRITE on its
// transactional id (prefixed) and its topic commits; without the id's ACL
// it is refused at InitProducerId.
func TestACLTransactions(t *testing.T) {
	ab := newACLBroker(t, func(c *testBrokerConfig) { c.DenyIfNoACLFound = true })
	ctx := testCtx(t)
	if _, err := kadm.NewClient(ab.as(t, "admin")).CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	ab.allow(t, kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpWrite, kadm.OpRead))
	ab.allow(t, kadm.NewACLs().Allow("User:alice").TransactionalIDs("alice-").Operations(kadm.OpWrite).ResourcePatternType(kadm.ACLPatternPrefixed))

	p := ab.as(t, "alice", kgo.TransactionalID("alice-1"), kgo.DefaultProduceTopic("orders"))
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("transactional produce: %v", err)
	}
	if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}

	other := ab.as(t, "alice", kgo.TransactionalID("bob-1"), kgo.DefaultProduceTopic("orders"), kgo.RecordRetries(0))
	err := other.BeginTransaction()
	if err == nil {
		err = other.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("v")}).FirstErr()
	}
	// kgo reports it as its fatal producer-id error, with the Kafka error's
	// name in the text.
	if err == nil || !strings.Contains(err.Error(), "TRANSACTIONAL_ID_AUTHORIZATION_FAILED") {
		t.Fatalf("produce with an unauthorized transactional id: %v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", err)
	}
}
