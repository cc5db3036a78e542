package topicconfig

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shardcache/shardcache/shardstore"
)

func TestDefsSortedForLookup(t *testing.T) {
	if !slices.IsSortedFunc(defs, func(a, b Def) int { return strings.Compare(a.Name, b.Name) }) {
		t.Fatal("defs must stay sorted by name: Lookup binary-searches them")
	}
	for _, d := range Defs() {
		if err := Validate(d.Name, d.Default); err != nil {
			t.Errorf("default of %s does not validate: %v", d.Name, err)
		}
		if got, ok := Lookup(d.Name); !ok || got.Name != d.Name {
			t.Errorf("Lookup(%s) = %v, %v", d.Name, got.Name, ok)
		}
		switch d.Type {
		case TypeBoolean, TypeString, TypeInt, TypeLong, TypeDouble, TypeList:
		default:
			t.Errorf("%s: type %q", d.Name, d.Type)
		}
	}
}

// TestKafkaTopicConfigsAccepted is the regression test for Kafka Streams and
// Connect failing to create topics: every topic-level config of Kafka 4.x
// (LogConfig) is known, with its type.
func TestKafkaTopicConfigsAccepted(t *testing.T) {
	kafka := map[string]string{
		"cleanup.policy": TypeList, "compression.gzip.level": TypeInt, "compression.lz4.level": TypeInt,
		"compression.type": TypeString, "compression.zstd.level": TypeInt, "delete.retention.ms": TypeLong,
		"file.delete.delay.ms": TypeLong, "flush.messages": TypeLong, "flush.ms": TypeLong,
		"follower.replication.throttled.replicas": TypeList, "index.interval.bytes": TypeInt,
		"leader.replication.throttled.replicas": TypeList, "local.retention.bytes": TypeLong,
		"local.retention.ms": TypeLong, "max.compaction.lag.ms": TypeLong, "max.message.bytes": TypeInt,
		"message.timestamp.after.max.ms": TypeLong, "message.timestamp.before.max.ms": TypeLong,
		"message.timestamp.type": TypeString, "min.cleanable.dirty.ratio": TypeDouble,
		"min.compaction.lag.ms": TypeLong, "min.insync.replicas": TypeInt, "preallocate": TypeBoolean,
		"remote.copy.lag.bytes": TypeLong, "remote.copy.lag.ms": TypeLong, "remote.log.copy.disable": TypeBoolean,
		"remote.log.delete.on.disable": TypeBoolean, "remote.storage.enable": TypeBoolean,
		"retention.bytes": TypeLong, "retention.ms": TypeLong, "segment.bytes": TypeInt,
		"segment.index.bytes": TypeInt, "segment.jitter.ms": TypeLong, "segment.ms": TypeLong,
		"unclean.leader.election.enable": TypeBoolean,
	}
	if len(defs) != len(kafka) {
		t.Errorf("%d configs defined, Kafka has %d", len(defs), len(kafka))
	}
	for name, typ := range kafka {
		d, ok := Lookup(name)
		if !ok || d.Type != typ {
			t.Errorf("%s: defined %v, type %q; want %q", name, ok, d.Type, typ)
		}
	}
	// What Kafka Streams sets on a windowed changelog and a repartition topic.
	streams := map[string]string{
		"cleanup.policy": "compact,delete", "retention.ms": "172800000", "message.timestamp.type": "CreateTime",
		"segment.bytes": "52428800", "segment.ms": "600000", "max.message.bytes": "1048588", "min.insync.replicas": "1",
	}
	if err := ValidateAll(streams); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name, value string
		want        error
	}{
		{CleanupPolicy, "compact", nil},
		{CleanupPolicy, "delete", nil},
		{CleanupPolicy, "compact,delete", nil},
		{CleanupPolicy, "delete , compact", nil},
		{CleanupPolicy, "", nil},
		{CleanupPolicy, "compact,compact", ErrInvalid},
		{CleanupPolicy, "Compact", ErrInvalid},
		{CleanupPolicy, "compact,", ErrInvalid},
		{DeleteRetentionMs, "0", nil},
		{DeleteRetentionMs, " 10 ", nil},
		{DeleteRetentionMs, "-1", ErrInvalid},
		{DeleteRetentionMs, "1h", ErrInvalid},
		{RetentionMs, "-1", nil},
		{RetentionMs, "-2", ErrInvalid},
		{RetentionBytes, "1073741824", nil},
		{RetentionBytes, "-5", nil},
		{MaxMessageBytes, "0", nil},
		{MaxMessageBytes, "-1", ErrInvalid},
		{MaxMessageBytes, "2147483648", ErrInvalid},
		{MinCompactionLagMs, "100", nil},
		{MaxCompactionLagMs, "0", ErrInvalid},
		{"segment.bytes", "1048576", nil},
		{"segment.bytes", "1048575", ErrInvalid},
		{"segment.ms", "0", ErrInvalid},
		{"min.cleanable.dirty.ratio", "0.01", nil},
		{"min.cleanable.dirty.ratio", "1.5", ErrInvalid},
		{"min.cleanable.dirty.ratio", "NaN", ErrInvalid},
		{"compression.type", "zstd", nil},
		{"compression.type", "brotli", ErrInvalid},
		{"compression.gzip.level", "-1", nil},
		{"compression.gzip.level", "0", ErrInvalid},
		{"compression.zstd.level", "-131072", nil},
		{"compression.zstd.level", "23", ErrInvalid},
		{"message.timestamp.type", "LogAppendTime", nil},
		{"message.timestamp.type", "logappendtime", ErrInvalid},
		{"preallocate", "TRUE", nil},
		{"preallocate", "yes", ErrInvalid},
		{"unclean.leader.election.enable", "false", nil},
		{"leader.replication.throttled.replicas", "*", nil},
		{"leader.replication.throttled.replicas", "0:1,1:2", nil},
		{"leader.replication.throttled.replicas", "", nil},
		{"follower.replication.throttled.replicas", "0-1", ErrInvalid},
		{"local.retention.ms", "-2", nil},
		{"local.retention.ms", "-3", ErrInvalid},
		{"remote.storage.enable", "false", nil},
		{"message.downconversion.enable", "true", ErrUnknown},
		{"no.such.config", "1", ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			err := Validate(tt.name, tt.value)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Validate(%q, %q) = %v, want %v", tt.name, tt.value, err, tt.want)
			}
		})
	}
}

