// Package docs holds no code, only a test that keeps the design citations in Go
// comments honest: every rule a comment cites is a numbered rule of
// docs/ARCHITECTURE.md, and no comment cites a design document that is not in
// the repository.
package docs
