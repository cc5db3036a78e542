package checker

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Outcome is what a producer learned about one send.
type Outcome int8

const (
	// Info: the outcome is unknown (a timeout, a lost connection); the record
	// may or may not be in the log. It is the zero Outcome, so a send whose
	// outcome was never set is judged as unknown.
	Info Outcome = iota
	// OK: acknowledged at Send.Offset.
	OK
	// Fail: known not to have been written.
	Fail
)

func (o Outcome) String() string {
	switch o {
	case Info:
		return "info"
	case OK:
		return "ok"
	case Fail:
		return "fail"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Send is one produced record and its outcome.
type Send struct {
	Producer  string
	Topic     string
	Partition int32
	Key       []byte
	// Value is unique per partition; nil is a tombstone.
	Value   []byte
	Outcome Outcome
	// Offset is the acknowledged offset; read only when Outcome is OK.
	Offset int64
	// Start is when the produce call began, End when its outcome was known.
	// Zero values are filled in when the send is recorded.
	Start, End time.Time
}

// Poll is one record a consumer read.
type Poll struct {
	Consumer   string
	Topic      string
	Partition  int32
	Offset     int64
	Key, Value []byte
	// Drain marks the polls of the final drain.
	Drain bool
}

// Assign records that a consumer's position on a partition was set by
// something other than reading (assignment, rebalance, seek, restart): its
// next poll there may start anywhere.
type Assign struct {
	Consumer  string
	Topic     string
	Partition int32
	// Drain marks a drain consumer's assignment: the partition then counts
	// as drained by the consumer even if it reads nothing there, so a
	// replica that lost a whole partition is not overlooked.
	Drain bool
}

// Commit is an observation of a consumer group's committed offset.
type Commit struct {
	Group      string
	Topic      string
	Partition  int32
	Offset     int64
	Start, End time.Time
}

// ListOffsetsLatest is an observation of a partition's latest offset (the
// offset the next record will get).
type ListOffsetsLatest struct {
	Topic      string
	Partition  int32
	Offset     int64
	Start, End time.Time
}

// LeaderChange records that a partition's leader moved from one node to
// another. Records with From == To are not changes and are not counted.
type LeaderChange struct {
	Topic     string
	Partition int32
	From, To  int32
}

// SendID names a send begun with BeginSend.
type SendID int

// History is the record of one test run. It is safe for concurrent use and
// its zero value is ready. Every method copies the byte slices it is given.
type History struct {
	mu       sync.Mutex
	sends    []Send // in the order the sends began
	ended    []bool
	consumer []consumerEvent // polls and assigns, in the order recorded
	commits  []Commit
	latest   []ListOffsetsLatest
	leaders  []LeaderChange
	problems []string
}

type consumerEvent struct {
	poll   Poll
	assign bool
}

func clone(s Send) Send {
	s.Key = bytes.Clone(s.Key)
	s.Value = bytes.Clone(s.Value)
	return s
}

// fillTimes sets a zero End to now and a zero Start to End.
func fillTimes(start, end *time.Time) {
	if end.IsZero() {
		*end = time.Now()
	}
	if start.IsZero() {
		*start = *end
	}
}

// AddSend records a send whose outcome is known.
func (h *History) AddSend(s Send) {
	s = clone(s)
	fillTimes(&s.Start, &s.End)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sends = append(h.sends, s)
	h.ended = append(h.ended, true)
}

// BeginSend records the start of a send; s.Outcome, s.Offset and s.End are
// ignored. Call it before handing the record to the client, in the order the
// producer sends, so that the per-producer order check sees that order.
func (h *History) BeginSend(s Send) SendID {
	s = clone(s)
	s.Outcome, s.Offset, s.End = Info, 0, time.Time{}
	if s.Start.IsZero() {
		s.Start = time.Now()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sends = append(h.sends, s)
	h.ended = append(h.ended, false)
	return SendID(len(h.sends) - 1)
}

// EndSend records the outcome of a send begun with BeginSend; offset is read
// only when o is OK. Ending a send twice makes the history invalid.
func (h *History) EndSend(id SendID, o Outcome, offset int64) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if int(id) < 0 || int(id) >= len(h.sends) || h.ended[id] {
		h.problems = append(h.problems, fmt.Sprintf("EndSend(%d): no such send in progress", id))
		return
	}
	s := &h.sends[id]
	s.Outcome, s.Offset, s.End = o, offset, now
	h.ended[id] = true
}

// AddPoll records one record a consumer read. A consumer's polls must be
// added in the order it read them.
func (h *History) AddPoll(p Poll) {
	p.Key, p.Value = bytes.Clone(p.Key), bytes.Clone(p.Value)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.consumer = append(h.consumer, consumerEvent{poll: p})
}

// AddAssign records that a consumer's position was reset (see Assign).
func (h *History) AddAssign(a Assign) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.consumer = append(h.consumer, consumerEvent{
		poll:   Poll{Consumer: a.Consumer, Topic: a.Topic, Partition: a.Partition, Drain: a.Drain},
		assign: true,
	})
}

// AddCommit records an observation of a committed offset.
func (h *History) AddCommit(c Commit) {
	fillTimes(&c.Start, &c.End)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.commits = append(h.commits, c)
}

// AddListOffsetsLatest records an observation of a partition's latest offset.
func (h *History) AddListOffsetsLatest(l ListOffsetsLatest) {
	fillTimes(&l.Start, &l.End)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.latest = append(h.latest, l)
}

// AddLeaderChange records a leader change.
func (h *History) AddLeaderChange(c LeaderChange) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leaders = append(h.leaders, c)
}

