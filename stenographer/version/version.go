// Package version says which build a binary is. The top-level Makefile
// sets Version and Commit with -ldflags -X; a plain `go build` leaves them
// "unknown".
package version

import (
	"fmt"
	"runtime"
)

// Set at link time (-X github.com/stenographer-ng/stenographer/stenographer/version.Version=...).
var (
	Version = "unknown" // git describe --always --dirty
	Commit  = "unknown" // full commit hash
)

// String is the one line --version prints, in the form stenotype and
// stenodump use too.
func String(prog string) string {
	return fmt.Sprintf("%s version %s commit %s (%s)", prog, Version, Commit, runtime.Version())
}
