package main

import (
	"net/http"
	"net/http/pprof"
)

// withPprof serves net/http/pprof's handlers under /debug/pprof/ (--pprof) and
// everything else through next. The profiles are mounted by hand, not through
// http.DefaultServeMux, so nothing else registered there is exposed.
func withPprof(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", next)
	return mux
}