// Options tune Check.
type Options struct {
	// Compacted names the topics with cleanup.policy=compact.
	Compacted map[string]bool
	// MinLeaderChanges is how many leader changes the run must have
	// recorded; fewer is a no-fault anomaly.
	MinLeaderChanges int
	// MaxExamples caps the examples kept per kind; 0 means 5.
	MaxExamples int
}

// Kind names a class of anomaly; the package comment describes each.
type Kind string

// The kinds of anomaly.
const (
	LostWrite               Kind = "lost-write"
	Unseen                  Kind = "unseen"
	InconsistentOffsets     Kind = "inconsistent-offsets"
	Duplicate               Kind = "duplicate"
	AbortedRead             Kind = "G1a"
	UnknownValue            Kind = "unknown-value"
	OffsetGap               Kind = "offset-gap"
	PollSkip                Kind = "poll-skip"
	NonmonotonicPoll        Kind = "nonmonotonic-poll"
	NonmonotonicSend        Kind = "nonmonotonic-send"
	NonmonotonicCommit      Kind = "nonmonotonic-commit"
	NonmonotonicListOffsets Kind = "nonmonotonic-list-offsets"
	StaleListOffsets        Kind = "stale-list-offsets"
	WrongFinalValue         Kind = "wrong-final-value"
	NoFault                 Kind = "no-fault"
	InvalidHistory          Kind = "invalid-history"
)

// kindOrder lists every Kind, in the order Result.String reports them.
var kindOrder = []Kind{
	InvalidHistory, NoFault,
	LostWrite, Unseen, WrongFinalValue, AbortedRead, UnknownValue,
	InconsistentOffsets, Duplicate, OffsetGap,
	PollSkip, NonmonotonicPoll, NonmonotonicSend,
	NonmonotonicCommit, NonmonotonicListOffsets, StaleListOffsets,
}

// Anomaly is one example of a Kind.
type Anomaly struct {
	Kind      Kind
	Topic     string
	Partition int32
	// Offset is the offset the anomaly is about, or -1.
	Offset int64
	Detail string
}

