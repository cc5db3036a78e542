package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The pre-pass over a request body, run before kmsg decodes it.
//
// kmsg sizes every array from its length prefix and decodes each element into
// a Go struct that can be many times larger than its bytes on the wire: a
// 16 MiB Metadata v1 request of empty topic names decodes into 384 MiB (8 M
// elements of 48 bytes). kmsg does check that a count is not larger than the
// bytes left, which stops absurd counts but not this.
//
// walkBody walks the body field by field without allocating, checking every
// declared length (strings, bytes, arrays, tagged fields) against the bytes
// that remain, and adds up what kmsg will allocate for it: slices of
// structs, copied strings, string headers of nullable strings, tag maps. A
// body that does not walk closes the connection before kmsg sees it; one that
// does has its estimate charged to the memory budget (budget.go) before it is
// decoded, so a frame can make the broker allocate many times its size only
// within what the budget allows.
//
// The wire layout comes from kmsg's own types by reflection: fields in
// declaration order are fields in wire order, Go types give wire types (the
// flexible versions' compact encodings follow from IsFlexible), and
// fieldVersions below lists the fields that are not on the wire in every
// version, or are tagged fields (which live in the tag section). That table
// is checked by TestWalkBodyMatchesKmsg, which encodes random requests of
// every registered API at every served version with kmsg and walks them.

// fieldRange is the versions in which a field is on the wire. tagged fields
// are never inline: flexible versions carry them in the tag section.
type fieldRange struct {
	min, max int16
	tagged   bool
}

const anyVersion = math.MaxInt16

