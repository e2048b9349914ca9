package main

import (
	"os/exec"
	"path/filepath"
	"strings"
)

// noRevision is the --revision value that asks for no revision annotation,
// since an empty --revision already means "ask git".
const noRevision = "none"

// defaultRevision is the commit the image is built from, so that two people
// building the same commit get the same revision label and hence the same
// digest (a label naming the build machine or time would break that). A tree
// with uncommitted changes says so with "-dirty"; outside a git checkout the
// label is left out rather than guessed.
func defaultRevision(specPath string) string {
	dir := filepath.Dir(specPath)
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	status, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(strings.TrimSpace(string(status))) > 0 {
		rev += "-dirty"
	}
	return rev
}