func (a Anomaly) String() string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	if a.Topic != "" {
		fmt.Fprintf(&b, " %s/%d", a.Topic, a.Partition)
	}
	if a.Offset >= 0 {
		fmt.Fprintf(&b, "@%d", a.Offset)
	}
	b.WriteString(": ")
	b.WriteString(a.Detail)
	return b.String()
}

// Stats summarises what a history holds.
type Stats struct {
	SendsOK, SendsFailed, SendsInfo int
	Polls, DrainPolls               int
	Partitions                      int
	Commits, ListOffsets            int
	LeaderChanges                   int
}

// Result is Check's verdict.
type Result struct {
	// Valid is true when no anomaly was found.
	Valid bool
	// Counts holds the number of anomalies of each kind found; kinds with
	// none are absent.
	Counts map[Kind]int
	// Examples holds up to Options.MaxExamples anomalies per kind.
	Examples map[Kind][]Anomaly
	Stats    Stats
}

// String reports the verdict, the stats and the examples, for a failed
// test's log.
func (r Result) String() string {
	var b strings.Builder
	if r.Valid {
		b.WriteString("valid\n")
	} else {
		b.WriteString("INVALID\n")
	}
	s := r.Stats
	fmt.Fprintf(&b, "sends: %d ok, %d fail, %d info; polls: %d (%d in drains); partitions: %d; commits: %d; list-offsets: %d; leader changes: %d\n",
		s.SendsOK, s.SendsFailed, s.SendsInfo, s.Polls, s.DrainPolls, s.Partitions, s.Commits, s.ListOffsets, s.LeaderChanges)
	for _, k := range kindOrder {
		n := r.Counts[k]
		if n == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s: %d\n", k, n)
		for _, a := range r.Examples[k] {
			fmt.Fprintf(&b, "  %s\n", a)
		}
		if more := n - len(r.Examples[k]); more > 0 {
			fmt.Fprintf(&b, "  ... and %d more\n", more)
		}
	}
	return b.String()
}

// Check judges h. It reads a snapshot; recording may go on meanwhile.
func Check(h *History, opts Options) Result {
	if opts.MaxExamples <= 0 {
		opts.MaxExamples = 5
	}
	c := &run{
		opts:  opts,
		parts: make(map[tp]*part),
		res: Result{
			Counts:   make(map[Kind]int),
			Examples: make(map[Kind][]Anomaly),
		},
	}
	c.load(h)
	for _, p := range c.sortedParts() {
		c.checkOffsets(p)
		c.checkReads(p)
		if p.compacted {
			c.checkFinalValues(p)
		} else {
			c.checkAcked(p)
			c.checkGaps(p)
		}
		c.checkSendOrder(p)
	}
	c.checkConsumers()
	c.checkCommits()
	c.checkListOffsets()
	c.checkLeaderChanges()
	c.res.Valid = len(c.res.Counts) == 0
	c.res.Stats.Partitions = len(c.parts)
	return c.res
}

// tp is a topic partition.
type tp struct {
	topic     string
	partition int32
}

// value is a record value or key as a comparable map key; null is Kafka's
// nil (a tombstone as a value).
type value struct {
	s    string
	null bool
}

func valueOf(b []byte) value { return value{s: string(b), null: b == nil} }

func (v value) String() string {
	if v.null {
		return "<nil>"
	}
	if len(v.s) > 40 {
		return strconv.Quote(v.s[:40]) + "..."
	}
	return strconv.Quote(v.s)
}

// witness is one value seen at an offset, and by whom.
type witness struct {
	v   value
	who string
}

// part is the indexed history of one partition.
type part struct {
	tp        tp
	compacted bool
	sends     []*Send // in send order
	byValue   map[value]*Send
	// seen holds the distinct values acked or polled at each offset.
	seen map[int64][]witness
	// polled holds the distinct offsets each non-nil value was polled at;
	// polledNull the offsets where a nil value was polled.
	polled     map[value][]int64
	polledNull map[int64]bool
	// polls counts the polls; minPolled and maxPolled are valid when > 0.
	polls                int
	minPolled, maxPolled int64
	drains               map[string]*drain
}

