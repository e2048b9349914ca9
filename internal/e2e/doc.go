// Package e2e proves the product as users run it: the image from
// `imagectl build`, loaded into podman and run the hardened way (user
// 102:104, read-only root, no capabilities, no new privileges) in a pod next
// to a "desktop" container made from the same image, with the real clients on
// the other side: a websocket listener decoding MPEG-TS, the microphone
// protocol, PulseAudio over TCP, JSMpeg and an AudioWorklet microphone in
// headless Chromium, and the sidecar's own web client (WebCodecs Opus both
// ways) as the container's speaker port serves it.
//
// Everything lives in the tests. They need podman, runc, catatonit (for the
// pod's infra container), ffmpeg, node and chromium; under CI=true a missing
// one fails the test instead of skipping it.
//
// Environment:
//
//	PULSE_SIDECAR_IMAGE_ARCHIVE  OCI archive of the image; unset, the tests
//	                             build one with imagectl (minutes), except
//	                             under CI=true, where that is an error
//	E2E_REPORT                   file to write the measured latencies and
//	                             start-up times to, as JSON
//	E2E_CHROMIUM                 browser binary (default /usr/bin/chromium)
package e2e
