// Package topicconfig defines the topic configurations shardcache understands: their
// names, defaults, validation, and how a topic's overrides resolve into the settings
// the shard store and the compaction loop use.
//
// A topic stores only its overrides (name -> value strings, as Kafka clients send
// them); Resolve turns overrides plus the broker's defaults into a Config. Unknown
// names and invalid values are errors, which the broker answers with INVALID_CONFIG.
package topicconfig

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/shardcache/shardcache/shardstore"
)

// Config names, as Kafka spells them.
const (
	CleanupPolicy      = "cleanup.policy"
	DeleteRetentionMs  = "delete.retention.ms"
	RetentionMs        = "retention.ms"
	RetentionBytes     = "retention.bytes"
	MaxMessageBytes    = "max.message.bytes"
	MinCompactionLagMs = "min.compaction.lag.ms"
)

// Config is a topic's resolved configuration.
type Config struct {
	CleanupPolicy shardstore.Policy
	// DeleteRetentionMs is how long a tombstone stays readable.
	DeleteRetentionMs int64
	// RetentionMs and RetentionBytes bound delete-policy topics; -1 is unlimited.
	RetentionMs    int64
	RetentionBytes int64
	// MaxMessageBytes bounds one record batch (uncompressed records included).
	MaxMessageBytes int32
	// MinCompactionLagMs keeps superseded records readable for that long.
	MinCompactionLagMs int64
}

// Def describes one supported config.
type Def struct {
	Name    string
	Default string
	Doc     string
	// Type is the Kafka config type name reported by DescribeConfigs v3+.
	Type     string
	validate func(string) error
}

// ErrUnknown is wrapped by errors about config names shardcache does not support.
var ErrUnknown = errors.New("unknown topic config")

// ErrInvalid is wrapped by errors about values that do not parse or are out of range.
var ErrInvalid = errors.New("invalid topic config value")

var defs = []Def{
	{Name: CleanupPolicy, Default: "compact", Type: "LIST",
		Doc: "compact keeps the latest record per key; delete keeps an append-only log bounded by retention",
		validate: func(v string) error {
			_, err := ParsePolicy(v)
			return err
		}},
	{Name: DeleteRetentionMs, Default: "86400000", Type: "LONG",
		Doc: "how long a tombstone stays readable before it is removed", validate: nonNegative},
	{Name: MaxMessageBytes, Default: "1048588", Type: "INT",
		Doc: "largest record batch the topic accepts", validate: positiveInt32},
	{Name: MinCompactionLagMs, Default: "0", Type: "LONG",
		Doc: "how long a superseded record stays readable", validate: nonNegative},
	{Name: RetentionBytes, Default: "-1", Type: "LONG",
		Doc: "delete policy: bytes kept per partition; -1 is unlimited", validate: minusOneOrMore},
	{Name: RetentionMs, Default: "604800000", Type: "LONG",
		Doc: "delete policy: how long records are kept; -1 is unlimited", validate: minusOneOrMore},
}

// Defs lists the supported configs in name order. The slice must not be modified.
func Defs() []Def { return defs }

// Lookup returns the definition of a config name.
func Lookup(name string) (Def, bool) {
	i := sort.Search(len(defs), func(i int) bool { return defs[i].Name >= name })
	if i < len(defs) && defs[i].Name == name {
		return defs[i], true
	}
	return Def{}, false
}

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

// ValidateAll checks every override.
func ValidateAll(overrides map[string]string) error {
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
	return nil
}

// Resolve applies overrides over brokerDefaults over the built-in defaults.
// brokerDefaults holds broker-level settings (for example the default
// cleanup.policy from --default-cleanup-policy); either map may be nil.
func Resolve(overrides, brokerDefaults map[string]string) (Config, error) {
	get := func(name string) string {
		if v, ok := overrides[name]; ok {
			return v
		}
		if v, ok := brokerDefaults[name]; ok {
			return v
		}
		d, _ := Lookup(name)
		return d.Default
	}
	if err := ValidateAll(brokerDefaults); err != nil {
		return Config{}, err
	}
	if err := ValidateAll(overrides); err != nil {
		return Config{}, err
	}
	var c Config
	c.CleanupPolicy, _ = ParsePolicy(get(CleanupPolicy))
	c.DeleteRetentionMs, _ = strconv.ParseInt(get(DeleteRetentionMs), 10, 64)
	c.RetentionMs, _ = strconv.ParseInt(get(RetentionMs), 10, 64)
	c.RetentionBytes, _ = strconv.ParseInt(get(RetentionBytes), 10, 64)
	mmb, _ := strconv.ParseInt(get(MaxMessageBytes), 10, 32)
	c.MaxMessageBytes = int32(mmb)
	c.MinCompactionLagMs, _ = strconv.ParseInt(get(MinCompactionLagMs), 10, 64)
	return c, nil
}

// ParsePolicy parses cleanup.policy. Kafka's "compact,delete" (compaction plus
// retention) is not supported: a compacted shard is bounded by its live keys.
func ParsePolicy(v string) (shardstore.Policy, error) {
	switch v {
	case "compact":
		return shardstore.PolicyCompact, nil
	case "delete":
		return shardstore.PolicyDelete, nil
	}
	return 0, fmt.Errorf("must be compact or delete")
}

func parseInt(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not an integer")
	}
	return n, nil
}

func nonNegative(v string) error {
	n, err := parseInt(v)
	if err == nil && n < 0 {
		err = fmt.Errorf("must be >= 0")
	}
	return err
}

func minusOneOrMore(v string) error {
	n, err := parseInt(v)
	if err == nil && n < -1 {
		err = fmt.Errorf("must be -1 or more")
	}
	return err
}

func positiveInt32(v string) error {
	n, err := parseInt(v)
	if err == nil && (n <= 0 || n > 1<<31-1) {
		err = fmt.Errorf("must be between 1 and 2147483647")
	}
	return err
}
