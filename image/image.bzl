"""Bazel rules around imagectl: build the image offline, push it, load it.

No image logic lives here. `pulse_sidecar_image` hands the fetched .debs and
the Bazel-built daemon to `imagectl build`, exactly as the Nix front end
does, so every front end produces the same file tree, modes and config.
"""

ImageInfo = provider(
    doc = "An image built by imagectl.",
    fields = {
        "layout": "OCI image layout (a tree artifact)",
        "archive": "the same image as an OCI archive, for podman/docker load",
        "digest": "file holding the manifest digest, sha256:<hex>",
    },
)

def _image_impl(ctx):
    if ctx.attr.unreachable:
        fail(("%s: no base URL serves %d locked packages (%s ...). This repository names no hosts: list your " +
              "mirrors in MODULE.bazel with debs.mirror(archive = ..., urls = [...]) and debs.snapshot(base = ...), " +
              "or set PULSE_SIDECAR_DEBIAN_MIRRORS, PULSE_SIDECAR_SECURITY_MIRRORS, PULSE_SIDECAR_SNAPSHOT_BASE.") %
             (ctx.label, len(ctx.attr.unreachable), ", ".join(ctx.attr.unreachable[:3])))
    if not ctx.files.debs:
        fail("%s: no .debs for %s: does image/debian.lock.json cover this architecture?" % (ctx.label, ctx.attr.arch))

    # imagectl reads one directory of .debs named by pool file name; the
    # fetched files live in one external repository each, so gather them
    # with symlinks (no copies, no shell).
    debs = []
    for f in ctx.files.debs:
        link = ctx.actions.declare_file("%s.debs/%s" % (ctx.label.name, f.basename))
        ctx.actions.symlink(output = link, target_file = f)
        debs.append(link)

    layout = ctx.actions.declare_directory(ctx.label.name + ".oci")
    archive = ctx.actions.declare_file(ctx.label.name + ".oci.tar")
    digest = ctx.actions.declare_file(ctx.label.name + ".digest")

    args = ctx.actions.args()
    args.add(digest)
    args.add(ctx.executable._imagectl)
    args.add("build")
    args.add("--spec", ctx.file.spec)
    args.add("--lock", ctx.file.lock)
    args.add("--arch", ctx.attr.arch)
    args.add("--debs", debs[0].dirname)
    args.add("--daemon-binary", ctx.file.daemon)
    args.add("--version", ctx.attr.version)

    # Always given: left to imagectl, the label would come from whatever git
    # checkout the action happens to run in (none in a sandbox), which Bazel
    # does not track.
    args.add("--revision", ctx.attr.revision)
    args.add("--source-date-epoch", str(ctx.attr.source_date_epoch))
    args.add("--out", layout.path)
    args.add("--oci-archive", archive)

    ctx.actions.run_shell(
        # imagectl prints the manifest digest as its last stdout line.
        command = 'set -o pipefail; d="$1"; shift; "$@" | tail -n 1 > "$d"',
        arguments = [args],
        inputs = depset(debs + [ctx.file.spec, ctx.file.lock, ctx.file.daemon] + ctx.files.data),
        tools = [ctx.attr._imagectl[DefaultInfo].files_to_run],
        outputs = [layout, archive, digest],
        mnemonic = "ImagectlBuild",
        progress_message = "Assembling OCI image %{label} (%s)" % ctx.attr.arch,
    )
    return [
        DefaultInfo(files = depset([layout, digest])),
        OutputGroupInfo(archive = depset([archive])),
        ImageInfo(layout = layout, archive = archive, digest = digest),
    ]

