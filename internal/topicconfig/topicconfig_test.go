package topicconfig

import (
	"errors"
	"sort"
	"testing"

	"github.com/shardcache/shardcache/shardstore"
)

func TestDefsSortedForLookup(t *testing.T) {
	if !sort.SliceIsSorted(defs, func(i, j int) bool { return defs[i].Name < defs[j].Name }) {
		t.Fatal("defs must stay sorted by name: Lookup binary-searches them")
	}
	for _, d := range Defs() {
		if err := Validate(d.Name, d.Default); err != nil {
			t.Errorf("default of %s does not validate: %v", d.Name, err)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name, value string
		want        error
	}{
		{CleanupPolicy, "compact", nil},
		{CleanupPolicy, "delete", nil},
		{CleanupPolicy, "compact,delete", ErrInvalid},
		{CleanupPolicy, "", ErrInvalid},
		{DeleteRetentionMs, "0", nil},
		{DeleteRetentionMs, "-1", ErrInvalid},
		{DeleteRetentionMs, "1h", ErrInvalid},
		{RetentionMs, "-1", nil},
		{RetentionMs, "-2", ErrInvalid},
		{RetentionBytes, "1073741824", nil},
		{MaxMessageBytes, "0", ErrInvalid},
		{MaxMessageBytes, "2147483648", ErrInvalid},
		{MaxMessageBytes, "1", nil},
		{MinCompactionLagMs, "100", nil},
		{"segment.bytes", "1", ErrUnknown},
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
	if c.CleanupPolicy != shardstore.PolicyDelete || c.RetentionMs != 1000 {
		t.Fatalf("layers resolved to %+v", c)
	}

	if _, err := Resolve(map[string]string{MaxMessageBytes: "x"}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad override: %v", err)
	}
	if _, err := Resolve(nil, map[string]string{"nope": "1"}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("bad broker default: %v", err)
	}
}
