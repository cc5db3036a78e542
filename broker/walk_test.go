package broker

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// fillRandom sets every field of v (a pointer to a kmsg struct) to random
// values: strings and byte slices of 0-6 bytes, arrays of 0-3 elements, nested
// structs filled in turn, and now and then an unknown tag.
func fillRandom(r *rand.Rand, v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem().Kind() == reflect.String {
			s := randString(r)
			v.Set(reflect.ValueOf(&s))
			return
		}
		if v.IsNil() { // a nullable struct: null half the time
			if r.IntN(2) == 0 {
				return
			}
			v.Set(reflect.New(v.Type().Elem()))
		}
		fillRandom(r, v.Elem(), depth)
	case reflect.Struct:
		if v.Type() == tagsType {
			if r.IntN(4) == 0 {
				tags := v.Addr().Interface().(*kmsg.Tags)
				tags.Set(uint32(1000+r.IntN(5)), []byte(randString(r)))
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Name == "Version" && depth == 0 {
				continue
			}
			fillRandom(r, v.Field(i), depth+1)
		}
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(r.IntN(200)) - 100)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(r.IntN(200)))
	case reflect.Float64:
		v.SetFloat(r.Float64())
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			v.Index(i).SetUint(uint64(r.IntN(256)))
		}
	case reflect.String:
		v.SetString(randString(r))
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte(randString(r)))
			return
		}
		n := r.IntN(4)
		if depth > 6 {
			n = 0
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := 0; i < n; i++ {
			fillRandom(r, s.Index(i), depth+1)
		}
		v.Set(s)
	}
}

func randString(r *rand.Rand) string {
	b := make([]byte, r.IntN(7))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

// walkAll walks body like walkBody and also returns the bytes left over.
func walkAll(t *testing.T, req kmsg.Request, body []byte) (int64, int, error) {
	t.Helper()
	layout, err := requestLayout(req)
	if err != nil {
		t.Fatalf("layout of %T: %v", req, err)
	}
	w := walker{b: body, version: req.GetVersion(), flexible: req.IsFlexible(), limit: 1 << 40}
	err = w.structure(layout)
	return w.est, len(w.b), err
}

// TestWalkBodyMatchesKmsg checks the wire layouts (walk.go's fieldVersions
// above all) against kmsg's encoder: random requests of every registered API
// at every served version walk to exactly their end.
func TestWalkBodyMatchesKmsg(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, a := range supportedAPIs() {
		for v := a.min; v <= a.max; v++ {
			for i := 0; i < 40; i++ {
				req := kmsg.RequestForKey(a.key)
				fillRandom(r, reflect.ValueOf(req), 0)
				req.SetVersion(v)
				body := req.AppendTo(nil)
				est, left, err := walkAll(t, req, body)
				if err != nil || left != 0 {
					t.Fatalf("%s v%d: walk error %v, %d of %d bytes left\n%x", a.name, v, err, left, len(body), body)
				}
				// Every truncation fails the walk or kmsg, never the other way.
				for cut := 0; cut < len(body); cut += 1 + len(body)/16 {
					_, left, werr := walkAll(t, req, body[:cut])
					again := kmsg.RequestForKey(a.key)
					again.SetVersion(v)
					if werr == nil && left == 0 && again.ReadFrom(body[:cut]) != nil {
						t.Fatalf("%s v%d: walk accepts %d of %d bytes that kmsg refuses", a.name, v, cut, len(body))
					}
				}
				if est < 0 {
					t.Fatalf("%s v%d: estimate %d", a.name, v, est)
				}
			}
		}
	}
}

// metadataV1Frame is a Metadata v1 request frame of size bytes (no size
// prefix) whose topics array is as long as the frame allows: empty names,
// two bytes each, the worst ratio of decoded to wire size kmsg allows for it.
func metadataV1Frame(size int) []byte {
	frame := make([]byte, 0, size)
	frame = binary.BigEndian.AppendUint16(frame, uint16(kmsg.Metadata.Int16()))
	frame = binary.BigEndian.AppendUint16(frame, 1)
	frame = binary.BigEndian.AppendUint32(frame, 1)
	frame = binary.BigEndian.AppendUint16(frame, 0xffff) // null client id
	n := (size - len(frame) - 4) / 2
	frame = binary.BigEndian.AppendUint32(frame, uint32(n))
	for len(frame)+2 <= size {
		frame = append(frame, 0, 0)
	}
	return frame
}

// allocated is the bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestWalkBodyEstimateCoversKmsg checks that walkBody's estimate is at least
// what kmsg allocates for large requests of the shapes that cost the most.
func TestWalkBodyEstimateCoversKmsg(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocates a few hundred MiB; measures allocations, which the race detector changes")
	}
	deleteTopics := kmsg.NewPtrDeleteTopicsRequest()
	deleteTopics.SetVersion(5)
	deleteTopics.TopicNames = make([]string, 200_000)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(12)
	fetch.Topics = make([]kmsg.FetchRequestTopic, 100)
	for i := range fetch.Topics {
		fetch.Topics[i].Partitions = make([]kmsg.FetchRequestTopicPartition, 2000)
	}
	tagged := kmsg.NewPtrMetadataRequest()
	tagged.SetVersion(12)
	for i := 0; i < 100_000; i++ {
		tagged.UnknownTags.Set(uint32(i), nil)
	}
	tests := []struct {
		name string
		req  kmsg.Request
		body []byte
	}{
		{"metadata v1 empty names", kmsg.NewPtrMetadataRequest(), metadataV1Frame(4 << 20)[10:]},
		{"delete topics v5 empty names", deleteTopics, deleteTopics.AppendTo(nil)},
		{"fetch v12 200k partitions", fetch, fetch.AppendTo(nil)},
		{"metadata v12 100k unknown tags", tagged, tagged.AppendTo(nil)},
	}
	tests[0].req.SetVersion(1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			est, err := walkBody(tt.req, tt.body, 1<<40)
			if err != nil {
				t.Fatal(err)
			}
			fresh := kmsg.RequestForKey(tt.req.Key())
			fresh.SetVersion(tt.req.GetVersion())
			got := allocated(func() {
				if err := fresh.ReadFrom(tt.body); err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("%d bytes on the wire: kmsg allocates %d, estimate %d", len(tt.body), got, est)
			if uint64(est) < got {
				t.Fatalf("estimate %d below the %d bytes kmsg allocates", est, got)
			}
		})
	}
}