// drain is what one consumer read of a partition in the final drain.
type drain struct {
	consumer  string
	values    map[value]bool
	nulls     map[int64]bool
	maxOffset int64
	// last holds, per key, the record read at the key's highest offset.
	last map[value]offsetValue
}

type offsetValue struct {
	offset int64
	v      value
}

// run is the state of one Check.
type run struct {
	opts     Options
	res      Result
	parts    map[tp]*part
	consumer []consumerEvent
	commits  []Commit
	latest   []ListOffsetsLatest
	leaders  []LeaderChange
}

func (c *run) report(kind Kind, t tp, offset int64, format string, args ...any) {
	c.res.Counts[kind]++
	if len(c.res.Examples[kind]) < c.opts.MaxExamples {
		c.res.Examples[kind] = append(c.res.Examples[kind], Anomaly{
			Kind: kind, Topic: t.topic, Partition: t.partition, Offset: offset,
			Detail: fmt.Sprintf(format, args...),
		})
	}
}

func (c *run) part(t tp) *part {
	p := c.parts[t]
	if p == nil {
		p = &part{
			tp:         t,
			compacted:  c.opts.Compacted[t.topic],
			byValue:    make(map[value]*Send),
			seen:       make(map[int64][]witness),
			polled:     make(map[value][]int64),
			polledNull: make(map[int64]bool),
			drains:     make(map[string]*drain),
		}
		c.parts[t] = p
	}
	return p
}

func (c *run) sortedParts() []*part {
	ps := make([]*part, 0, len(c.parts))
	for _, p := range c.parts {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *part) int { return compareTP(a.tp, b.tp) })
	return ps
}

func compareTP(a, b tp) int {
	return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
}

// see adds a witness of v at offset, once per distinct value.
func (p *part) see(offset int64, v value, who string) {
	for _, w := range p.seen[offset] {
		if w.v == v {
			return
		}
	}
	p.seen[offset] = append(p.seen[offset], witness{v, who})
}

// load copies h and indexes it by partition.
func (c *run) load(h *History) {
	h.mu.Lock()
	sends := slices.Clone(h.sends)
	ended := slices.Clone(h.ended)
	c.consumer = slices.Clone(h.consumer)
	c.commits = slices.Clone(h.commits)
	c.latest = slices.Clone(h.latest)
	c.leaders = slices.Clone(h.leaders)
	problems := slices.Clone(h.problems)
	h.mu.Unlock()

	for _, msg := range problems {
		c.report(InvalidHistory, tp{}, -1, "%s", msg)
	}
	st := &c.res.Stats
	for i := range sends {
		s := &sends[i]
		if !ended[i] {
			s.Outcome = Info // begun and never ended: unknown
		}
		t := tp{s.Topic, s.Partition}
		p := c.part(t)
		p.sends = append(p.sends, s)
		switch s.Outcome {
		case OK:
			st.SendsOK++
		case Fail:
			st.SendsFailed++
		default:
			st.SendsInfo++
		}
		v := valueOf(s.Value)
		if !v.null {
			if p.byValue[v] != nil {
				c.report(InvalidHistory, t, -1, "value %v sent twice: values must be unique per partition", v)
				continue
			}
			p.byValue[v] = s
		}
		if s.Outcome == OK {
			if s.Offset < 0 {
				c.report(InvalidHistory, t, s.Offset, "producer %s: value %v acknowledged at a negative offset", s.Producer, v)
				continue
			}
			p.see(s.Offset, v, "acked to producer "+s.Producer)
		}
	}
	for _, e := range c.consumer {
		q := e.poll
		t := tp{q.Topic, q.Partition}
		if e.assign {
			if q.Drain {
				c.part(t).drain(q.Consumer)
			}
			continue
		}
		if q.Offset < 0 {
			c.report(InvalidHistory, t, q.Offset, "consumer %s polled a negative offset", q.Consumer)
			continue
		}
		p := c.part(t)
		st.Polls++
		v := valueOf(q.Value)
		p.see(q.Offset, v, "polled by consumer "+q.Consumer)
		if v.null {
			p.polledNull[q.Offset] = true
		} else if !slices.Contains(p.polled[v], q.Offset) {
			p.polled[v] = append(p.polled[v], q.Offset)
		}
		if p.polls == 0 || q.Offset < p.minPolled {
			p.minPolled = q.Offset
		}
		if p.polls == 0 || q.Offset > p.maxPolled {
			p.maxPolled = q.Offset
		}
		p.polls++
		if q.Drain {
			st.DrainPolls++
			p.drain(q.Consumer).add(q, p.compacted)
		}
	}
	st.Commits = len(c.commits)
	st.ListOffsets = len(c.latest)
}

