"""Module extension: one pinned http_file per package of image/debian.lock.json.

The Bazel twin of image/debs.nix. Each lock entry becomes a repository
`deb_<arch>_<name>` holding the .deb under its pool file name, pinned by the
lock's sha256. A hub repository, `debian_debs`, groups them per image
architecture (`@debian_debs//:amd64`) and exports the lock's
SOURCE_DATE_EPOCH in `@debian_debs//:defs.bzl`.

This repository names no archive hosts, so the base URLs come from the root
module's MODULE.bazel (or the environment), tried in this order:

    debs.mirror(archive = "debian", urls = ["https://MIRROR/debian"])
    debs.mirror(archive = "debian-security", urls = ["https://MIRROR/debian-security"])
    debs.snapshot(base = "https://SNAPSHOT-HOST")

PULSE_SIDECAR_DEBIAN_MIRRORS, PULSE_SIDECAR_SECURITY_MIRRORS (space or comma
separated) and PULSE_SIDECAR_SNAPSHOT_BASE add to them. The snapshot URL,
<base>/archive/<archive>/<lock timestamp>/<pool path>, keeps a build working
after Debian drops a locked version from its mirrors.
"""

load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_file")

_ARCHIVES = {
    "debian": "PULSE_SIDECAR_DEBIAN_MIRRORS",
    "debian-security": "PULSE_SIDECAR_SECURITY_MIRRORS",
}

# Every architecture gets a target in the hub, listed in the lock or not, so
# image/BUILD.bazel can select() over them; the image rule then reports an
# architecture the lock does not cover.
_ARCHITECTURES = ["amd64", "arm64"]

def _split(value):
    return [v for v in value.replace(",", " ").split(" ") if v]

def _trim(url):
    return url.rstrip("/")

def _repo_name(pkg):
    # Debian package names are [a-z0-9+.-]; repository names allow [A-Za-z0-9_.-].
    return "deb_%s_%s" % (pkg["for_arch"], pkg["name"].replace("+", "plus").replace("-", "_"))

def _int(s):
    # int("08") is an error in Starlark: drop leading zeros first.
    s = s.lstrip("0")
    return int(s) if s else 0

def _epoch(date, where):
    """Seconds since 1970 of an RFC 3339 UTC date, "YYYY-MM-DDTHH:MM:SSZ".

    Starlark has no time functions; this is the days-from-civil arithmetic,
    the same as image/debs.nix, so both front ends stamp what imagectl would.
    """
    if len(date) != 20 or date[4] != "-" or date[7] != "-" or date[10] != "T" or date[13] != ":" or date[16] != ":" or date[19] != "Z":
        fail("%s: date %r is not YYYY-MM-DDTHH:MM:SSZ" % (where, date))
    y, m, d = _int(date[0:4]), _int(date[5:7]), _int(date[8:10])
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + _int(date[11:13]) * 3600 + _int(date[14:16]) * 60 + _int(date[17:19])

def _config(module_ctx):
    """Collects the lock label and base URLs from the root module's tags."""
    lock = None
    mirrors = {a: [] for a in _ARCHIVES}
    snapshot = None
    for mod in module_ctx.modules:
        if not mod.is_root:
            continue
        for tag in mod.tags.lock:
            if lock:
                fail("debs: lock is given twice (%s and %s)" % (lock, tag.file))
            lock = tag.file
        for tag in mod.tags.mirror:
            if tag.archive not in mirrors:
                fail("debs.mirror: unknown archive %r (want one of %s)" % (tag.archive, sorted(_ARCHIVES)))
            mirrors[tag.archive].extend([_trim(u) for u in tag.urls])
        for tag in mod.tags.snapshot:
            snapshot = _trim(tag.base)
    if not lock:
        fail("debs: the root module must name the lock: debs.lock(file = \"//image:debian.lock.json\")")
    for archive, env in _ARCHIVES.items():
        mirrors[archive].extend([_trim(u) for u in _split(module_ctx.getenv(env, "") or "")])
    env_snapshot = module_ctx.getenv("PULSE_SIDECAR_SNAPSHOT_BASE", "") or ""
    if env_snapshot:
        snapshot = _trim(env_snapshot)
    return lock, mirrors, snapshot

