package topicconfig

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Config names, as Kafka spells them. The ones shardcache acts on have
// constants; the rest are only in the defs table.
const (
	CleanupPolicy      = "cleanup.policy"
	DeleteRetentionMs  = "delete.retention.ms"
	RetentionMs        = "retention.ms"
	RetentionBytes     = "retention.bytes"
	MaxMessageBytes    = "max.message.bytes"
	MinCompactionLagMs = "min.compaction.lag.ms"
	MaxCompactionLagMs = "max.compaction.lag.ms"
	RemoteStorage      = "remote.storage.enable"
	CompressionType    = "compression.type"
)

// Kafka config type names, as DescribeConfigs v3+ reports them.
const (
	TypeBoolean = "BOOLEAN"
	TypeString  = "STRING"
	TypeInt     = "INT"
	TypeLong    = "LONG"
	TypeDouble  = "DOUBLE"
	TypeList    = "LIST"
)

// Def describes one topic config. The table holds every topic-level config of
// Kafka 4.x (LogConfig), with Kafka's type, default and valid range; Acts says
// whether shardcache does something with it. The others are validated, stored
// and described like Kafka does, so tools that set them (Kafka Streams,
// Connect, MirrorMaker, Terraform providers) work; they change nothing.
type Def struct {
	Name string
	// Default is the built-in default as a string. It is Kafka's default except
	// for cleanup.policy, which is compact here.
	Default string
	// Type is the Kafka config type name (TypeLong, ...).
	Type string
	// Acts reports whether shardcache applies the config.
	Acts bool
	// BrokerName is the broker setting Kafka reads as the config's default
	// (for example log.retention.ms); "" when Kafka has none.
	BrokerName string
	Doc        string
	validate   func(string) error
}

// ignored ends the Doc of configs shardcache stores without acting on.
const ignored = " Stored and described; shardcache does not act on it"

