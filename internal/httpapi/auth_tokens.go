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
// modification time or size changes, at most once per TokenReloadInterval;
// a file that no longer parses keeps the last good tokens in force and is
// reported through the OnError callback.

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
// concurrent use.
type TokenFile struct {
	path    string
	onError func(error)

	// loaded and failed count the file's reads that took effect and those
	// that did not (shardcache_http_tokens_file_loads_total).
	loaded, failed atomic.Uint64

	mu        sync.Mutex
	lastCheck time.Time
	stamp     fileStamp
	tokens    map[[sha256.Size]byte]string // digest -> principal; never modified, replaced whole
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// LoadTokenFile reads the tokens file at path, or returns why it does not
// load. onError is told about a later reload that failed; nil ignores it.
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
	return f.reloadLocked()
}

func (f *TokenFile) reloadLocked() error {
	f.lastCheck = time.Now()
	st, data, err := readTokensFile(f.path)
	if err == nil {
		var entries []tokenEntry
		if entries, err = parseTokens(data); err == nil {
			tokens := make(map[[sha256.Size]byte]string, len(entries))
			for _, e := range entries {
				tokens[e.hash] = e.principal
			}
			f.stamp, f.tokens = st, tokens
			f.loaded.Add(1)
			return nil
		}
		err = fmt.Errorf("tokens file %s: %w", f.path, err)
	}
	f.failed.Add(1)
	return err
}

func readTokensFile(path string) (fileStamp, []byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return fileStamp{}, nil, fmt.Errorf("tokens file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return fileStamp{}, nil, fmt.Errorf("tokens file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fileStamp{}, nil, fmt.Errorf("tokens file %s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxTokensFileBytes+1))
	if err != nil {
		return fileStamp{}, nil, fmt.Errorf("tokens file: %w", err)
	}
	return fileStamp{fi.ModTime(), fi.Size()}, data, nil
}

// current returns the tokens in force, reloading the file first when it
// changed and the last check is TokenReloadInterval old.
func (f *TokenFile) current() map[[sha256.Size]byte]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.lastCheck) < TokenReloadInterval {
		return f.tokens
	}
	f.lastCheck = time.Now()
	fi, err := os.Stat(f.path)
	if err == nil && (fileStamp{fi.ModTime(), fi.Size()}) == f.stamp {
		return f.tokens
	}
	if err == nil {
		err = f.reloadLocked()
	} else {
		f.failed.Add(1)
		err = fmt.Errorf("tokens file: %w", err)
	}
	if err != nil && f.onError != nil {
		f.onError(err)
	}
	return f.tokens
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