// TestParseRequestBoundsDecodedSize pins the bug a review found: a 16 MiB
// Metadata v1 frame of empty topic names made kmsg allocate 384 MiB. The
// walk now refuses it before kmsg runs when that is more than allowed.
func TestParseRequestBoundsDecodedSize(t *testing.T) {
	frame := metadataV1Frame(16 << 20)
	var err error
	got := allocated(func() { _, err = parseRequest(frame, 128<<20) })
	if !errors.Is(err, errBudgetTooLarge) {
		t.Fatalf("err = %v, want errBudgetTooLarge", err)
	}
	t.Logf("16 MiB Metadata v1 frame: %d bytes allocated before it was refused", got)
	if got > 1<<20 {
		t.Fatalf("allocated %d bytes before refusing", got)
	}
	if raceEnabled {
		return // the race detector changes what allocations cost
	}
	// Allowed, it decodes, and costs what the walk said.
	est, err := walkBody(func() kmsg.Request { r := kmsg.NewPtrMetadataRequest(); r.SetVersion(1); return r }(), frame[10:], 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	got = allocated(func() { _, err = parseRequest(frame, 1<<30) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the same frame allowed: %d bytes allocated, %d estimated", got, est)
	if uint64(est) < got*9/10 {
		t.Fatalf("estimate %d, allocated %d", est, got)
	}
}

// BenchmarkParseMetadataFrame16MiB measures what parsing the 16 MiB Metadata
// v1 frame of TestParseRequestBoundsDecodedSize allocates, refused (the
// broker's default read half of the budget) and allowed.
func BenchmarkParseMetadataFrame16MiB(b *testing.B) {
	frame := metadataV1Frame(16 << 20)
	for _, bc := range []struct {
		name  string
		limit int64
	}{{"refused", DefaultMaxInflightBytes / 2 / decodedChargeFactor}, {"allowed", 1 << 40}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = parseRequest(frame, bc.limit)
			}
		})
	}
}
