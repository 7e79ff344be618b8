package status

import (
	"errors"
	"go/build"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/isp-box/isp-box/"

// TestImportRule keeps ARCHITECTURE.md's "what may import what": the four
// components never import each other and meet only in internal/box; they,
// the console, the page and the metrics share internal/bus and this
// package's status types. Test files are not held to it.
func TestImportRule(t *testing.T) {
	ground := []string{"internal/bus", "internal/status", "internal/clock", "internal/readahead"}
	rules := map[string][]string{ // package tree -> the project's packages it may import besides its own tree
		"pbx":                append([]string{"softmodem"}, ground...),
		"modem":              ground,
		"ppp":                ground,
		"netstack":           ground,
		"softmodem":          nil,
		"internal/bus":       nil,
		"internal/clock":     nil,
		"internal/readahead": nil,
		"internal/status":    {"internal/bus"},
		"internal/console":   ground,
		"internal/web":       append([]string{"internal/console"}, ground...),
		"internal/metrics":   append([]string{"internal/console"}, ground...),
	}
	within := func(pkg, tree string) bool { return pkg == tree || strings.HasPrefix(pkg, tree+"/") }
	for tree, allowed := range rules {
		root := filepath.Join("..", "..", filepath.FromSlash(tree))
		err := filepath.WalkDir(root, func(dir string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			p, err := build.ImportDir(dir, 0)
			var noGo *build.NoGoError
			if errors.As(err, &noGo) {
				return nil
			}
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(filepath.Join("..", ".."), dir)
			for _, imp := range p.Imports {
				dep, ok := strings.CutPrefix(imp, module)
				if !ok || within(dep, tree) {
					continue
				}
				ok = false
				for _, a := range allowed {
					ok = ok || within(dep, a)
				}
				if !ok {
					t.Errorf("%s imports %s: %s may import only %v of the project (ARCHITECTURE.md)", filepath.ToSlash(rel), dep, tree, allowed)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
