package broker

import "github.com/twmb/franz-go/pkg/kerr"

// eachTopicOnce calls answer once per distinct topic name in topics, in
// request order, with the first entry naming it. dup is nil, or an
// INVALID_REQUEST error when the request lists that name more than once: such
// a topic is answered once and none of its entries is acted on (as Kafka does
// for CreateTopics and CreatePartitions).
func eachTopicOnce[T any](topics []T, name func(T) string, answer func(rt T, dup error)) {
	count := make(map[string]int, len(topics))
	for _, rt := range topics {
		count[name(rt)]++
	}
	answered := make(map[string]bool, len(count))
	for _, rt := range topics {
		n := name(rt)
		if answered[n] {
			continue
		}
		answered[n] = true
		var dup error
		if count[n] > 1 {
			dup = newKafkaError(kerr.InvalidRequest, "topic %q is listed more than once in the request", n)
		}
		answer(rt, dup)
	}
}
