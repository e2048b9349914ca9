# The lock-to-download mapping of the Nix front end: every package that
# image/debian.lock.json lists for one architecture becomes one fixed-output
# fetchurl, pinned by the lock's sha256. Nothing else about the image lives in
# Nix; imagectl assembles it from these files offline.
#
# fetchurl is an argument, not taken from nixpkgs, so CI can evaluate this file
# with a stand-in and plain nix-instantiate (no nixpkgs checkout) and compare
# the result with the lock.
#
# Base URLs are arguments too, because no archive host is written down in
# this repository:
#   debianMirrors    bases serving the "debian" archive; nixpkgs' own Debian
#                    mirror list by default (mirror:// is resolved by fetchurl).
#   securityMirrors  bases serving the "debian-security" archive, e.g. your
#                    mirror's .../debian-security; nixpkgs has no list for it.
#   snapshotBase     base of a snapshot archive; when set, every package also
#                    gets <snapshotBase>/archive/<archive>/<lock timestamp>/<pool path>,
#                    which keeps working after Debian drops the locked version.
{
  fetchurl,
  lock,
  arch,
  debianMirrors ? [ "mirror://debian" ],
  securityMirrors ? [ ],
  snapshotBase ? null,
}:
let
  # Trailing slashes would double up when the pool path is appended.
  trimSlash = s: let m = builtins.match "(.*[^/])/*" s; in if m == null then s else builtins.head m;

  mirrorsFor = archive:
    if archive == "debian" then debianMirrors
    else if archive == "debian-security" then securityMirrors
    else throw "debs.nix: unknown archive \"${archive}\" in the lock (want debian or debian-security)";

  suiteOf = p:
    let found = builtins.filter (s: s.archive == p.archive && s.suite == p.suite) lock.suites;
    in if found == [ ] then throw "debs.nix: ${p.name} ${p.version}: suite ${p.archive}/${p.suite} is not listed in the lock's suites"
       else builtins.head found;

  snapshotURLs = p:
    let s = suiteOf p;
    in if snapshotBase == null || (s.snapshot or "") == "" then [ ]
       else [ "${trimSlash snapshotBase}/archive/${p.archive}/${s.snapshot}/${p.filename}" ];

  urlsOf = p:
    let urls = map (b: "${trimSlash b}/${p.filename}") (mirrorsFor p.archive) ++ snapshotURLs p;
    in if urls == [ ] then
      throw ("debs.nix: ${p.name} ${p.version} (${p.for_arch}) comes from the ${p.archive} archive and no base URL serves it: "
        + "pass securityMirrors (your debian-security mirror) or snapshotBase")
    else urls;

  # Store path names allow neither ':' nor '~', both legal in Debian versions.
  storeName = p: "${p.name}_${builtins.replaceStrings [ ":" "~" ] [ "_" "_" ] p.version}_${p.architecture}.deb";

  checked = p:
    if builtins.match "[0-9a-f]{64}" p.sha256 == null then throw "debs.nix: ${p.name} ${p.version}: sha256 \"${p.sha256}\" is not 64 lowercase hex digits"
    else if builtins.match "pool/[^.][^ ]*" p.filename == null then throw "debs.nix: ${p.name} ${p.version}: filename \"${p.filename}\" is not a pool path"
    else builtins.seq (mirrorsFor p.archive) (builtins.seq (suiteOf p) p);

  download = p0:
    let p = checked p0;
    in {
      inherit (p) name version architecture sha256;
      pool = p.filename;
      # imagectl --debs finds a package by its pool file name.
      fileName = baseNameOf p.filename;
      file = fetchurl {
        name = storeName p;
        urls = urlsOf p;
        sha256 = p.sha256;
      };
    };

  packages =
    if (lock.version or null) != 1 then throw "debs.nix: lock version ${toString (lock.version or "missing")}, this file reads version 1"
    else if !(builtins.elem arch lock.architectures) then throw "debs.nix: the lock has no packages for ${arch} (it lists ${toString lock.architectures})"
    else builtins.filter (p: p.for_arch == arch) lock.packages;

  # imagectl derives SOURCE_DATE_EPOCH from the newest suite Date when it is
  # not set, and honours it when set. stdenv always sets it (to 1980), so the
  # Nix build must pass the lock's value or its digest would differ from every
  # other front end's. Nix has no date functions; this is the days-from-civil
  # arithmetic for "YYYY-MM-DDTHH:MM:SSZ".
  int = s: builtins.fromJSON (builtins.head (builtins.match "0*([0-9]+)" s));
  epochOf = s:
    let
      m = builtins.match "([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z" s.date;
      at = i: int (builtins.elemAt m i);
      mon = at 1;
      y = at 0 - (if mon <= 2 then 1 else 0);
      era = y / 400;
      yoe = y - era * 400;
      doy = (153 * (mon + (if mon > 2 then -3 else 9)) + 2) / 5 + at 2 - 1;
      doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
      days = era * 146097 + doe - 719468;
    in
    if m == null then throw "debs.nix: suite ${s.archive}/${s.suite}: date \"${s.date}\" is not YYYY-MM-DDTHH:MM:SSZ"
    else days * 86400 + at 3 * 3600 + at 4 * 60 + at 5;
in
{
  debs = map download packages;
  sourceDateEpoch =
    if lock.suites == [ ] then throw "debs.nix: the lock lists no suites"
    else builtins.foldl' (a: b: if b > a then b else a) 0 (map epochOf lock.suites);
}