// defs is sorted by name (Lookup binary-searches it).
var defs = []Def{
	{Name: CleanupPolicy, Type: TypeList, Default: "compact", Acts: true, BrokerName: "log.cleanup.policy",
		Doc:      "compact keeps the latest record per key; delete is an append-only log bounded by retention; compact,delete compacts and applies retention; an empty list keeps an append-only log forever",
		validate: validatePolicy},
	{Name: "compression.gzip.level", Type: TypeInt, Default: "-1", BrokerName: "compression.gzip.level",
		Doc: "gzip level when compression.type is gzip (1 to 9, or -1)." + ignored + ": fetches compress at each codec's fastest level", validate: gzipLevel},
	{Name: "compression.lz4.level", Type: TypeInt, Default: "9", BrokerName: "compression.lz4.level",
		Doc: "lz4 level when compression.type is lz4." + ignored + ": fetches compress at each codec's fastest level", validate: intBetween(1, 17)},
	{Name: CompressionType, Type: TypeString, Default: "producer", Acts: true, BrokerName: "compression.type",
		Doc: "the codec of the batches fetches answer with: producer (each record with the codec of the producer batch it came in), " +
			"uncompressed, gzip, snappy, lz4 or zstd; records are stored uncompressed and compressed as they are fetched",
		validate: oneOf("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")},
	{Name: "compression.zstd.level", Type: TypeInt, Default: "3", BrokerName: "compression.zstd.level",
		Doc: "zstd level when compression.type is zstd." + ignored + ": fetches compress at each codec's fastest level", validate: intBetween(-131072, 22)},
	{Name: DeleteRetentionMs, Type: TypeLong, Default: "86400000", Acts: true, BrokerName: "log.cleaner.delete.retention.ms",
		Doc: "compacted topics: how long a tombstone stays readable before it is removed", validate: longAtLeast(0)},
	{Name: "file.delete.delay.ms", Type: TypeLong, Default: "60000", BrokerName: "log.segment.delete.delay.ms",
		Doc: "delay before a deleted segment file is removed." + ignored + ": there are no segment files", validate: longAtLeast(0)},
	{Name: "flush.messages", Type: TypeLong, Default: unlimited, BrokerName: "log.flush.interval.messages",
		Doc: "records between forced fsyncs." + ignored + ": every write is fsynced in the Raft log before it is acknowledged", validate: longAtLeast(1)},
	{Name: "flush.ms", Type: TypeLong, Default: unlimited, BrokerName: "log.flush.interval.ms",
		Doc: "time between forced fsyncs." + ignored + ": every write is fsynced in the Raft log before it is acknowledged", validate: longAtLeast(0)},
	{Name: "follower.replication.throttled.replicas", Type: TypeList, Default: "",
		Doc: "replicas whose replication is throttled on the follower side." + ignored, validate: throttledReplicas},
	{Name: "index.interval.bytes", Type: TypeInt, Default: "4096", BrokerName: "log.index.interval.bytes",
		Doc: "bytes between offset index entries." + ignored + ": every record is indexed", validate: intAtLeast(0)},
	{Name: "leader.replication.throttled.replicas", Type: TypeList, Default: "",
		Doc: "replicas whose replication is throttled on the leader side." + ignored, validate: throttledReplicas},
	{Name: "local.retention.bytes", Type: TypeLong, Default: "-2", BrokerName: "log.local.retention.bytes",
		Doc: "tiered storage: bytes kept locally (-2: retention.bytes)." + ignored + ": there is no tiered storage", validate: longAtLeast(-2)},
	{Name: "local.retention.ms", Type: TypeLong, Default: "-2", BrokerName: "log.local.retention.ms",
		Doc: "tiered storage: time kept locally (-2: retention.ms)." + ignored + ": there is no tiered storage", validate: longAtLeast(-2)},
	{Name: MaxCompactionLagMs, Type: TypeLong, Default: unlimited, BrokerName: "log.cleaner.max.compaction.lag.ms",
		Doc: "longest time a record stays uncompacted. Always met: a record is compacted when its key is written again", validate: longAtLeast(1)},
	{Name: MaxMessageBytes, Type: TypeInt, Default: "1048588", Acts: true, BrokerName: "message.max.bytes",
		Doc: "largest record batch the topic accepts", validate: intAtLeast(0)},
	{Name: "message.timestamp.after.max.ms", Type: TypeLong, Default: "3600000", BrokerName: "log.message.timestamp.after.max.ms",
		Doc: "how far in the future a CreateTime timestamp may be." + ignored, validate: longAtLeast(0)},
	{Name: "message.timestamp.before.max.ms", Type: TypeLong, Default: unlimited, BrokerName: "log.message.timestamp.before.max.ms",
		Doc: "how far in the past a CreateTime timestamp may be." + ignored, validate: longAtLeast(0)},
	{Name: "message.timestamp.type", Type: TypeString, Default: "CreateTime", BrokerName: "log.message.timestamp.type",
		Doc: "CreateTime or LogAppendTime." + ignored + ": records keep the producer's timestamp", validate: oneOf("CreateTime", "LogAppendTime")},
	{Name: "min.cleanable.dirty.ratio", Type: TypeDouble, Default: "0.5", BrokerName: "log.cleaner.min.cleanable.ratio",
		Doc: "dirty share of the log that triggers the cleaner." + ignored + ": compaction happens on write, there is no cleaner", validate: doubleBetween(0, 1)},
	{Name: MinCompactionLagMs, Type: TypeLong, Default: "0", Acts: true, BrokerName: "log.cleaner.min.compaction.lag.ms",
		Doc: "compacted topics: how long a superseded record stays readable", validate: longAtLeast(0)},
	{Name: "min.insync.replicas", Type: TypeInt, Default: "1", BrokerName: "min.insync.replicas",
		Doc: "replicas that must acknowledge an acks=all write." + ignored + ": a write is acknowledged once a Raft majority has it", validate: intAtLeast(1)},
	{Name: "preallocate", Type: TypeBoolean, Default: "false", BrokerName: "log.preallocate",
		Doc: "preallocate segment files." + ignored + ": there are no segment files", validate: boolean},
	{Name: "remote.copy.lag.bytes", Type: TypeLong, Default: "0",
		Doc: "tiered storage: bytes held locally before upload." + ignored + ": there is no tiered storage", validate: longAtLeast(-1)},
	{Name: "remote.copy.lag.ms", Type: TypeLong, Default: "0",
		Doc: "tiered storage: time held locally before upload." + ignored + ": there is no tiered storage", validate: longAtLeast(-1)},
	{Name: "remote.log.copy.disable", Type: TypeBoolean, Default: "false",
		Doc: "tiered storage: stop uploading segments." + ignored + ": there is no tiered storage", validate: boolean},
	{Name: "remote.log.delete.on.disable", Type: TypeBoolean, Default: "false",
		Doc: "tiered storage: delete remote data when it is disabled." + ignored + ": there is no tiered storage", validate: boolean},
	{Name: RemoteStorage, Type: TypeBoolean, Default: "false",
		Doc: "tiered storage for the topic. Only false is accepted: shardcache has no tiered storage, as a Kafka broker without remote.log.storage.system.enable", validate: boolean},
	{Name: RetentionBytes, Type: TypeLong, Default: "-1", Acts: true, BrokerName: "log.retention.bytes",
		Doc: "delete and compact,delete topics: bytes kept per partition; negative is unlimited", validate: longAny},
	{Name: RetentionMs, Type: TypeLong, Default: "604800000", Acts: true, BrokerName: "log.retention.ms",
		Doc: "delete and compact,delete topics: how long records are kept; -1 is unlimited", validate: longAtLeast(-1)},
	{Name: "segment.bytes", Type: TypeInt, Default: "1073741824", BrokerName: "log.segment.bytes",
		Doc: "size of a log segment file." + ignored + ": there are no segment files", validate: intAtLeast(1 << 20)},
	{Name: "segment.index.bytes", Type: TypeInt, Default: "10485760", BrokerName: "log.index.size.max.bytes",
		Doc: "size of a segment's offset index." + ignored + ": there are no segment files", validate: intAtLeast(4)},
	{Name: "segment.jitter.ms", Type: TypeLong, Default: "0", BrokerName: "log.roll.jitter.ms",
		Doc: "random jitter of segment rolls." + ignored + ": there are no segment files", validate: longAtLeast(0)},
	{Name: "segment.ms", Type: TypeLong, Default: "604800000", BrokerName: "log.roll.ms",
		Doc: "time after which a segment is rolled." + ignored + ": there are no segment files", validate: longAtLeast(1)},
	{Name: "unclean.leader.election.enable", Type: TypeBoolean, Default: "false", BrokerName: "unclean.leader.election.enable",
		Doc: "let a replica outside the ISR become leader." + ignored + ": Raft never elects a replica that lacks committed entries", validate: boolean},
}

