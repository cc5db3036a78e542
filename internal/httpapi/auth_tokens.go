package httpapi

// The bearer tokens file: SHA-256 hashes of tokens, each mapped to a
// principal. The file never holds a token itself, so reading it (a backup, a
// config repository) does not give access.
//
// Format, one entry a line:
//
//	# comment
//	sha256:<64 hex digits> User:<name>
//
// Blank lines and lines starting with "#" are ignored. The hash is
// SHA-256 of the token's bytes, in hex (either case):
//
//	printf %s "$TOKEN" | sha256sum
//
// A hash may appear once; several hashes may map to one principal (a token
// rotation). The principal is "User:" and a name without spaces or control
// characters, as the Kafka listeners name users. An empty file is valid and
// accepts no token. The file is read at start and read again when its
// contents change, checked at most once per TokenReloadInterval; a file that
// no longer parses keeps the last good tokens in force and is reported (once
// per content) through the onError callback.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxTokensFileBytes bounds the tokens file.
	MaxTokensFileBytes = 1 << 20
	// MaxTokenBytes bounds a presented bearer token; a longer one is refused
	// without being hashed.
	MaxTokenBytes = 4096
	// TokenReloadInterval is the least time between two checks of the file.
	TokenReloadInterval = time.Second
	// tokenHashPrefix starts every hash in the file.
	tokenHashPrefix = "sha256:"
	// principalPrefix is the only principal type the file names.
	principalPrefix = "User:"
	// maxPrincipalBytes bounds a principal's name in the file.
	maxPrincipalBytes = 255
)

// tokenEntry is one line of the file.
type tokenEntry struct {
	hash      [sha256.Size]byte
	principal string
}

// parseTokens parses a tokens file. Errors name the line, never its hash.
func parseTokens(data []byte) ([]tokenEntry, error) {
	if len(data) > MaxTokensFileBytes {
		return nil, fmt.Errorf("file of %d bytes is over the limit of %d bytes", len(data), MaxTokensFileBytes)
	}
	if !utf8.Valid(data) {
		return nil, errors.New("file is not UTF-8 text")
	}
	var out []tokenEntry
	seen := map[[sha256.Size]byte]int{}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		s := strings.TrimSpace(line)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		fields := strings.Fields(s)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"sha256:<hex> User:<name>\", got %d fields", n, len(fields))
		}
		e, err := parseTokenEntry(fields[0], fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if prev, dup := seen[e.hash]; dup {
			return nil, fmt.Errorf("line %d: the same token hash is on line %d", n, prev)
		}
		seen[e.hash] = n
		out = append(out, e)
	}
	return out, nil
}

func parseTokenEntry(hash, principal string) (tokenEntry, error) {
	var e tokenEntry
	hexHash, ok := strings.CutPrefix(hash, tokenHashPrefix)
	if !ok {
		return e, errors.New(`the first field must be "sha256:" and the token's SHA-256 in hex (printf %s "$TOKEN" | sha256sum); tokens themselves are not accepted`)
	}
	if len(hexHash) != hex.EncodedLen(sha256.Size) {
		return e, fmt.Errorf("a SHA-256 hash is %d hex digits, got %d", hex.EncodedLen(sha256.Size), len(hexHash))
	}
	if _, err := hex.Decode(e.hash[:], []byte(hexHash)); err != nil {
		return e, errors.New("the hash is not hex")
	}
	name, ok := strings.CutPrefix(principal, principalPrefix)
	if !ok || name == "" {
		return e, fmt.Errorf("the principal must be %q and a name", principalPrefix+"<name>")
	}
	if len(name) > maxPrincipalBytes {
		return e, fmt.Errorf("principal name of %d bytes is over the limit of %d bytes", len(name), maxPrincipalBytes)
	}
	if strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
		return e, errors.New("the principal name has a space or a control character")
	}
	e.principal = principal
	return e, nil
}

// TokenFile authenticates bearer tokens against a tokens file. It is safe for
// concurrent use: requests read the tokens in force without a lock, and one
// request at a time checks the file when TokenReloadInterval has passed.
type TokenFile struct {
	path    string
	onError func(error)

	// loaded and failed count the file's reads that took effect and those
	// that did not (shardcache_http_tokens_file_loads_total).
	loaded, failed atomic.Uint64
	// tokens maps SHA-256 digests to principals; replaced whole, never
	// modified.
	tokens atomic.Pointer[map[[sha256.Size]byte]string]
	// nextCheck is when the file may be checked again (Unix ns).
	nextCheck atomic.Int64

	mu sync.Mutex // serializes reads of the file; guards what follows
	// lastSum is the SHA-256 of the contents last read, good or bad, and
	// lastErr what they gave: unchanged contents are not parsed or
	// reported again.
	lastSum [sha256.Size]byte
	lastErr string
}

// LoadTokenFile reads the tokens file at path, or returns why it does not
// load. onError is told about a later reload that failed (once per failing
// content); nil ignores it.
func LoadTokenFile(path string, onError func(error)) (*TokenFile, error) {
	f := &TokenFile{path: path, onError: onError}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload reads the file now, whatever TokenReloadInterval says. On error the
// tokens in force stay.
func (f *TokenFile) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.checkLocked(true)
	return err
}

// checkLocked reads the file and, when its contents changed or force is set,
// parses it and puts its tokens in force. fresh reports an outcome not seen
// at the previous check.
func (f *TokenFile) checkLocked(force bool) (fresh bool, err error) {
	f.nextCheck.Store(time.Now().Add(TokenReloadInterval).UnixNano())
	data, err := readTokensFile(f.path)
	var sum [sha256.Size]byte
	if err == nil {
		sum = sha256.Sum256(data)
		if !force && sum == f.lastSum {
			return false, nil // in force, or already reported
		}
		var entries []tokenEntry
		if entries, err = parseTokens(data); err == nil {
			tokens := make(map[[sha256.Size]byte]string, len(entries))
			for _, e := range entries {
				tokens[e.hash] = e.principal
			}
			f.tokens.Store(&tokens)
			f.lastSum, f.lastErr = sum, ""
			f.loaded.Add(1)
			return true, nil
		}
		err = fmt.Errorf("tokens file %s: %w", f.path, err)
	}
	fresh = force || sum != f.lastSum || err.Error() != f.lastErr
	f.lastSum, f.lastErr = sum, err.Error()
	if fresh {
		f.failed.Add(1)
	}
	return fresh, err
}

func readTokensFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("tokens file %s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxTokensFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	return data, nil
}

// current returns the tokens in force, checking the file first when
// TokenReloadInterval has passed and no other request is checking it.
func (f *TokenFile) current() map[[sha256.Size]byte]string {
	if time.Now().UnixNano() >= f.nextCheck.Load() && f.mu.TryLock() {
		fresh, err := f.checkLocked(false)
		f.mu.Unlock()
		if err != nil && fresh && f.onError != nil {
			f.onError(err)
		}
	}
	return *f.tokens.Load()
}

// Principal returns the principal of token, and whether the file names it.
// The token is hashed before anything is compared, and only SHA-256 digests
// are compared: the digests are what the file holds and are not secret (the
// file may be read by anyone who cannot already present a token), so the
// timing of the lookup, which depends on the digest of the caller's own
// input, tells nothing that leads back to a token. This is the
// constant-time property that matters, at the cost of a map lookup rather
// than a pass over every entry (BenchmarkTokenPrincipal).
func (f *TokenFile) Principal(token string) (string, bool) {
	if token == "" || len(token) > MaxTokenBytes {
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	p, ok := f.current()[sum]
	return p, ok
}