func (p *part) drain(consumer string) *drain {
	d := p.drains[consumer]
	if d == nil {
		d = &drain{
			consumer:  consumer,
			values:    make(map[value]bool),
			nulls:     make(map[int64]bool),
			maxOffset: -1,
			last:      make(map[value]offsetValue),
		}
		p.drains[consumer] = d
	}
	return d
}

// add records q; keyed tracks each key's last record, for compacted topics.
func (d *drain) add(q Poll, keyed bool) {
	v := valueOf(q.Value)
	if v.null {
		d.nulls[q.Offset] = true
	} else {
		d.values[v] = true
	}
	d.maxOffset = max(d.maxOffset, q.Offset)
	if !keyed {
		return
	}
	k := valueOf(q.Key)
	if prev, ok := d.last[k]; !ok || q.Offset >= prev.offset {
		d.last[k] = offsetValue{q.Offset, v}
	}
}

func (p *part) sortedDrains() []*drain {
	ds := make([]*drain, 0, len(p.drains))
	for _, d := range p.drains {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b *drain) int { return cmp.Compare(a.consumer, b.consumer) })
	return ds
}

// checkOffsets: one value per offset across acks and polls.
func (c *run) checkOffsets(p *part) {
	offsets := make([]int64, 0, len(p.seen))
	for o, ws := range p.seen {
		if len(ws) > 1 {
			offsets = append(offsets, o)
		}
	}
	slices.Sort(offsets)
	for _, o := range offsets {
		parts := make([]string, len(p.seen[o]))
		for i, w := range p.seen[o] {
			parts[i] = fmt.Sprintf("%v (%s)", w.v, w.who)
		}
		c.report(InconsistentOffsets, p.tp, o, "%d values at one offset: %s", len(parts), strings.Join(parts, ", "))
	}
}

// checkReads judges every non-nil value polled against the send that wrote it.
func (c *run) checkReads(p *part) {
	vs := make([]value, 0, len(p.polled))
	for v := range p.polled {
		vs = append(vs, v)
	}
	slices.SortFunc(vs, func(a, b value) int {
		return cmp.Or(cmp.Compare(slices.Min(p.polled[a]), slices.Min(p.polled[b])), cmp.Compare(a.s, b.s))
	})
	for _, v := range vs {
		offs := slices.Sorted(slices.Values(p.polled[v]))
		first := offs[0]
		s := p.byValue[v]
		switch {
		case s == nil:
			c.report(UnknownValue, p.tp, first, "value %v read, but no send wrote it", v)
		case s.Outcome == Fail:
			c.report(AbortedRead, p.tp, first, "value %v read, but its send by producer %s failed", v, s.Producer)
		case s.Outcome == OK && !slices.Contains(offs, s.Offset):
			c.report(InconsistentOffsets, p.tp, s.Offset, "value %v acknowledged to producer %s at offset %d, but read only at %v", v, s.Producer, s.Offset, offs)
		}
		if len(offs) > 1 {
			c.report(Duplicate, p.tp, first, "value %v read at %d offsets: %v", v, len(offs), offs)
		}
	}
}

