package docs

import (
	"bufio"
	"bytes"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const architecture = "docs/ARCHITECTURE.md"

var (
	// archRule is a citation of a numbered rule of the architecture document.
	archRule = regexp.MustCompile(`docs/ARCHITECTURE\.md rule (\d+)`)
	// staleCitation matches citations of documents that are not in the
	// repository: a bare design file's numbered rules, and the team's shared
	// notes and style guide.
	staleCitation = regexp.MustCompile(`(?i)\bDESIGN\.md rules? \d|\bSTYLE\.md\b|\bseed-talk\.md\b|\braft-design\.md\b|\bshared/notes\b|\bcluster notes\b`)
	// ruleHeading is a numbered rule in the architecture document: "3. **...".
	ruleHeading = regexp.MustCompile(`^(\d+)\. \*\*`)
)

// moduleRoot is the directory of the repository's go.mod.
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// numberedRules returns the rule numbers of the architecture document's
// "numbered rules" section.
func numberedRules(tb testing.TB, doc []byte) map[int]bool {
	tb.Helper()
	rules := map[int]bool{}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = strings.Contains(line, "numbered rules")
			continue
		}
		if m := ruleHeading.FindStringSubmatch(line); in && m != nil {
			n, _ := strconv.Atoi(m[1])
			rules[n] = true
		}
	}
	if len(rules) == 0 {
		tb.Fatalf("%s has no numbered rules section", architecture)
	}
	return rules
}

// TestCommentCitations fails when a Go comment cites a design document outside
// the repository, or a rule that docs/ARCHITECTURE.md does not have.
func TestCommentCitations(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(architecture)))
	if err != nil {
		t.Fatal(err)
	}
	rules := numberedRules(t, doc)
	for n := 1; n <= 8; n++ {
		if !rules[n] {
			t.Errorf("%s lost rule %d; code comments cite rules 1-8 by number", architecture, n)
		}
	}

	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				pos := fset.Position(c.Pos())
				rel, _ := filepath.Rel(root, pos.Filename)
				for _, m := range staleCitation.FindAllString(c.Text, -1) {
					t.Errorf("%s:%d: comment cites %q, which is not in the repository; cite %s (rule N) instead", rel, pos.Line, m, architecture)
				}
				for _, m := range archRule.FindAllStringSubmatch(c.Text, -1) {
					if n, _ := strconv.Atoi(m[1]); !rules[n] {
						t.Errorf("%s:%d: comment cites %s rule %d, which it does not have", rel, pos.Line, architecture, n)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("walked only %d Go files from %s: wrong root?", files, root)
	}
}
