// Package debian turns a list of Debian package names into a pinned, verified
// package closure (the lock), and reads that lock back.
//
// Everything here is pure: it works on bytes it is given. InRelease bytes
// are checked against the keys pinned for their archive (release.go, keys.go),
// index files are checked against the signed Release hashes before they are
// parsed (packages.go), the parsed indexes of several suites are merged into
// one candidate per package (universe.go), the resolver walks Depends and
// Pre-Depends the way apt chooses (resolve.go), and NewLock records the
// closure with the archive state it came from (lockgen.go). Fetching is
// package archive's; reading .deb files is package deb's.
//
// Nothing here runs maintainer scripts or consults a dpkg database: the
// closure is computed from the archive metadata alone, so the same inputs
// give the same lock on any machine.
package debian