// fieldVersions holds every field of a registered request type that is not
// inline in all versions, by "StructName.FieldName": the version ranges of
// the Kafka protocol's message definitions, as kmsg encodes them
// (TestWalkBodyMatchesKmsg).
var fieldVersions = map[string]fieldRange{
	"ProduceRequest.TransactionID": {3, anyVersion, false},
	"ProduceRequestTopic.Topic":    {0, 12, false},
	"ProduceRequestTopic.TopicID":  {13, anyVersion, false},

	"FetchRequest.ClusterID":                              {tagged: true},
	"FetchRequest.ReplicaID":                              {0, 14, false},
	"FetchRequest.ReplicaState":                           {tagged: true},
	"FetchRequest.MaxBytes":                               {3, anyVersion, false},
	"FetchRequest.IsolationLevel":                         {4, anyVersion, false},
	"FetchRequest.SessionID":                              {7, anyVersion, false},
	"FetchRequest.SessionEpoch":                           {7, anyVersion, false},
	"FetchRequest.ForgottenTopics":                        {7, anyVersion, false},
	"FetchRequest.Rack":                                   {11, anyVersion, false},
	"FetchRequestTopic.Topic":                             {0, 12, false},
	"FetchRequestTopic.TopicID":                           {13, anyVersion, false},
	"FetchRequestTopicPartition.CurrentLeaderEpoch":       {9, anyVersion, false},
	"FetchRequestTopicPartition.LastFetchedEpoch":         {12, anyVersion, false},
	"FetchRequestTopicPartition.LogStartOffset":           {5, anyVersion, false},
	"FetchRequestTopicPartition.ReplicaDirectoryID":       {tagged: true},
	"FetchRequestTopicPartition.HighWatermark":            {tagged: true},
	"FetchRequestForgottenTopic.Topic":                    {7, 12, false},
	"FetchRequestForgottenTopic.TopicID":                  {13, anyVersion, false},
	"ListOffsetsRequest.IsolationLevel":                   {2, anyVersion, false},
	"ListOffsetsRequest.TimeoutMillis":                    {10, anyVersion, false},
	"ListOffsetsRequestTopicPartition.MaxNumOffsets":      {0, 0, false},
	"ListOffsetsRequestTopicPartition.CurrentLeaderEpoch": {4, anyVersion, false},

	"MetadataRequestTopic.TopicID":                       {10, anyVersion, false},
	"MetadataRequest.AllowAutoTopicCreation":             {4, anyVersion, false},
	"MetadataRequest.IncludeClusterAuthorizedOperations": {8, 10, false},
	"MetadataRequest.IncludeTopicAuthorizedOperations":   {8, anyVersion, false},

	"OffsetCommitRequest.Generation":                    {1, anyVersion, false},
	"OffsetCommitRequest.MemberID":                      {1, anyVersion, false},
	"OffsetCommitRequest.InstanceID":                    {7, anyVersion, false},
	"OffsetCommitRequest.RetentionTimeMillis":           {2, 4, false},
	"OffsetCommitRequestTopic.Topic":                    {0, 9, false},
	"OffsetCommitRequestTopic.TopicID":                  {10, anyVersion, false},
	"OffsetCommitRequestTopicPartition.Timestamp":       {1, 1, false},
	"OffsetCommitRequestTopicPartition.LeaderEpoch":     {6, anyVersion, false},
	"OffsetFetchRequest.Group":                          {0, 7, false},
	"OffsetFetchRequest.Topics":                         {0, 7, false},
	"OffsetFetchRequest.Groups":                         {8, anyVersion, false},
	"OffsetFetchRequest.RequireStable":                  {7, anyVersion, false},
	"OffsetFetchRequestGroup.MemberID":                  {9, anyVersion, false},
	"OffsetFetchRequestGroup.MemberEpoch":               {9, anyVersion, false},
	"OffsetFetchRequestGroupTopic.Topic":                {8, 9, false},
	"OffsetFetchRequestGroupTopic.TopicID":              {10, anyVersion, false},
	"FindCoordinatorRequest.CoordinatorKey":             {0, 3, false},
	"FindCoordinatorRequest.CoordinatorType":            {1, anyVersion, false},
	"FindCoordinatorRequest.CoordinatorKeys":            {4, anyVersion, false},
	"JoinGroupRequest.RebalanceTimeoutMillis":           {1, anyVersion, false},
	"JoinGroupRequest.InstanceID":                       {5, anyVersion, false},
	"JoinGroupRequest.Reason":                           {8, anyVersion, false},
	"HeartbeatRequest.InstanceID":                       {3, anyVersion, false},
	"LeaveGroupRequest.MemberID":                        {0, 2, false},
	"LeaveGroupRequest.Members":                         {3, anyVersion, false},
	"LeaveGroupRequestMember.Reason":                    {5, anyVersion, false},
	"SyncGroupRequest.InstanceID":                       {3, anyVersion, false},
	"SyncGroupRequest.ProtocolType":                     {5, anyVersion, false},
	"SyncGroupRequest.Protocol":                         {5, anyVersion, false},
	"DescribeGroupsRequest.IncludeAuthorizedOperations": {3, anyVersion, false},
	"ListGroupsRequest.StatesFilter":                    {4, anyVersion, false},
	"ListGroupsRequest.TypesFilter":                     {5, anyVersion, false},

	"ApiVersionsRequest.ClientSoftwareName":       {3, anyVersion, false},
	"ApiVersionsRequest.ClientSoftwareVersion":    {3, anyVersion, false},
	"ApiVersionsRequest.ClusterID":                {5, anyVersion, false},
	"ApiVersionsRequest.NodeID":                   {5, anyVersion, false},
	"CreateTopicsRequest.ValidateOnly":            {1, anyVersion, false},
	"DeleteTopicsRequest.TopicNames":              {0, 5, false},
	"DeleteTopicsRequest.Topics":                  {6, anyVersion, false},
	"InitProducerIDRequest.ProducerID":            {3, anyVersion, false},
	"InitProducerIDRequest.ProducerEpoch":         {3, anyVersion, false},
	"DescribeConfigsRequest.IncludeSynonyms":      {1, anyVersion, false},
	"DescribeConfigsRequest.IncludeDocumentation": {3, anyVersion, false},

	"AddPartitionsToTxnRequest.TransactionalID":        {0, 3, false},
	"AddPartitionsToTxnRequest.ProducerID":             {0, 3, false},
	"AddPartitionsToTxnRequest.ProducerEpoch":          {0, 3, false},
	"AddPartitionsToTxnRequest.Topics":                 {0, 3, false},
	"AddPartitionsToTxnRequest.Transactions":           {4, anyVersion, false},
	"TxnOffsetCommitRequest.Generation":                {3, anyVersion, false},
	"TxnOffsetCommitRequest.MemberID":                  {3, anyVersion, false},
	"TxnOffsetCommitRequest.InstanceID":                {3, anyVersion, false},
	"TxnOffsetCommitRequestTopicPartition.LeaderEpoch": {2, anyVersion, false},
	"TxnOffsetCommitRequestTopic.Topic":                {0, 5, false},
	"TxnOffsetCommitRequestTopic.TopicID":              {6, anyVersion, false},

	"WriteTxnMarkersRequestMarker.TransactionVersion": {2, anyVersion, false},
	"ListTransactionsRequest.DurationFilterMillis":    {1, anyVersion, false},
	"ListTransactionsRequest.TransactionalIDPattern":  {2, anyVersion, false},
}

// Go-side costs of decoded values, in bytes.
const (
	stringHeaderBytes = 16  // a *string's pointee (kmsg allocates one per nullable string)
	tagEntryBytes     = 128 // one entry of a kmsg.Tags map, with the map's slack
)

// allocBytes is what the runtime hands out for an n-byte allocation: n
// rounded up to its size class (at most 12.5% more, plus a little for tiny
// objects).
func allocBytes(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return n + n/8 + 16
}