func TestValidateAllCrossChecks(t *testing.T) {
	tests := []struct {
		name      string
		overrides map[string]string
		want      error
	}{
		{"lags in order", map[string]string{MinCompactionLagMs: "10", MaxCompactionLagMs: "10"}, nil},
		{"min lag above max lag", map[string]string{MinCompactionLagMs: "11", MaxCompactionLagMs: "10"}, ErrInvalid},
		{"remote storage", map[string]string{RemoteStorage: "true"}, ErrInvalid},
		{"remote storage off", map[string]string{RemoteStorage: "false"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateAll(tt.overrides); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("ValidateAll(%v) = %v, want %v", tt.overrides, err, tt.want)
			}
		})
	}
}

// TestResolveCompression: compression.type names the codec fetches answer
// with, producer (the default) each record's own.
func TestResolveCompression(t *testing.T) {
	for v, want := range map[string]Config{
		"producer":     {},
		"uncompressed": {FixedCompression: true, Compression: shardstore.CodecNone},
		"gzip":         {FixedCompression: true, Compression: shardstore.CodecGzip},
		"snappy":       {FixedCompression: true, Compression: shardstore.CodecSnappy},
		"lz4":          {FixedCompression: true, Compression: shardstore.CodecLz4},
		"zstd":         {FixedCompression: true, Compression: shardstore.CodecZstd},
	} {
		c, err := Resolve(map[string]string{CompressionType: v}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.FixedCompression != want.FixedCompression || c.Compression != want.Compression || c.CompressionValue() != v {
			t.Errorf("compression.type=%s: %v %v (%s)", v, c.FixedCompression, c.Compression, c.CompressionValue())
		}
	}
	// A broker-level compression.type is the default under the topic's.
	if c, _ := Resolve(nil, map[string]string{CompressionType: "lz4"}); !c.FixedCompression || c.Compression != shardstore.CodecLz4 {
		t.Errorf("broker compression.type=lz4: %+v", c)
	}
}

func TestResolveLayers(t *testing.T) {
	c, err := Resolve(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{CleanupPolicy: shardstore.PolicyCompact, DeleteRetentionMs: 86400000,
		RetentionMs: 604800000, RetentionBytes: -1, MaxMessageBytes: 1048588}
	if c != want {
		t.Fatalf("built-in defaults = %+v, want %+v", c, want)
	}

	// A broker default sits under the topic's own override.
	c, err = Resolve(map[string]string{RetentionMs: "1000"}, map[string]string{CleanupPolicy: "delete", RetentionMs: "5"})
	if err != nil {
		t.Fatal(err)
	}
	if c.CleanupPolicy != shardstore.PolicyDelete || !c.Retention || c.RetentionMs != 1000 {
		t.Fatalf("layers resolved to %+v", c)
	}

	if _, err := Resolve(map[string]string{MaxMessageBytes: "x"}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad override: %v", err)
	}
	if _, err := Resolve(nil, map[string]string{"nope": "1"}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("bad broker default: %v", err)
	}
}

func TestResolvePolicies(t *testing.T) {
	tests := []struct {
		value     string
		policy    shardstore.Policy
		retention bool
		spelled   string
	}{
		{"compact", shardstore.PolicyCompact, false, "compact"},
		{"delete", shardstore.PolicyDelete, true, "delete"},
		{"compact,delete", shardstore.PolicyCompact, true, "compact,delete"},
		{"delete,compact", shardstore.PolicyCompact, true, "compact,delete"},
		{"", shardstore.PolicyDelete, false, ""},
	}
	for _, tt := range tests {
		c, err := Resolve(map[string]string{CleanupPolicy: tt.value}, nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.value, err)
		}
		if c.CleanupPolicy != tt.policy || c.Retention != tt.retention || c.PolicyValue() != tt.spelled {
			t.Errorf("%q resolved to policy %v retention %v (%q)", tt.value, c.CleanupPolicy, c.Retention, c.PolicyValue())
		}
	}
}

func TestAlter(t *testing.T) {
	base := map[string]string{RetentionMs: "1000", CleanupPolicy: "compact"}
	tests := []struct {
		name string
		in   map[string]string
		ops  []Op
		want map[string]string
		err  error
	}{
		{name: "set and delete", in: base,
			ops:  []Op{{Type: OpSet, Name: DeleteRetentionMs, Value: "5"}, {Type: OpDelete, Name: RetentionMs}},
			want: map[string]string{CleanupPolicy: "compact", DeleteRetentionMs: "5"}},
		{name: "delete absent is a no-op", in: nil,
			ops: []Op{{Type: OpDelete, Name: RetentionMs}}, want: map[string]string{}},
		{name: "append delete", in: base,
			ops:  []Op{{Type: OpAppend, Name: CleanupPolicy, Value: "delete"}},
			want: map[string]string{RetentionMs: "1000", CleanupPolicy: "compact,delete"}},
		{name: "append present item", in: base,
			ops:  []Op{{Type: OpAppend, Name: CleanupPolicy, Value: "compact"}},
			want: base},
		{name: "append to the built-in default", in: nil,
			ops:  []Op{{Type: OpAppend, Name: CleanupPolicy, Value: "delete"}},
			want: map[string]string{CleanupPolicy: "compact,delete"}},
		{name: "subtract to empty", in: base,
			ops:  []Op{{Type: OpSubtract, Name: CleanupPolicy, Value: "compact"}},
			want: map[string]string{RetentionMs: "1000", CleanupPolicy: ""}},
		{name: "subtract absent item", in: map[string]string{CleanupPolicy: "compact,delete"},
			ops:  []Op{{Type: OpSubtract, Name: CleanupPolicy, Value: "compact,nothing"}},
			want: map[string]string{CleanupPolicy: "delete"}},
		{name: "append to a non-list", in: base,
			ops: []Op{{Type: OpAppend, Name: RetentionMs, Value: "5"}}, err: ErrInvalid},
		{name: "append a bad policy", in: base,
			ops: []Op{{Type: OpAppend, Name: CleanupPolicy, Value: "archive"}}, err: ErrInvalid},
		{name: "unknown name", in: base,
			ops: []Op{{Type: OpSet, Name: "nope", Value: "1"}}, err: ErrUnknown},
		{name: "bad value", in: base,
			ops: []Op{{Type: OpSet, Name: RetentionMs, Value: "-9"}}, err: ErrInvalid},
		{name: "unknown op", in: base,
			ops: []Op{{Type: 9, Name: RetentionMs, Value: "1"}}, err: ErrInvalid},
		{name: "cross check on the result", in: map[string]string{MaxCompactionLagMs: "100"},
			ops: []Op{{Type: OpSet, Name: MinCompactionLagMs, Value: "101"}}, err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[string]string{}
			for k, v := range tt.in {
				before[k] = v
			}
			got, err := Alter(tt.in, tt.ops)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Alter = %v, %v; want error %v", got, err, tt.err)
				}
			} else if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Alter = %v, %v; want %v", got, err, tt.want)
			}
			if len(tt.in) != len(before) || !reflect.DeepEqual(map[string]string(tt.in), before) && tt.in != nil {
				t.Fatalf("Alter modified its input: %v", tt.in)
			}
		})
	}
}

func TestValueSources(t *testing.T) {
	d, _ := Lookup(RetentionMs)
	if v, s := Value(d, map[string]string{RetentionMs: "1"}, map[string]string{RetentionMs: "2"}); v != "1" || s != SourceTopic {
		t.Fatalf("override: %s %v", v, s)
	}
	if v, s := Value(d, nil, map[string]string{RetentionMs: "2"}); v != "2" || s != SourceBroker {
		t.Fatalf("broker: %s %v", v, s)
	}
	if v, s := Value(d, nil, nil); v != d.Default || s != SourceDefault {
		t.Fatalf("default: %s %v", v, s)
	}
}
