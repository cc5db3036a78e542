package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shardcache/shardcache/internal/acl"
	"github.com/shardcache/shardcache/internal/scram"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// errorCode maps an internal error to the Kafka error code a client sees. It is the
// one place where that mapping lives (docs/ARCHITECTURE.md). nil maps to 0. An error it does not
// know maps to UNKNOWN_SERVER_ERROR and is logged by the caller, since clients never
// see raw Go error strings.
func errorCode(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke):
		return ke.Code
	case errors.Is(err, raftfsm.ErrUnknownTopic),
		errors.Is(err, raftfsm.ErrUnknownPartition),
		errors.Is(err, shardstore.ErrUnknownShard):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, raftfsm.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, raftfsm.ErrInvalidTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, raftfsm.ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code
	case errors.Is(err, raftfsm.ErrNotLeader):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, raftfsm.ErrNotReady):
		return kerr.LeaderNotAvailable.Code
	case errors.Is(err, raftfsm.ErrClosed):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, topicconfig.ErrUnknown), errors.Is(err, topicconfig.ErrInvalid):
		return kerr.InvalidConfig.Code
	case errors.Is(err, raftfsm.ErrUnknownCredential):
		return kerr.ResourceNotFound.Code
	case errors.Is(err, acl.ErrInvalid):
		return kerr.InvalidRequest.Code
	case errors.Is(err, scram.ErrBadCredential):
		return kerr.UnacceptableCredential.Code
	case errors.Is(err, shardstore.ErrKeyRequired):
		return kerr.InvalidRecord.Code
	case errors.Is(err, shardstore.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, shardstore.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, shardstore.ErrInvalidTxnState):
		return kerr.InvalidTxnState.Code
	case errors.Is(err, shardstore.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, shardstore.ErrEmptyBatch):
		return kerr.InvalidRecord.Code
	case errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	case errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code
	}
	return kerr.UnknownServerError.Code
}

// errorMessage is the text for a response's ErrorMessage field: the error's own
// words for errors meant for users (config, record and topic validation), nothing
// for the rest.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	switch code := errorCode(err); code {
	case kerr.InvalidConfig.Code, kerr.InvalidRecord.Code, kerr.InvalidTopicException.Code,
		kerr.InvalidPartitions.Code, kerr.TopicAlreadyExists.Code, kerr.InvalidRequest.Code,
		kerr.CorruptMessage.Code, kerr.MessageTooLarge.Code, kerr.UnsupportedCompressionType.Code,
		kerr.UnacceptableCredential.Code:
		s := err.Error()
		return &s
	}
	return nil
}

// kafkaError is an error the broker itself decides on: a Kafka code and a
// message written for the client (for example INVALID_REPLICATION_FACTOR and
// why). errorCode finds the code through Unwrap; clientMessage sends the text.
type kafkaError struct {
	code *kerr.Error
	msg  string
}

func (e *kafkaError) Error() string { return e.msg }
func (e *kafkaError) Unwrap() error { return e.code }

// newKafkaError builds a kafkaError; the message is formatted like fmt.Sprintf.
func newKafkaError(code *kerr.Error, format string, args ...any) error {
	return &kafkaError{code: code, msg: fmt.Sprintf(format, args...)}
}

// clientMessage is the ErrorMessage for err: a kafkaError's own text,
// otherwise what errorMessage allows.
func clientMessage(err error) *string {
	var ke *kafkaError
	if errors.As(err, &ke) {
		return &ke.msg
	}
	return errorMessage(err)
}

// codeFor maps err with errorCode and logs the errors that map to
// UNKNOWN_SERVER_ERROR (the client sees only the code). what names the
// operation in the log; attrs add context such as the topic.
func (b *Broker) codeFor(err error, what string, attrs ...any) int16 {
	code := errorCode(err)
	if code == kerr.UnknownServerError.Code {
		b.log.Error("unexpected error", append([]any{"op", what, logKeyError, err}, attrs...)...)
	}
	return code
}