def _debs_impl(module_ctx):
    lock_label, mirrors, snapshot = _config(module_ctx)
    lock = json.decode(module_ctx.read(lock_label))
    if lock.get("version") != 1:
        fail("%s: lock version %r, this extension reads version 1" % (lock_label, lock.get("version")))

    suites = {}
    epoch = 0
    for s in lock["suites"]:
        suites[(s["archive"], s["suite"])] = s
        epoch = max(epoch, _epoch(s["date"], "%s: suite %s/%s" % (lock_label, s["archive"], s["suite"])))

    by_arch = {a: [] for a in _ARCHITECTURES}
    taken = {}
    unreachable = []
    for pkg in lock["packages"]:
        what = "%s %s (%s)" % (pkg["name"], pkg["version"], pkg["for_arch"])
        if pkg["archive"] not in mirrors:
            fail("%s: %s: unknown archive %r" % (lock_label, what, pkg["archive"]))
        suite = suites.get((pkg["archive"], pkg["suite"]))
        if not suite:
            fail("%s: %s: suite %s/%s is not listed in suites" % (lock_label, what, pkg["archive"], pkg["suite"]))
        urls = ["%s/%s" % (m, pkg["filename"]) for m in mirrors[pkg["archive"]]]
        if snapshot and suite.get("snapshot"):
            urls.append("%s/archive/%s/%s/%s" % (snapshot, pkg["archive"], suite["snapshot"], pkg["filename"]))
        if not urls:
            unreachable.append("%s from %s" % (what, pkg["archive"]))
            continue
        name = _repo_name(pkg)
        if name in taken:
            fail("%s: %s: repository name %s is taken by %s" % (lock_label, what, name, taken[name]))
        taken[name] = what
        http_file(
            name = name,
            urls = urls,
            sha256 = pkg["sha256"],
            # imagectl --debs finds a package by its pool file name.
            downloaded_file_path = pkg["filename"].split("/")[-1],
        )
        by_arch.setdefault(pkg["for_arch"], []).append(name)

    # Not a fail() here: image/BUILD.bazel loads the hub, and a missing
    # mirror must not break `bazel build //...` of the Go code. The image
    # rule reports it when the image is built.
    _debs_hub(
        name = "debian_debs",
        packages = {arch: ["@%s//file" % n for n in names] for arch, names in by_arch.items()},
        source_date_epoch = epoch,
        unreachable = unreachable,
    )
    return module_ctx.extension_metadata(reproducible = True)

def _debs_hub_impl(repository_ctx):
    groups = []
    for arch, labels in sorted(repository_ctx.attr.packages.items()):
        groups.append("filegroup(\n    name = %r,\n    srcs = %r,\n)\n" % (arch, labels))
    repository_ctx.file("BUILD.bazel", 'package(default_visibility = ["//visibility:public"])\n\n' + "\n".join(groups))
    repository_ctx.file("defs.bzl", "\n".join([
        '"""Generated from the lock by //image:debs.bzl."""',
        "",
        "SOURCE_DATE_EPOCH = %d" % repository_ctx.attr.source_date_epoch,
        "",
        "# Locked packages no configured base URL serves.",
        "UNREACHABLE = %r" % repository_ctx.attr.unreachable,
        "",
    ]))

_debs_hub = repository_rule(
    implementation = _debs_hub_impl,
    attrs = {
        "packages": attr.string_list_dict(),
        "source_date_epoch": attr.int(),
        "unreachable": attr.string_list(),
    },
)

debs = module_extension(
    implementation = _debs_impl,
    tag_classes = {
        "lock": tag_class(attrs = {"file": attr.label(mandatory = True, doc = "the Debian lock, image/debian.lock.json")}),
        "mirror": tag_class(attrs = {
            "archive": attr.string(mandatory = True, doc = "\"debian\" or \"debian-security\""),
            "urls": attr.string_list(mandatory = True, doc = "base URLs of that archive, tried in order"),
        }),
        "snapshot": tag_class(attrs = {"base": attr.string(mandatory = True, doc = "base URL of a snapshot archive service")}),
    },
)
