# The Nix front end. It builds the two Go programs the Nix way, fetches the
# packages image/debian.lock.json names as fixed-output downloads
# (image/debs.nix) and runs `imagectl build` offline over them. No image logic
# lives here: the file tree, modes and config come from imagectl alone.
#
#   nix build .#image && podman load < result
#   nix run .#push -- --repository REPO [--tag T]
#   nix flake check
#
# Package URLs: the "debian" archive comes from nixpkgs' Debian mirror list.
# The security archive and a snapshot archive have no such list and this
# repository names no hosts, so you supply them, either in the environment of an
# impure evaluation
#
#   PULSE_SIDECAR_SECURITY_MIRRORS="https://MIRROR/debian-security" \
#   PULSE_SIDECAR_SNAPSHOT_BASE="https://SNAPSHOT-HOST" nix build --impure .#image
#
# or by overriding the image: packages.<system>.image.override
# { securityMirrors = [ ... ]; snapshotBase = "..."; debianMirrors = [ ... ]; }.
{
  description = "pulse-sidecar: PulseAudio streaming sidecar and its reproducible OCI image";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      # Nix system -> the Debian architecture of the image built on it.
      systems = {
        x86_64-linux = "amd64";
        aarch64-linux = "arm64";
      };
      forSystems =
        f:
        builtins.mapAttrs (
          system: arch:
          f {
            inherit system arch;
            pkgs = nixpkgs.legacyPackages.${system};
          }
        ) systems;

      version = self.shortRev or self.dirtyShortRev or "dev";
      lock = builtins.fromJSON (builtins.readFile ./image/debian.lock.json);

      # `nix hash path` of `go mod vendor`. CI checks it against go.mod and
      # go.sum; refresh it with: go test ./internal/frontends -run VendorHash -update
      vendorHash = "sha256-nL1TXt9WG3TdZP4x3Mgt59Wsqed9JfrhZltf9STFlEw=";

      # A pure evaluation sees "" for every variable, so these only take
      # effect under --impure; the defaults keep the build pure.
      envList =
        name:
        builtins.filter (s: builtins.isString s && s != "") (builtins.split "[ ,]+" (builtins.getEnv name));
      envOr = name: let v = builtins.getEnv name; in if v == "" then null else v;

      goModule =
        pkgs: args:
        pkgs.buildGoModule (
          {
            inherit version vendorHash;
            src = self;
            env.CGO_ENABLED = "0";
            ldflags = [ "-s" "-w" ];
            doCheck = false;
          }
          // args
        );

      perSystem =
        { pkgs, arch, ... }:
        let
          pulse-sidecar = goModule pkgs {
            pname = "pulse-sidecar";
            subPackages = [ "cmd/pulse-sidecar" ];
            ldflags = [ "-s" "-w" "-X main.version=${version}" ];
            meta.mainProgram = "pulse-sidecar";
          };
          imagectl = goModule pkgs {
            pname = "imagectl";
            subPackages = [ "cmd/imagectl" ];
            meta.mainProgram = "imagectl";
          };

          image = pkgs.callPackage (
            {
              stdenvNoCC,
              fetchurl,
              debianMirrors ? envList "PULSE_SIDECAR_DEBIAN_MIRRORS" ++ [ "mirror://debian" ],
              securityMirrors ? envList "PULSE_SIDECAR_SECURITY_MIRRORS",
              snapshotBase ? envOr "PULSE_SIDECAR_SNAPSHOT_BASE",
            }:
            let
              pinned = import ./image/debs.nix {
                inherit fetchurl lock arch debianMirrors securityMirrors snapshotBase;
              };
              linkDebs = builtins.concatStringsSep "\n" (
                map (d: "ln -s ${d.file} debs/${pkgs.lib.escapeShellArg d.fileName}") pinned.debs
              );
            in
            stdenvNoCC.mkDerivation {
              name = "pulse-sidecar-${version}-${arch}.oci.tar";
              src = ./image;
              nativeBuildInputs = [ imagectl ];
              dontConfigure = true;
              # $out is the archive itself; nothing in it may be patched or stripped.
              dontFixup = true;
              # The lock's timestamp, not stdenv's 1980 default, so the digest
              # matches `go run ./cmd/imagectl build` for the same daemon binary.
              SOURCE_DATE_EPOCH = toString pinned.sourceDateEpoch;
              buildPhase = ''
                runHook preBuild
                mkdir debs
                ${linkDebs}
                imagectl build \
                  --spec spec.json --lock debian.lock.json --arch ${arch} \
                  --debs debs --daemon-binary ${pulse-sidecar}/bin/pulse-sidecar \
                  --version ${version} --revision ${self.rev or "dirty"} \
                  --source-date-epoch "$SOURCE_DATE_EPOCH" \
                  --oci-archive image.oci.tar
                runHook postBuild
              '';
              installPhase = ''
                runHook preInstall
                install -m 0444 image.oci.tar "$out"
                runHook postInstall
              '';
              passthru = { inherit pinned; };
            }
          ) { };
        in
        {
          inherit pulse-sidecar imagectl image;
          default = image;
        };

      packages = forSystems perSystem;
    in
    {
      inherit packages;

      apps = forSystems (
        { pkgs, system, ... }:
        let
          p = packages.${system};
          push = pkgs.writeShellScript "pulse-sidecar-push" ''
            exec ${p.imagectl}/bin/imagectl push ${p.image} "$@"
          '';
        in
        {
          push = {
            type = "app";
            program = "${push}";
          };
        }
      );

      checks = forSystems (
        { pkgs, system, ... }:
        let
          p = packages.${system};
        in
        {
          # Tests that need the network or tools absent from the sandbox skip
          # themselves under -short (CI runs them all outside Nix).
          go-test = goModule pkgs {
            pname = "pulse-sidecar-tests";
            doCheck = true;
            checkFlags = [ "-short" ];
            installPhase = "touch $out";
          };
          # The spec and lock are named explicitly (the sandbox has no checkout
          # for imagectl's defaults) and so is the epoch: stdenv exports 1980.
          policy = pkgs.runCommand "pulse-sidecar-policy" { nativeBuildInputs = [ p.imagectl ]; } ''
            imagectl policy --spec ${./image/spec.json} --lock ${./image/debian.lock.json} \
              --source-date-epoch ${toString p.image.passthru.pinned.sourceDateEpoch} ${p.image}
            touch $out
          '';
        }
      );

      devShells = forSystems (
        { pkgs, ... }:
        {
          default = pkgs.mkShell {
            packages = [
              pkgs.go
              pkgs.gopls
              pkgs.pulseaudio
              pkgs.ffmpeg
            ];
            GOTOOLCHAIN = "local";
          };
        }
      );
    };
}
