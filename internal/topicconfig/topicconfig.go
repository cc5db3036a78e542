// Package topicconfig defines the topic configurations shardcache understands: their
// names, types, defaults and valid ranges, how a topic's overrides resolve into the
// settings the shard store and the compaction loop use, and how IncrementalAlterConfigs
// operations change overrides.
//
// Every topic-level config of Kafka 4.x is known (defs.go), so clients that set any of
// them succeed; Def.Acts tells the ones shardcache applies from those it only stores
// and describes. A topic stores only its overrides (name -> value strings, as Kafka
// clients send them); Resolve turns overrides plus the broker's defaults into a Config.
// Unknown names and invalid values are errors, which the broker answers with
// INVALID_CONFIG.
package topicconfig

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/shardcache/shardcache/shardstore"
)

// Config is a topic's resolved configuration: the configs shardcache acts on.
type Config struct {
	// CleanupPolicy is how the shard appends: PolicyCompact when cleanup.policy
	// names compact (compact or compact,delete), PolicyDelete otherwise.
	CleanupPolicy shardstore.Policy
	// Retention reports that cleanup.policy names delete: retention.ms and
	// retention.bytes remove records from the log start (delete and
	// compact,delete topics). An empty cleanup.policy keeps everything.
	Retention bool
	// DeleteRetentionMs is how long a tombstone stays readable.
	DeleteRetentionMs int64
	// RetentionMs and RetentionBytes bound topics with Retention; -1 (any
	// negative value for bytes) is unlimited.
	RetentionMs    int64
	RetentionBytes int64
	// MaxMessageBytes bounds one record batch (uncompressed records included).
	MaxMessageBytes int32
	// MinCompactionLagMs keeps superseded records readable for that long.
	MinCompactionLagMs int64
	// FixedCompression: compression.type names a codec, and fetches answer
	// every record compressed with Compression (CodecNone for uncompressed).
	// Otherwise (producer, the default) each record goes with the codec of
	// the producer batch it came in.
	FixedCompression bool
	Compression      shardstore.Codec
}

// CompressionValue spells the compression as compression.type does.
func (c Config) CompressionValue() string {
	if !c.FixedCompression {
		return "producer"
	}
	for name, codec := range compressionCodecs {
		if codec == c.Compression {
			return name
		}
	}
	return "uncompressed"
}

// compressionCodecs maps compression.type's codec names to codecs.
var compressionCodecs = map[string]shardstore.Codec{
	"uncompressed": shardstore.CodecNone, "gzip": shardstore.CodecGzip, "snappy": shardstore.CodecSnappy,
	"lz4": shardstore.CodecLz4, "zstd": shardstore.CodecZstd,
}

// PolicyValue spells the cleanup policy as cleanup.policy does: "compact",
// "delete", "compact,delete" or "" (keep everything).
func (c Config) PolicyValue() string {
	switch {
	case c.CleanupPolicy == shardstore.PolicyCompact && c.Retention:
		return "compact,delete"
	case c.CleanupPolicy == shardstore.PolicyCompact:
		return "compact"
	case c.Retention:
		return "delete"
	}
	return ""
}

// ErrUnknown is wrapped by errors about config names shardcache does not support.
var ErrUnknown = errors.New("unknown topic config")

// ErrInvalid is wrapped by errors about values that do not parse or are out of range.
var ErrInvalid = errors.New("invalid topic config value")

// Validate checks one name and value.
func Validate(name, value string) error {
	d, ok := Lookup(name)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknown, name)
	}
	if err := d.validate(value); err != nil {
		return fmt.Errorf("%w: %s=%q: %v", ErrInvalid, name, value, err)
	}
	return nil
}

// ValidateAll checks every override, then the rules that span configs (with
// the built-in defaults for the configs the overrides leave out):
// min.compaction.lag.ms must not exceed max.compaction.lag.ms, and
// remote.storage.enable must be false (there is no tiered storage).
func ValidateAll(overrides map[string]string) error {
	return validateLayers(overrides, nil)
}

func validateLayers(overrides, brokerDefaults map[string]string) error {
	names := make([]string, 0, len(overrides))
	for n := range overrides {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := Validate(n, overrides[n]); err != nil {
			return err
		}
	}
	get := getter(overrides, brokerDefaults)
	minLag, _ := parseLong(get(MinCompactionLagMs))
	maxLag, _ := parseLong(get(MaxCompactionLagMs))
	if minLag > maxLag {
		return fmt.Errorf("%w: conflicting topic configs %s (%d) > %s (%d)", ErrInvalid,
			MinCompactionLagMs, minLag, MaxCompactionLagMs, maxLag)
	}
	if strings.EqualFold(strings.TrimSpace(get(RemoteStorage)), "true") {
		return fmt.Errorf("%w: %s=true: tiered storage is not available in shardcache; the topic cannot use remote log storage",
			ErrInvalid, RemoteStorage)
	}
	return nil
}

// getter returns a config's value from overrides, then brokerDefaults, then
// the built-in default. Either map may be nil.
func getter(overrides, brokerDefaults map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := overrides[name]; ok {
			return v
		}
		if v, ok := brokerDefaults[name]; ok {
			return v
		}
		d, _ := Lookup(name)
		return d.Default
	}
}