// checkAcked: on a delete-policy topic, every OK send is read, and read by
// every drain of its partition.
func (c *run) checkAcked(p *part) {
	drains := p.sortedDrains()
	for _, s := range p.sends {
		if s.Outcome != OK || s.Offset < 0 {
			continue
		}
		v := valueOf(s.Value)
		read := func(values map[value]bool, nulls map[int64]bool) bool {
			if v.null {
				return nulls[s.Offset]
			}
			return values[v]
		}
		polled := p.polledNull[s.Offset]
		if !v.null {
			polled = len(p.polled[v]) > 0
		}
		if !polled && p.polls > 0 && s.Offset <= p.maxPolled {
			c.report(LostWrite, p.tp, s.Offset, "value %v acknowledged to producer %s, never read, though offsets up to %d were", v, s.Producer, p.maxPolled)
			continue
		}
		if len(drains) == 0 {
			c.report(Unseen, p.tp, s.Offset, "value %v acknowledged to producer %s: no drain read this partition", v, s.Producer)
			continue
		}
		var passed, short []string
		for _, d := range drains {
			if read(d.values, d.nulls) {
				continue
			}
			switch {
			case d.maxOffset > s.Offset:
				passed = append(passed, fmt.Sprintf("%s (read to %d)", d.consumer, d.maxOffset))
			case d.maxOffset < 0:
				short = append(short, d.consumer+" (read nothing)")
			default:
				short = append(short, fmt.Sprintf("%s (stopped at %d)", d.consumer, d.maxOffset))
			}
		}
		switch {
		case len(passed) > 0:
			c.report(LostWrite, p.tp, s.Offset, "value %v acknowledged to producer %s, missing from drains that read past it: %s", v, s.Producer, strings.Join(passed, ", "))
		case len(short) > 0:
			c.report(Unseen, p.tp, s.Offset, "value %v acknowledged to producer %s, not reached by drains %s", v, s.Producer, strings.Join(short, ", "))
		}
	}
}

// checkGaps: on a delete-policy topic, every offset between the lowest and
// the highest offset read was read or acknowledged.
func (c *run) checkGaps(p *part) {
	if p.polls == 0 {
		return
	}
	known := make([]int64, 0, len(p.seen))
	for o := range p.seen {
		if o >= p.minPolled && o <= p.maxPolled {
			known = append(known, o)
		}
	}
	slices.Sort(known)
	for i := 1; i < len(known); i++ {
		lo, hi := known[i-1]+1, known[i]-1
		if lo > hi {
			continue
		}
		c.report(OffsetGap, p.tp, lo, "offsets %d..%d (%d) lie between offsets %d and %d, but no poll read them and no send was acknowledged there", lo, hi, hi-lo+1, known[i-1], known[i])
	}
}

// checkSendOrder: each producer's OK sends to p got increasing offsets in
// the order the producer sent them.
func (c *run) checkSendOrder(p *part) {
	last := make(map[string]*Send)
	for _, s := range p.sends {
		if s.Outcome != OK || s.Offset < 0 {
			continue
		}
		if prev := last[s.Producer]; prev != nil && s.Offset <= prev.Offset {
			c.report(NonmonotonicSend, p.tp, s.Offset, "producer %s sent %v after %v, but they were acknowledged at offsets %d and %d", s.Producer, valueOf(s.Value), valueOf(prev.Value), s.Offset, prev.Offset)
		}
		last[s.Producer] = s
	}
}

