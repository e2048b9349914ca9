# Just enough of nixpkgs for flake.nix's outputs to evaluate without it:
# every builder returns its arguments plus a fake store path, so a test can
# read back what the flake asked for (see flake_test.go).
system:
let
  drv =
    kind: args:
    args
    // {
      type = "derivation";
      builder = kind;
      outPath = "/nix/store/00000000000000000000000000000000-${args.pname or args.name}";
    };
  pkg = name: drv "package" { inherit name; };
  pkgs = {
    lib.escapeShellArg = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] s}'";
    stdenv.hostPlatform.system = system;
    stdenvNoCC.mkDerivation = drv "mkDerivation";
    buildGoModule = drv "buildGoModule";
    fetchurl =
      {
        urls,
        sha256,
        name,
      }:
      drv "fetchurl" { inherit urls sha256 name; };
    callPackage =
      f: given:
      let
        call =
          over: f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // over) // { override = more: call (over // more); };
      in
      call given;
    runCommand = name: env: script: drv "runCommand" (env // { inherit name script; });
    writeShellScript = name: text: drv "writeShellScript" { inherit name text; };
    mkShell = args: drv "mkShell" ({ name = "shell"; } // args);
    go = pkg "go";
    gopls = pkg "gopls";
    pulseaudio = pkg "pulseaudio";
    ffmpeg = pkg "ffmpeg";
  };
in
pkgs
