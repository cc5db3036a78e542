package httpapi

import (
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/broker"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// Config configures a Handler.
type Config struct {
	// Gatherer is what /metrics exposes: the registry shared by every component.
	// nil serves an empty exposition.
	Gatherer prometheus.Gatherer
	// Registerer receives the HTTP server's own metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Ready reports whether the node serves Kafka traffic (Raft groups have
	// leaders and have replayed their logs). It is called on every /readyz and
	// must be safe for concurrent use. nil means never ready.
	Ready func() bool
	// Backend returns the node's components once they are open, nil before
	// (the HTTP server starts first so probes answer during Raft replay). The
	// lookup API and status page read through it; nil func means never open.
	Backend func() *Backend
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Pprof serves net/http/pprof's profiles under /debug/pprof/ (CPU
	// profile, heap, goroutines, execution trace). They expose the process's
	// internals and cost CPU while taken, so they are off unless asked for.
	Pprof bool

	// Tokens authenticates bearer tokens (auth_tokens.go); nil accepts none.
	Tokens *TokenFile
	// ClientCerts turns authentication on for client certificates: a
	// certificate the TLS listener verified names the principal
	// "User:<CN>". Set it when the HTTP listener asks for client
	// certificates.
	ClientCerts bool
	// Authorizer decides what an authenticated principal may do (auth.go).
	// With authentication on (Tokens or ClientCerts), nil denies every
	// check that needs it.
	Authorizer Authorizer
	// ProbesNeedAuth makes /metrics, /healthz and /readyz need a principal
	// too when authentication is on; by default they answer anyone.
	ProbesNeedAuth bool
	// PeerTLS, when set, is the client TLS configuration /v1/cluster asks
	// the other nodes' HTTP ports with (https); nil asks over plain HTTP.
	// Set it when the HTTP port serves TLS: every node's does.
	PeerTLS *tls.Config
}

// Backend is what the data endpoints (key lookups, the status page) read.
type Backend struct {
	Node  *raftfsm.Node
	Store *shardstore.Store
	// Groups lists consumer groups (broker.Broker.Groups).
	Groups func() []broker.GroupSummary
}

// Handler is the HTTP API. It is safe for concurrent use.
type Handler struct {
	mux     *http.ServeMux
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// started is when the handler was built (the page's uptime).
	started time.Time
	// rates samples the traffic counters for /v1/status.
	rates rateSampler
	// indexHTML is the status page.
	indexHTML []byte
	// peers asks other nodes' /v1/cluster/local (cluster.go).
	peers *http.Client
}

// route is one endpoint. GET implies HEAD.
type route struct {
	// pattern is a path-only http.ServeMux pattern ("/v1/topics/{topic}/keys/{key}"
	// works too); methods are matched by the route itself so that a wrong method
	// gets a JSON 405.
	pattern string
	// name labels the route's metrics; keep it a constant.
	name    string
	methods []string
	serve   http.HandlerFunc
	// access is what the route needs when authentication is on (auth.go).
	access access
}

// New builds the handler.
func New(cfg Config) *Handler {
	h := &Handler{mux: http.NewServeMux(), cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registerer, cfg.Tokens), started: time.Now(), peers: newPeerClient(cfg.PeerTLS)}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.cfg.Gatherer == nil {
		h.cfg.Gatherer = prometheus.NewRegistry()
	}
	if h.cfg.Authorizer == nil {
		h.cfg.Authorizer = AuthorizerFunc(func(string, string, kmsg.ACLOperation, kmsg.ACLResourceType, string) bool { return false })
	}
	probes := accessOpen
	if cfg.ProbesNeedAuth {
		probes = accessPrincipal
	}
	var static http.Handler
	h.indexHTML, static = statusAssets()
	metricsHandler := promhttp.HandlerFor(h.cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(h.log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	})
	routes := []route{
		{pattern: "/metrics", name: "metrics", methods: []string{http.MethodGet}, serve: metricsHandler.ServeHTTP, access: probes},
		{pattern: "/healthz", name: "healthz", methods: []string{http.MethodGet}, serve: h.healthz, access: probes},
		{pattern: "/readyz", name: "readyz", methods: []string{http.MethodGet}, serve: h.readyz, access: probes},
		{pattern: "/v1/topics/{topic}/keys/{key}", name: "lookup", methods: []string{http.MethodGet}, serve: h.getKey, access: accessTopicRead},
		{pattern: "/v1/topics/{topic}/keys:batchGet", name: "batchget", methods: []string{http.MethodPost}, serve: h.batchGet, access: accessTopicRead},
		{pattern: "/v1/status", name: "status", methods: []string{http.MethodGet}, serve: h.status, access: accessClusterRead},
		{pattern: "/v1/cluster", name: "cluster", methods: []string{http.MethodGet}, serve: h.cluster, access: accessClusterView},
		{pattern: "/v1/cluster/local", name: "cluster_local", methods: []string{http.MethodGet}, serve: h.clusterLocal, access: accessClusterRead},
		{pattern: "/v1/cluster/nodes/{id}", name: "cluster_remove_node", methods: []string{http.MethodDelete}, serve: h.removeNode, access: accessNodeRemoval},
		{pattern: "/{$}", name: "statuspage", methods: []string{http.MethodGet}, serve: h.statusPage, access: accessClusterRead},
		{pattern: "/static/", name: "static", methods: []string{http.MethodGet}, serve: static.ServeHTTP, access: accessPrincipal},
	}
	if cfg.Pprof {
		// Profiles show the process's internals and cost CPU: ALTER on the cluster.
		pp := func(pattern string, serve http.HandlerFunc, methods ...string) route {
			return route{pattern: pattern, name: "pprof", methods: methods, serve: serve, access: accessClusterChange}
		}
		routes = append(routes,
			pp("/debug/pprof/", pprof.Index, http.MethodGet),
			pp("/debug/pprof/cmdline", pprof.Cmdline, http.MethodGet),
			pp("/debug/pprof/profile", pprof.Profile, http.MethodGet),
			pp("/debug/pprof/symbol", pprof.Symbol, http.MethodGet, http.MethodPost),
			pp("/debug/pprof/trace", pprof.Trace, http.MethodGet),
		)
	}
	for _, rt := range routes {
		h.mux.Handle(rt.pattern, h.instrument(rt.name, h.guard(rt.access, methodGuard(rt.methods, rt.serve))))
	}
	h.mux.Handle("/", h.instrument("notfound", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})))
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) instrument(name string, next http.Handler) http.Handler {
	return promhttp.InstrumentHandlerCounter(h.metrics.requests.MustCurryWith(prometheus.Labels{"handler": name}), next)
}

func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	if h.cfg.Ready == nil || !h.cfg.Ready() {
		writeError(w, http.StatusServiceUnavailable, "not ready")
		return
	}
	writeText(w, http.StatusOK, "ready\n")
}

// methodGuard answers 405 with an Allow header unless the request's method is one
// of methods (HEAD counts as GET).
func methodGuard(methods []string, next http.HandlerFunc) http.Handler {
	allowed := map[string]bool{}
	var allow []string
	for _, m := range methods {
		allowed[m] = true
		allow = append(allow, m)
		if m == http.MethodGet {
			allowed[http.MethodHead] = true
			allow = append(allow, http.MethodHead)
		}
	}
	allowHeader := strings.Join(allow, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed[r.Method] {
			w.Header().Set("Allow", allowHeader)
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+allowHeader)
			return
		}
		next(w, r)
	})
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}