// checkFinalValues: on a compacted topic, in each drain, every key's last
// value is the last OK write to it or an Info write that may have followed.
func (c *run) checkFinalValues(p *part) {
	type keyWrites struct {
		lastOK *Send
		info   []*Send
	}
	keys := make(map[value]*keyWrites)
	var order []value // keys in first-send order, for stable reports
	for _, s := range p.sends {
		k := valueOf(s.Key)
		kw := keys[k]
		if kw == nil {
			kw = &keyWrites{}
			keys[k] = kw
			order = append(order, k)
		}
		switch s.Outcome {
		case OK:
			if s.Offset >= 0 && (kw.lastOK == nil || s.Offset > kw.lastOK.Offset) {
				kw.lastOK = s
			}
		case Info:
			kw.info = append(kw.info, s)
		}
	}
	// allowed reports whether got may be a key's final state; nil means
	// absent, and so does a tombstone.
	allowed := func(kw *keyWrites, got *offsetValue) bool {
		var lastOK *Send
		if kw != nil {
			lastOK = kw.lastOK
		}
		if got != nil && lastOK != nil && got.offset < lastOK.Offset {
			return false // stale: the last acknowledged write is missing
		}
		if got != nil && lastOK != nil && got.v == valueOf(lastOK.Value) {
			return true
		}
		absent := got == nil || got.v.null
		if absent && (lastOK == nil || lastOK.Value == nil) {
			return true
		}
		if kw == nil {
			return false
		}
		// An unknown-outcome write may have landed after the last
		// acknowledged one: at a higher offset when got shows where.
		for _, s := range kw.info {
			v := valueOf(s.Value)
			later := got == nil || lastOK == nil || got.offset > lastOK.Offset
			if later && (absent && v.null || !absent && got.v == v) {
				return true
			}
		}
		return false
	}
	want := func(kw *keyWrites) string {
		var b strings.Builder
		switch {
		case kw == nil:
			b.WriteString("no send wrote this key")
		case kw.lastOK == nil:
			b.WriteString("no write to this key was acknowledged")
		default:
			fmt.Fprintf(&b, "last acknowledged write: %v at offset %d", valueOf(kw.lastOK.Value), kw.lastOK.Offset)
		}
		if kw != nil && len(kw.info) > 0 {
			fmt.Fprintf(&b, ", plus %d writes of unknown outcome", len(kw.info))
		}
		return b.String()
	}

	drains := p.sortedDrains()
	if len(drains) == 0 {
		drains = []*drain{{consumer: "(none: no drain read this partition)"}}
	}
	for _, d := range drains {
		// Keys written, then keys only read.
		ks := slices.Clone(order)
		var extra []value
		for k := range d.last {
			if keys[k] == nil {
				extra = append(extra, k)
			}
		}
		slices.SortFunc(extra, func(a, b value) int { return cmp.Compare(d.last[a].offset, d.last[b].offset) })
		ks = append(ks, extra...)
		for _, k := range ks {
			var got *offsetValue
			if ov, ok := d.last[k]; ok {
				got = &ov
			}
			if allowed(keys[k], got) {
				continue
			}
			state, at := "absent", int64(-1)
			if got != nil {
				state, at = fmt.Sprintf("%v at offset %d", got.v, got.offset), got.offset
			}
			c.report(WrongFinalValue, p.tp, at, "key %v in drain %s: final value %s; %s", k, d.consumer, state, want(keys[k]))
		}
	}
}

// checkConsumers: each consumer reads each partition forward, one offset at
// a time (skips allowed on compacted topics), until an Assign resets it.
func (c *run) checkConsumers() {
	type at struct {
		consumer string
		tp       tp
	}
	last := make(map[at]int64)
	for _, e := range c.consumer {
		q := e.poll
		key := at{q.Consumer, tp{q.Topic, q.Partition}}
		if e.assign {
			delete(last, key)
			continue
		}
		if q.Offset < 0 {
			continue
		}
		prev, ok := last[key]
		last[key] = q.Offset
		if !ok {
			continue
		}
		switch {
		case q.Offset <= prev:
			c.report(NonmonotonicPoll, key.tp, q.Offset, "consumer %s read offset %d after %d", q.Consumer, q.Offset, prev)
		case q.Offset > prev+1 && !c.opts.Compacted[q.Topic]:
			c.report(PollSkip, key.tp, prev+1, "consumer %s read offset %d after %d, skipping %d", q.Consumer, q.Offset, prev, q.Offset-prev-1)
		}
	}
}

