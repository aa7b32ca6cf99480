# The fleetbed package, built from pyproject.toml (hatchling) with the dependencies it declares, mapped to
# nixpkgs by python-deps.nix. Use: `pkgs.callPackage ./fleetbed.nix { }`.
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
    fileset = lib.fileset.unions [ ../pyproject.toml ../README.md ../app ../migrations ../locustfiles ];
  };

  build-system = [ python3Packages.hatchling ];
  dependencies = map (name: python3Packages.${name}) (deps.nixpkgsNames pyproject) ++ [ python3Packages.uvloop ];
  # The deployment always has its own database machine; the embedded-server wheel is not in nixpkgs.
  pythonRemoveDeps = deps.notPackaged;

  postInstall = ''
    mkdir -p $out/share/fleetbed
    cp -r locustfiles $out/share/fleetbed/
  '';

  pythonImportsCheck = [ "app.cli" ];
  meta = {
    description = pyproject.project.description;
    license = lib.licenses.asl20;
    mainProgram = "fleetbed";
  };
}
