// Package nodetest opens a real shard store and a ready single-node Raft node
// for tests of the packages built on them (broker, compaction, internal/httpapi).
//
// It is imported only by _test.go files; nothing in the server links it.
// raftfsm's own tests cannot use it (raftfsm's in-package tests importing a
// package that imports raftfsm is an import cycle), so they keep their own
// set-up in raftfsm/helpers_test.go.
package nodetest
