# The fleetbed package, built from pyproject.toml (hatchling) with the dependencies it declares, mapped to
# nixpkgs by python-deps.nix. Use: `pkgs.callPackage ./fleetbed.nix { }`.
# The wheel carries the migrations, the locustfiles and the monitoring files inside the package (pyproject.toml's
# force-include); `fleetbed locustfile` prints the installed locustfile, and share/fleetbed/locustfiles links to
# the same folder for the Locust hosts (load-test-locust.nix).
{ lib, python3Packages }:
let
  pyproject = builtins.fromTOML (builtins.readFile ../pyproject.toml);
  deps = import ./python-deps.nix;
in
python3Packages.buildPythonApplication {
  pname = pyproject.project.name;
  inherit (pyproject.project) version;
  pyproject = true;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml ../README.md ../app ../migrations ../locustfiles ../monitoring
    ];
  };

  build-system = [ python3Packages.hatchling ];
  # Dependencies and the `fast` extra (uvloop); tests/test_nix_package.py checks they cover every module the
  # commands import.
  dependencies = map (name: python3Packages.${name}) (deps.installedNixpkgsNames pyproject);
  # The deployment always has its own database machine; the embedded-server wheel is not in nixpkgs.
  pythonRemoveDeps = deps.notPackaged;

  postInstall = ''
    mkdir -p $out/share/fleetbed
    ln -s $out/${python3Packages.python.sitePackages}/app/_locustfiles $out/share/fleetbed/locustfiles
  '';

  pythonImportsCheck = [ "app.cli" ];
  meta = {
    description = pyproject.project.description;
    license = lib.licenses.asl20;
    mainProgram = "fleetbed";
  };
}
