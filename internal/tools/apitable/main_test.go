package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/shardcache/shardcache/broker"
)

func TestRender(t *testing.T) {
	tests := []struct {
		name string
		apis []broker.APIVersion
		want string
	}{
		{"empty", nil, "| Key | API | Versions |\n|---:|---|---|\n| | (no handlers registered yet) | |\n"},
		{"rows", []broker.APIVersion{
			{Key: 0, Name: "Produce", MinVersion: 3, MaxVersion: 11},
			{Key: 18, Name: "ApiVersions", MinVersion: 0, MaxVersion: 4},
			{Key: 22, Name: "InitProducerID", MinVersion: 2, MaxVersion: 2},
		}, "| Key | API | Versions |\n|---:|---|---|\n" +
			"| 0 | Produce | 3-11 |\n| 18 | ApiVersions | 0-4 |\n| 22 | InitProducerID | 2 |\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(tt.apis); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestReplaceTable(t *testing.T) {
	doc := "# T\n\nintro\n" + beginMarker + "\n| old |\n" + endMarker + "\n\nafter\n"
	got, err := replaceTable([]byte(doc), "| new |\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# T\n\nintro\n" + beginMarker + "\n| new |\n" + endMarker + "\n\nafter\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Running it again changes nothing.
	again, err := replaceTable(got, "| new |\n")
	if err != nil || string(again) != want {
		t.Errorf("second run: %q, %v", again, err)
	}
	for _, bad := range []string{"no markers", endMarker + "\n" + beginMarker, beginMarker + " only"} {
		if _, err := replaceTable([]byte(bad), "x"); err == nil {
			t.Errorf("replaceTable(%q) accepted", bad)
		}
	}
}

// TestSupportedAPIsRender runs the real registry through render: every row
// must carry a name and a sane range.
func TestSupportedAPIsRender(t *testing.T) {
	for _, a := range broker.SupportedAPIs() {
		if a.Name == "" || a.MinVersion < 0 || a.MaxVersion < a.MinVersion {
			t.Errorf("bad registry row %+v", a)
		}
	}
	_ = render(broker.SupportedAPIs())
}

// TestReadmeTableIsCurrent fails when a handler was added or its versions changed
// without regenerating the README's table (make api-table-readme).
func TestReadmeTableIsCurrent(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := replaceTable(readme, render(broker.SupportedAPIs()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readme, want) {
		t.Fatal("README.md's Supported Kafka APIs table is out of date: run make api-table-readme")
	}
}
