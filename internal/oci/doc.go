// Package oci assembles images from deterministic tar streams with
// go-containerregistry, and does nothing else: it reads no file and writes
// none, so the same value always gives the same digest. The edges live
// beside it, along ggcr's lines:
//
//   - oci (this package): NewLayer gzips a tar stream once into a layer kept
//     in memory; Assemble stacks layers and a config into a v1.Image, as
//     ggcr's mutate does; AssembleIndex lists one image per platform in an
//     OCI image index, each entry's platform read from its image's config.
//   - oci/sink: where images and indexes go. An OCI layout whose index.json
//     lists the image or the index alone, an OCI archive, a docker archive
//     (one image), a registry (by digest, each platform's SBOM as an OCI 1.1
//     referrer of that platform's manifest, then tags).
//   - oci/source: where images come from. Every loader reads each blob to
//     its end and checks it against its digest before anything reports on
//     it or sends it on.
package oci