// Resolve applies overrides over brokerDefaults over the built-in defaults.
// brokerDefaults holds broker-level settings (for example the default
// cleanup.policy from --default-cleanup-policy); either map may be nil.
func Resolve(overrides, brokerDefaults map[string]string) (Config, error) {
	if err := ValidateAll(brokerDefaults); err != nil {
		return Config{}, err
	}
	if err := validateLayers(overrides, brokerDefaults); err != nil {
		return Config{}, err
	}
	get := getter(overrides, brokerDefaults)
	var c Config
	c.CleanupPolicy, c.Retention, _ = parsePolicy(get(CleanupPolicy))
	c.DeleteRetentionMs, _ = parseLong(get(DeleteRetentionMs))
	c.RetentionMs, _ = parseLong(get(RetentionMs))
	c.RetentionBytes, _ = parseLong(get(RetentionBytes))
	mmb, _ := parseInt(get(MaxMessageBytes))
	c.MaxMessageBytes = int32(mmb)
	c.MinCompactionLagMs, _ = parseLong(get(MinCompactionLagMs))
	if v := get(CompressionType); v != "producer" {
		c.FixedCompression, c.Compression = true, compressionCodecs[v] // validated: one of them
	}
	return c, nil
}

// ParsePolicy parses cleanup.policy into the shard's policy and whether
// retention applies (see Config).
func ParsePolicy(v string) (policy shardstore.Policy, retention bool, err error) {
	return parsePolicy(v)
}

func parsePolicy(v string) (shardstore.Policy, bool, error) {
	var compact, del bool
	for _, p := range SplitList(v) {
		seen := &compact
		switch p {
		case "compact":
		case "delete":
			seen = &del
		default:
			return 0, false, fmt.Errorf("%q is not a cleanup policy: use compact, delete or both (compact,delete)", p)
		}
		if *seen {
			return 0, false, fmt.Errorf("%q is listed twice", p)
		}
		*seen = true
	}
	if compact {
		return shardstore.PolicyCompact, del, nil
	}
	return shardstore.PolicyDelete, del, nil
}

// Value returns the value a topic uses for config d and where it comes from:
// the topic's override, else the broker default, else the built-in default.
func Value(d Def, overrides, brokerDefaults map[string]string) (string, Source) {
	if v, ok := overrides[d.Name]; ok {
		return v, SourceTopic
	}
	if v, ok := brokerDefaults[d.Name]; ok {
		return v, SourceBroker
	}
	return d.Default, SourceDefault
}

// Source is where a config value comes from.
type Source int8

// Sources of a config value.
const (
	SourceDefault Source = iota // the built-in default
	SourceBroker                // a broker-level setting
	SourceTopic                 // the topic's own override
)

// OpType is an IncrementalAlterConfigs operation; the values are Kafka's
// (AlterConfigOp.OpType ids).
type OpType int8

// IncrementalAlterConfigs operations.
const (
	OpSet      OpType = 0
	OpDelete   OpType = 1
	OpAppend   OpType = 2
	OpSubtract OpType = 3
)

func (t OpType) String() string {
	switch t {
	case OpSet:
		return "SET"
	case OpDelete:
		return "DELETE"
	case OpAppend:
		return "APPEND"
	case OpSubtract:
		return "SUBTRACT"
	}
	return "OP(" + strconv.Itoa(int(t)) + ")"
}

// Op is one change of one config.
type Op struct {
	Type  OpType `json:"type"`
	Name  string `json:"name"`
	Value string `json:"value,omitempty"` // ignored by OpDelete
}

// Alter applies ops in order to a copy of overrides and returns the copy,
// validated with ValidateAll. overrides is not modified. APPEND and SUBTRACT
// work on LIST configs only; on a config the topic does not override they
// start from the built-in default, as Kafka's controller does. Alter is
// deterministic (it reads no broker setting), so the metadata state machine
// applies it to the overrides in force when the change is committed.
func Alter(overrides map[string]string, ops []Op) (map[string]string, error) {
	out := make(map[string]string, len(overrides)+len(ops))
	for k, v := range overrides {
		out[k] = v
	}
	for _, op := range ops {
		d, ok := Lookup(op.Name)
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknown, op.Name)
		}
		switch op.Type {
		case OpSet:
			out[op.Name] = op.Value
		case OpDelete:
			delete(out, op.Name)
		case OpAppend, OpSubtract:
			if d.Type != TypeList {
				return nil, fmt.Errorf("%w: can't %s to %s because its type is not LIST", ErrInvalid, op.Type, op.Name)
			}
			cur, ok := out[op.Name]
			if !ok {
				cur = d.Default
			}
			list := SplitList(cur)
			for _, item := range SplitList(op.Value) {
				i := slices.Index(list, item)
				switch {
				case op.Type == OpAppend && i < 0:
					list = append(list, item)
				case op.Type == OpSubtract && i >= 0:
					list = slices.Delete(list, i, i+1)
				}
			}
			out[op.Name] = strings.Join(list, ",")
		default:
			return nil, fmt.Errorf("%w: %s: unknown operation %s", ErrInvalid, op.Name, op.Type)
		}
	}
	if err := ValidateAll(out); err != nil {
		return nil, err
	}
	return out, nil
}

// unlimited is the default of the LONG configs that Kafka leaves unbounded.
var unlimited = strconv.FormatInt(math.MaxInt64, 10)