// timedOffset is an offset observed, or acknowledged, between start and end.
type timedOffset struct {
	start, end time.Time
	offset     int64
	desc       string
}

// precededBy returns, for each y in ys, the x in xs with the highest offset
// among those that ended before y started, when that offset is above
// y's. Overlapping pairs are never compared.
func precededBy(xs, ys []timedOffset) [][2]timedOffset {
	byEnd := slices.Clone(xs)
	slices.SortFunc(byEnd, func(a, b timedOffset) int { return a.end.Compare(b.end) })
	byStart := slices.Clone(ys)
	slices.SortStableFunc(byStart, func(a, b timedOffset) int { return a.start.Compare(b.start) })
	var out [][2]timedOffset
	var top *timedOffset
	i := 0
	for _, y := range byStart {
		for ; i < len(byEnd) && byEnd[i].end.Before(y.start); i++ {
			if top == nil || byEnd[i].offset > top.offset {
				top = &byEnd[i]
			}
		}
		if top != nil && top.offset > y.offset {
			out = append(out, [2]timedOffset{*top, y})
		}
	}
	return out
}

// checkCommits: a group's committed offset never goes back in real time.
func (c *run) checkCommits() {
	type key struct {
		group string
		tp    tp
	}
	groups := make(map[key][]timedOffset)
	for _, cm := range c.commits {
		k := key{cm.Group, tp{cm.Topic, cm.Partition}}
		groups[k] = append(groups[k], timedOffset{cm.Start, cm.End, cm.Offset, ""})
	}
	keys := slices.Collect(maps.Keys(groups))
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.group, b.group), compareTP(a.tp, b.tp)) })
	for _, k := range keys {
		for _, pr := range precededBy(groups[k], groups[k]) {
			c.report(NonmonotonicCommit, k.tp, pr[1].offset, "group %s: committed offset %d observed after %d had been", k.group, pr[1].offset, pr[0].offset)
		}
	}
}

// checkListOffsets: a partition's latest offset never goes back in real
// time, and covers every send acknowledged before it was asked for.
func (c *run) checkListOffsets() {
	obs := make(map[tp][]timedOffset)
	for _, l := range c.latest {
		t := tp{l.Topic, l.Partition}
		obs[t] = append(obs[t], timedOffset{l.Start, l.End, l.Offset, ""})
	}
	keys := slices.Collect(maps.Keys(obs))
	slices.SortFunc(keys, compareTP)
	for _, t := range keys {
		for _, pr := range precededBy(obs[t], obs[t]) {
			c.report(NonmonotonicListOffsets, t, pr[1].offset, "latest offset %d observed after %d had been", pr[1].offset, pr[0].offset)
		}
		p := c.parts[t]
		if p == nil {
			continue
		}
		var acked []timedOffset
		for _, s := range p.sends {
			if s.Outcome == OK && s.Offset >= 0 {
				desc := fmt.Sprintf("value %v acknowledged to producer %s at offset %d", valueOf(s.Value), s.Producer, s.Offset)
				acked = append(acked, timedOffset{s.Start, s.End, s.Offset + 1, desc})
			}
		}
		for _, pr := range precededBy(acked, obs[t]) {
			c.report(StaleListOffsets, t, pr[1].offset, "latest offset %d, asked for after %s", pr[1].offset, pr[0].desc)
		}
	}
}

// checkLeaderChanges: the run saw at least MinLeaderChanges changes.
func (c *run) checkLeaderChanges() {
	n := 0
	for _, l := range c.leaders {
		if l.From != l.To {
			n++
		}
	}
	c.res.Stats.LeaderChanges = n
	if n < c.opts.MinLeaderChanges {
		c.report(NoFault, tp{}, -1, "%d leader changes recorded, %d required: no fault took effect", n, c.opts.MinLeaderChanges)
	}
}
