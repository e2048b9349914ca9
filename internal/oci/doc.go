// Package oci assembles images from deterministic tar streams with
// go-containerregistry, and does nothing else: it reads no file and writes
// none, so the same value always gives the same digest. The edges live
// beside it, along ggcr's lines:
//
//   - oci (this package): NewLayer gzips a tar stream once into a layer kept
//     in memory; Assemble stacks layers and a config into a v1.Image, as
//     ggcr's mutate does.
//   - oci/sink: where images go. An OCI layout whose index.json lists the
//     image alone, an OCI archive, a docker archive, a registry (by digest,
//     with the SBOM as an OCI 1.1 referrer, then tags).
//   - oci/source: where images come from. Every loader reads each blob to
//     its end and checks it against its digest before anything reports on
//     it or sends it on.
package oci
