// Package debian turns a list of Debian package names into a pinned, verified
// package closure (the lock), and reads that lock back.
//
// The flow is a chain of pure steps with the network at one edge only:
// InRelease bytes are checked against pinned keys (release.go), index files
// are checked against the signed Release hashes before they are parsed
// (packages.go), the parsed indexes of several suites are merged into one
// candidate per package (universe.go), and the resolver walks Depends and
// Pre-Depends the way apt chooses (resolve.go). Fetching (fetch.go) and apt
// source discovery (sources.go) are the only parts that touch the outside.
//
// Nothing here runs maintainer scripts or consults a dpkg database: the
// closure is computed from the archive metadata alone, so the same inputs
// give the same lock on any machine.
package debian
