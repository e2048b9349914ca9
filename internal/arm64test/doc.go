// Package arm64test proves the arm64 image on an amd64 machine: it extracts
// the image's root filesystem and runs its binaries under qemu-user, the way
// Debian's qemu-user-static runs foreign programs as plain processes, without
// binfmt_misc and without privileges (`qemu-aarch64-static -L ROOTFS
// ROOTFS/usr/bin/ffmpeg -version`).
//
// Load finds one platform's image in an OCI layout or OCI archive, whether it
// holds a single-platform image or a multi-platform index, and checks the
// digests of what it reads. Extract applies the image's layers in order to a
// directory (whiteouts included) and keeps every symbolic link inside that
// directory: qemu's -L looks a path up under the root first, and the host
// kernel then follows the links it finds there, so an absolute link target
// would silently lead to the host's own file.
//
// The tests run the image's daemon under qemu with --pulseaudio and --ffmpeg
// pointing at host shell scripts that start the image's pulseaudio and ffmpeg
// under qemu (nothing registers a binfmt handler, so an emulated program
// cannot exec a foreign binary directly), and check that a speaker tone and a
// microphone tone pass through.
//
// Environment:
//
//	PULSE_SIDECAR_IMAGE_ARCHIVE_ARM64  OCI archive or layout holding the
//	                                   linux/arm64 image (alone or in an
//	                                   index); unset, the proof is skipped,
//	                                   except under CI=true, where that fails
//
// qemu-aarch64-static (Debian's qemu-user-static) must be on PATH; under
// CI=true its absence fails the tests.
package arm64test
