package broker

import "github.com/prometheus/client_golang/prometheus"

// metrics are the broker's Prometheus collectors. Labels are bounded: api is one
// of the registered API names, result is "ok" or a Kafka error name.
type metrics struct {
	requests       *prometheus.CounterVec   // api, result
	requestSeconds *prometheus.HistogramVec // api
	produceBytes   prometheus.Counter
	produceRecords prometheus.Counter
	fetchBytes     prometheus.Counter
	fetchRecords   prometheus.Counter
	// fetchReadAhead counts partitions read ahead for a connection's next
	// fetch (result "read"), and then used by it or dropped
	// (fetch_readahead.go).
	fetchReadAhead  *prometheus.CounterVec // result
	connections     prometheus.Gauge
	connectionsOpen prometheus.Counter
	// connectionsRefused counts connections closed at accept (MaxConnections);
	// connectionsClosed the ones the broker closed for a reason of its own.
	connectionsRefused prometheus.Counter
	connectionsClosed  *prometheus.CounterVec // reason
	inflightBytes      prometheus.Gauge
	inflightLimit      prometheus.Gauge
	budgetWaits        *prometheus.CounterVec // class
	fetchSessions      prometheus.Gauge
	// saslAuthentications counts SaslAuthenticate outcomes.
	saslAuthentications *prometheus.CounterVec // mechanism, result
	// authorizationDenied counts requests refused on a resource (authorizer.go).
	authorizationDenied *prometheus.CounterVec // resource_type
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_broker_requests_total",
			Help: "Kafka requests served, by API and result (ok or the Kafka error code name of the response's first error).",
		}, []string{"api", "result"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shardcache_broker_request_duration_seconds",
			Help:    "Time from a request's arrival to its response being written, by API.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"api"}),
		produceBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_broker_produce_bytes_total",
			Help: "Record batch bytes accepted by Produce, as sent (compressed).",
		}),
		produceRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_broker_produce_records_total",
			Help: "Records accepted by Produce.",
		}),
		fetchBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_broker_fetch_bytes_total",
			Help: "Record batch bytes returned by Fetch.",
		}),
		fetchRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_broker_fetch_records_total",
			Help: "Records returned by Fetch.",
		}),
		fetchReadAhead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_broker_fetch_read_ahead_partitions_total",
			Help: "Partitions read ahead for a connection's next fetch (result read), then used by it (used) or read again (dropped).",
		}, []string{"result"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardcache_broker_connections",
			Help: "Open Kafka client connections.",
		}),
		connectionsOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_broker_connections_opened_total",
			Help: "Kafka client connections accepted.",
		}),
		connectionsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_broker_connections_refused_total",
			Help: "Kafka client connections closed as they were accepted because MaxConnections were open.",
		}),
		connectionsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_broker_connections_closed_total",
			Help: "Kafka client connections closed by the broker, by reason: idle, read_timeout, write_timeout, memory, tls_handshake, authentication_timeout.",
		}, []string{"reason"}),
		inflightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardcache_broker_inflight_bytes",
			Help: "Bytes charged to the memory budget: requests being read and served, batches being decoded, responses being written.",
		}),
		inflightLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardcache_broker_inflight_limit_bytes",
			Help: "The memory budget of requests in flight (MaxInflightBytes).",
		}),
		budgetWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_broker_inflight_waits_total",
			Help: "Times a connection reader (class read) or a handler (class work) waited for room in the memory budget.",
		}, []string{"class"}),
		fetchSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardcache_broker_fetch_sessions",
			Help: "Open fetch sessions (KIP-227), at most FetchSessionCacheSlots.",
		}),
		saslAuthentications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_sasl_authentications_total",
			Help: "SASL authentications, by mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and result (success or failure).",
		}, []string{"mechanism", "result"}),
		authorizationDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_authorization_denied_total",
			Help: "Resources a request was refused access to by the ACLs, by resource type (TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID).",
		}, []string{"resource_type"}),
	}
	if reg != nil {
		reg.MustRegister(m.saslAuthentications, m.authorizationDenied)
		reg.MustRegister(m.requests, m.requestSeconds, m.produceBytes, m.produceRecords,
			m.fetchBytes, m.fetchRecords, m.fetchReadAhead, m.connections, m.connectionsOpen,
			m.connectionsRefused, m.connectionsClosed, m.inflightBytes, m.inflightLimit, m.budgetWaits,
			m.fetchSessions)
	}
	return m
}