pulse_sidecar_image = rule(
    implementation = _image_impl,
    doc = "Runs `imagectl build` offline over locked .debs and a daemon binary.",
    attrs = {
        "arch": attr.string(mandatory = True, doc = "Debian architecture of the image"),
        "daemon": attr.label(mandatory = True, allow_single_file = True, doc = "the pulse-sidecar binary, built for the image's platform"),
        "data": attr.label_list(allow_files = True, doc = "files the spec refers to"),
        "debs": attr.label_list(mandatory = True, allow_files = [".deb"], doc = "the locked packages of this architecture"),
        "lock": attr.label(mandatory = True, allow_single_file = [".json"]),
        "revision": attr.string(default = "none", doc = "source revision label; \"none\" leaves it out"),
        "source_date_epoch": attr.int(mandatory = True, doc = "the lock's timestamp, as imagectl derives it"),
        "spec": attr.label(mandatory = True, allow_single_file = [".json"]),
        "unreachable": attr.string_list(doc = "locked packages without a URL, from @debian_debs//:defs.bzl"),
        "version": attr.string(default = "dev"),
        "_imagectl": attr.label(default = "//cmd/imagectl", executable = True, cfg = "exec"),
    },
)

def _script(ctx, body, runfiles):
    script = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.write(
        output = script,
        is_executable = True,
        # `bazel run` starts in the main repository's runfiles directory.
        content = "#!/usr/bin/env bash\nset -euo pipefail\n" + body,
    )
    return [DefaultInfo(executable = script, runfiles = ctx.runfiles(files = runfiles))]

def _push_impl(ctx):
    image = ctx.attr.image[ImageInfo]
    imagectl = ctx.executable._imagectl
    return _script(
        ctx,
        # Credentials come from the docker/podman configuration.
        'exec "./%s" push "./%s" "$@"\n' % (imagectl.short_path, image.layout.short_path),
        [imagectl, image.layout],
    )

image_push = rule(
    implementation = _push_impl,
    doc = "`bazel run` target: imagectl push IMAGE --repository REPO [--tag T ...].",
    executable = True,
    attrs = {
        "image": attr.label(mandatory = True, providers = [ImageInfo]),
        "_imagectl": attr.label(default = "//cmd/imagectl", executable = True, cfg = "exec"),
    },
)

def _load_impl(ctx):
    image = ctx.attr.image[ImageInfo]
    return _script(
        ctx,
        # podman by default; CONTAINER_ENGINE=docker for Docker 25 or newer.
        '"${CONTAINER_ENGINE:-podman}" load -i "./%s" "$@"\necho "loaded $(cat "./%s")"\n' % (image.archive.short_path, image.digest.short_path),
        [image.archive, image.digest],
    )

image_load = rule(
    implementation = _load_impl,
    doc = "`bazel run` target: load the image into the local podman or docker.",
    executable = True,
    attrs = {"image": attr.label(mandatory = True, providers = [ImageInfo])},
)

def _platform_transition_impl(_settings, attr):
    return {"//command_line_option:platforms": str(attr.platform.label)}

_platform_transition = transition(
    implementation = _platform_transition_impl,
    inputs = [],
    outputs = ["//command_line_option:platforms"],
)

def _platform_image_impl(ctx):
    # A transition on an attribute makes it a list of one.
    image = ctx.attr.image[0]
    return [
        DefaultInfo(files = image[DefaultInfo].files),
        OutputGroupInfo(archive = image[OutputGroupInfo].archive),
        image[ImageInfo],
    ]

platform_image = rule(
    implementation = _platform_image_impl,
    doc = """The image built for another target platform than the command line's.

`bazel build //image:image_arm64` on an amd64 machine builds the arm64 image:
the transition selects the arm64 .debs and cross-compiles the daemon, as
`imagectl build --platform linux/arm64` does.""",
    attrs = {
        "image": attr.label(mandatory = True, providers = [ImageInfo], cfg = _platform_transition),
        "platform": attr.label(mandatory = True, providers = [platform_common.PlatformInfo]),
        "_allowlist_function_transition": attr.label(default = "@bazel_tools//tools/allowlists/function_transition_allowlist"),
    },
)