type wireKind uint8

const (
	wireFixed          wireKind = iota // fixed-size field: size bytes
	wireString                         // string: copied into a new string
	wireNullableString                 // *string: a new string header plus the copy
	wireBytes                          // []byte: aliases the frame
	wireArray                          // array of elem
	wireStruct                         // struct inline: fields, then its tag section
	wireNullableStruct                 // *struct: an int8 presence byte (-1 null), then the struct
)

// wireField is one field of a request's wire layout at every version.
type wireField struct {
	name   string
	kind   wireKind
	size   int         // wireFixed
	elem   *wireField  // wireArray
	goSize int64       // wireArray: bytes of one decoded element
	fields []wireField // wireStruct
	vers   fieldRange  // versions the field is inline
}

func (f *wireField) inline(version int16) bool {
	return !f.vers.tagged && version >= f.vers.min && version <= f.vers.max
}

var (
	tagsType = reflect.TypeOf(kmsg.Tags{})
	// layouts caches the layout of each request type, by api key.
	layouts sync.Map // int16 -> *wireField
)

// requestLayout returns the wire layout of req's type, built on first use.
func requestLayout(req kmsg.Request) (*wireField, error) {
	if l, ok := layouts.Load(req.Key()); ok {
		return l.(*wireField), nil
	}
	t := reflect.TypeOf(req).Elem()
	l, err := layoutOf(t, t.Name(), true)
	if err != nil {
		return nil, err
	}
	actual, _ := layouts.LoadOrStore(req.Key(), &l)
	return actual.(*wireField), nil
}

// layoutOf builds the layout of a field of Go type t. top is true for the
// request struct itself, whose Version field is not on the wire.
func layoutOf(t reflect.Type, name string, top bool) (wireField, error) {
	f := wireField{name: name, vers: fieldRange{0, anyVersion, false}}
	switch t.Kind() {
	case reflect.Bool, reflect.Int8, reflect.Uint8, reflect.Int16, reflect.Uint16,
		reflect.Int32, reflect.Uint32, reflect.Int64, reflect.Uint64, reflect.Float64:
		f.kind, f.size = wireFixed, int(t.Size())
	case reflect.Array:
		if t.Elem().Kind() != reflect.Uint8 {
			return f, fmt.Errorf("%s: unsupported array type %s", name, t)
		}
		f.kind, f.size = wireFixed, t.Len() // uuid
	case reflect.String:
		f.kind = wireString
	case reflect.Pointer:
		switch t.Elem().Kind() {
		case reflect.String:
			f.kind = wireNullableString
		case reflect.Struct: // a nullable struct (DescribeTopicPartitions' Cursor)
			s, err := layoutOf(t.Elem(), name, false)
			if err != nil {
				return f, err
			}
			s.kind, s.goSize = wireNullableStruct, int64(t.Elem().Size())
			return s, nil
		default:
			return f, fmt.Errorf("%s: unsupported pointer type %s", name, t)
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			f.kind = wireBytes
			break
		}
		elem, err := layoutOf(t.Elem(), t.Elem().Name(), false)
		if err != nil {
			return f, err
		}
		f.kind, f.elem, f.goSize = wireArray, &elem, int64(t.Elem().Size())
	case reflect.Struct:
		f.kind = wireStruct
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if sf.Type == tagsType || top && sf.Name == "Version" {
				continue
			}
			sub, err := layoutOf(sf.Type, t.Name()+"."+sf.Name, false)
			if err != nil {
				return f, err
			}
			if r, ok := fieldVersions[t.Name()+"."+sf.Name]; ok {
				sub.vers = r
			}
			f.fields = append(f.fields, sub)
		}
	default:
		return f, fmt.Errorf("%s: unsupported type %s", name, t)
	}
	return f, nil
}

// errBodyWalk is a body whose declared lengths do not fit in its bytes.
var errBodyWalk = errors.New("request body lengths do not fit its bytes")

// walkBody walks body, the request body of req's type at req's version, and
// returns what kmsg will allocate to decode it. It stops with an error when a
// length cannot fit in the bytes that remain, or as soon as the estimate
// passes limit (errBudgetTooLarge).
func walkBody(req kmsg.Request, body []byte, limit int64) (int64, error) {
	layout, err := requestLayout(req)
	if err != nil {
		return 0, err
	}
	w := walker{b: body, version: req.GetVersion(), flexible: req.IsFlexible(), limit: limit}
	if err := w.structure(layout); err != nil {
		return w.est, err
	}
	return w.est, nil
}

type walker struct {
	b        []byte
	version  int16
	flexible bool
	est      int64
	limit    int64
}

func (w *walker) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBodyWalk, fmt.Sprintf(format, args...))
}

