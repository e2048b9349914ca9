// Package ogg reads and writes Ogg pages (RFC 3533) carrying Opus (RFC 7845).
//
// The speaker's Opus stream is ffmpeg's `-f ogg` output with one Opus frame
// per page; the relay sends each page as one websocket message, so it needs
// whole pages out of a pipe read in arbitrary chunks, and needs to know which
// pages are the stream's headers (a listener joining mid-stream gets those
// first) and when a new chained stream begins (everyone gets its headers).
// [Reader] and [Splitter] do that, validating every page's CRC and resyncing
// on anything that is not a page, and [Page] exposes the fields the relay
// acts on.
//
// The microphone's Opus path receives bare Opus packets from a browser's
// WebCodecs encoder and decodes them with an ffmpeg child, which reads Ogg:
// [OpusWriter] wraps packets into an Ogg Opus stream, one packet per page so
// that nothing waits for a page to fill, with the granule positions RFC 7845
// asks for (48 kHz samples, from each packet's TOC byte).
//
// Files: page.go (the page format and its CRC), read.go (splitting a byte
// stream into pages, classifying them), write.go (writing pages and Ogg Opus
// streams), opus.go (OpusHead and the Opus packet duration).
package ogg
