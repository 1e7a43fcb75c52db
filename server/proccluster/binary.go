package proccluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// BinaryEnv names the environment variable holding a built herald binary.
// `make test` builds it once and sets it, so that no test package builds
// its own.
const BinaryEnv = "HERALD_BIN"

// buildTimeout bounds `go build` of cmd/herald (a cold build on a loaded
// machine takes a minute or two).
const buildTimeout = 5 * time.Minute

// ErrNoGoTool is returned by Binary when HERALD_BIN is unset and there is no
// go command to build herald with.
var ErrNoGoTool = errors.New("proccluster: HERALD_BIN unset and no go tool on PATH")

// built is the binary Binary built, once per process.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary returns the herald binary: $HERALD_BIN when set, else cmd/herald
// built once per process with `go build` (no -race: the nodes are not
// under test for races, and a race build is several times slower) into a
// temporary directory that RemoveBuilt deletes. Safe for concurrent use.
func Binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("proccluster: %s=%s: %w", BinaryEnv, p, err)
		}
		return p, nil
	}
	built.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			built.err = fmt.Errorf("%w: %v", ErrNoGoTool, err)
			return
		}
		built.dir, err = os.MkdirTemp("", "herald-bin-*")
		if err != nil {
			built.err = fmt.Errorf("proccluster: %w", err)
			return
		}
		path := filepath.Join(built.dir, "herald")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, goTool, "build", "-o", path, "github.com/heraldlog/herald/cmd/herald").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("proccluster: go build cmd/herald: %w\n%s", err, out)
			return
		}
		built.path = path
	})
	return built.path, built.err
}

// RemoveBuilt deletes the directory of the binary Binary built, if any. A
// test package's TestMain calls it after m.Run; Binary must not be called
// afterwards.
func RemoveBuilt() error {
	if built.dir == "" {
		return nil
	}
	return os.RemoveAll(built.dir)
}

// RemoveBuiltAndExit removes the built binary and exits with code: the
// end of a TestMain, or goleak.Cleanup(proccluster.RemoveBuiltAndExit).
func RemoveBuiltAndExit(code int) {
	_ = RemoveBuilt()
	os.Exit(code)
}

// TB is the part of testing.TB that TestBinary uses (this package does not
// import testing: `herald dev` links it).
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// TestBinary is Binary for a test: it skips the test when there is no go
// tool to build with and fails it when the build fails.
func TestBinary(t TB) string {
	t.Helper()
	bin, err := Binary()
	if errors.Is(err, ErrNoGoTool) {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return bin
}

// TestFreeAddr is FreeAddr for a test: it fails the test on error.
func TestFreeAddr(t TB) string {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return addr
}