func (w *walker) charge(n int64) error {
	w.est += n
	if w.est > w.limit {
		return fmt.Errorf("%w: decoding needs more than %d bytes", errBudgetTooLarge, w.limit)
	}
	return nil
}

func (w *walker) skip(n int64, what string) error {
	if n < 0 || n > int64(len(w.b)) {
		return w.fail("%s of %d bytes with %d left", what, n, len(w.b))
	}
	w.b = w.b[n:]
	return nil
}

func (w *walker) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(w.b)
	if n <= 0 {
		return 0, w.fail("bad varint in %s", what)
	}
	w.b = w.b[n:]
	return v, nil
}

// length reads a length prefix: int16 (strings) or int32 (bytes, arrays) in
// non-flexible versions, a uvarint of length+1 in flexible ones. -1 is null.
func (w *walker) length(wide bool, what string) (int64, error) {
	if w.flexible {
		v, err := w.uvarint(what)
		if err != nil {
			return 0, err
		}
		if v > math.MaxInt32 {
			return 0, w.fail("%s length %d", what, v)
		}
		return int64(v) - 1, nil
	}
	if wide {
		if len(w.b) < 4 {
			return 0, w.fail("%s length truncated", what)
		}
		v := int32(binary.BigEndian.Uint32(w.b))
		w.b = w.b[4:]
		return int64(v), nil
	}
	if len(w.b) < 2 {
		return 0, w.fail("%s length truncated", what)
	}
	v := int16(binary.BigEndian.Uint16(w.b))
	w.b = w.b[2:]
	return int64(v), nil
}

func (w *walker) field(f *wireField) error {
	switch f.kind {
	case wireFixed:
		return w.skip(int64(f.size), f.name)
	case wireString, wireNullableString:
		n, err := w.length(false, f.name)
		if err != nil {
			return err
		}
		if n < -1 {
			return w.fail("%s length %d", f.name, n)
		}
		if n >= 0 {
			if f.kind == wireNullableString {
				if err := w.charge(stringHeaderBytes); err != nil {
					return err
				}
			}
			if err := w.charge(allocBytes(n)); err != nil {
				return err
			}
		}
		return w.skip(max(n, 0), f.name)
	case wireBytes:
		n, err := w.length(true, f.name)
		if err != nil {
			return err
		}
		if n < -1 {
			return w.fail("%s length %d", f.name, n)
		}
		return w.skip(max(n, 0), f.name)
	case wireArray:
		n, err := w.length(true, f.name)
		if err != nil {
			return err
		}
		if n < -1 {
			return w.fail("%s count %d", f.name, n)
		}
		// Every element takes at least one byte.
		if n > int64(len(w.b)) {
			return w.fail("%s count %d with %d bytes left", f.name, n, len(w.b))
		}
		if n <= 0 {
			return nil
		}
		if err := w.charge(allocBytes(n * f.goSize)); err != nil {
			return err
		}
		for i := int64(0); i < n; i++ {
			if err := w.field(f.elem); err != nil {
				return err
			}
		}
		return nil
	case wireStruct:
		return w.structure(f)
	case wireNullableStruct:
		if len(w.b) < 1 {
			return w.fail("%s presence truncated", f.name)
		}
		present := int8(w.b[0])
		w.b = w.b[1:]
		if present < 0 {
			return nil
		}
		if err := w.charge(allocBytes(f.goSize)); err != nil {
			return err
		}
		return w.structure(f)
	}
	return fmt.Errorf("%s: unknown wire kind %d", f.name, f.kind)
}

// structure walks a struct's inline fields, then (flexible versions) its tag
// section, whose entries kmsg keeps in a map or decodes into tagged fields.
func (w *walker) structure(f *wireField) error {
	for i := range f.fields {
		if f.fields[i].inline(w.version) {
			if err := w.field(&f.fields[i]); err != nil {
				return err
			}
		}
	}
	if !w.flexible {
		return nil
	}
	n, err := w.uvarint(f.name + " tag count")
	if err != nil {
		return err
	}
	// A tag takes at least two bytes: its key and its size.
	if n > uint64(len(w.b)/2) {
		return w.fail("%s: %d tags with %d bytes left", f.name, n, len(w.b))
	}
	for ; n > 0; n-- {
		if _, err := w.uvarint(f.name + " tag"); err != nil {
			return err
		}
		size, err := w.uvarint(f.name + " tag size")
		if err != nil {
			return err
		}
		if size > uint64(len(w.b)) {
			return w.fail("%s: tag of %d bytes with %d left", f.name, size, len(w.b))
		}
		if err := w.charge(tagEntryBytes + allocBytes(int64(size))); err != nil {
			return err
		}
		w.b = w.b[size:]
	}
	return nil
}