// Defs lists every topic config in name order. The slice must not be modified.
func Defs() []Def { return defs }

// Lookup returns the definition of a config name.
func Lookup(name string) (Def, bool) {
	i, ok := slices.BinarySearchFunc(defs, name, func(d Def, n string) int { return strings.Compare(d.Name, n) })
	if !ok {
		return Def{}, false
	}
	return defs[i], true
}

// Values are parsed as Kafka's ConfigDef parses them: surrounding whitespace
// is ignored, lists are split at commas (with any whitespace around them).

func parseLong(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number of type LONG")
	}
	return n, nil
}

func parseInt(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("not a number of type INT")
	}
	return n, nil
}

func longAny(v string) error {
	_, err := parseLong(v)
	return err
}

func longAtLeast(min int64) func(string) error {
	return func(v string) error {
		n, err := parseLong(v)
		if err == nil && n < min {
			err = fmt.Errorf("value must be at least %d", min)
		}
		return err
	}
}

func intAtLeast(min int64) func(string) error {
	return func(v string) error {
		n, err := parseInt(v)
		if err == nil && n < min {
			err = fmt.Errorf("value must be at least %d", min)
		}
		return err
	}
}

func intBetween(lo, hi int64) func(string) error {
	return func(v string) error {
		n, err := parseInt(v)
		if err == nil && (n < lo || n > hi) {
			err = fmt.Errorf("value must be between %d and %d", lo, hi)
		}
		return err
	}
}

// gzipLevel: 1 to 9, or -1 for the codec's default.
func gzipLevel(v string) error {
	n, err := parseInt(v)
	if err == nil && n != -1 && (n < 1 || n > 9) {
		err = fmt.Errorf("value must be between 1 and 9 or equal to -1")
	}
	return err
}

func doubleBetween(lo, hi float64) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) {
			return fmt.Errorf("not a number of type DOUBLE")
		}
		if f < lo || f > hi {
			return fmt.Errorf("value must be between %g and %g", lo, hi)
		}
		return nil
	}
}

func boolean(v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "false":
		return nil
	}
	return fmt.Errorf("expected value to be either true or false")
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		if slices.Contains(values, strings.TrimSpace(v)) {
			return nil
		}
		return fmt.Errorf("string must be one of: %s", strings.Join(values, ", "))
	}
}

// SplitList splits a LIST value as Kafka does: an empty (or blank) value is an
// empty list, otherwise the parts between commas, trimmed.
func SplitList(v string) []string {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// validatePolicy accepts a list of compact and delete, each at most once.
func validatePolicy(v string) error {
	_, _, err := parsePolicy(v)
	return err
}

// throttledReplicaRE is one element of a throttled replicas list.
var throttledReplicaRE = regexp.MustCompile(`^([0-9]+:[0-9]+)?$`)

// throttledReplicas accepts "*" or partition:broker pairs.
func throttledReplicas(v string) error {
	parts := SplitList(v)
	if len(parts) == 1 && parts[0] == "*" {
		return nil
	}
	for _, p := range parts {
		if !throttledReplicaRE.MatchString(p) {
			return fmt.Errorf("must be the literal '*' or a list of replicas in the form [partitionId]:[brokerId],[partitionId]:[brokerId],...")
		}
	}
	return nil
}
