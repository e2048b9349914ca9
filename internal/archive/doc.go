// Package archive is the network side of locking: it fetches a Debian
// archive's InRelease and Packages indexes through the one HTTP source
// (internal/fetch), has package debian verify them against the pinned keys
// and the signed hashes, and hands the verified suites to debian's pure
// resolver. It also finds the mirrors in the machine's apt sources.
//
// Nothing here parses or decides more than it must: what a Release says,
// which versions win and what the lock holds are package debian's.
package archive
