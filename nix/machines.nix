# The machine names of the network for a given size, from builtins only (no nixpkgs), so the network and its
# VirtualBox resources always list the same machines and the tests can evaluate the list.
#   appHosts: service hosts (app, app-2, ...); more than one adds a `balancer` in front of them.
#   locustWorkers: load-generator hosts (locust-worker-1, ...), each running one Locust worker per vCPU.
{ appHosts ? 1, locustWorkers ? 2 }:
assert appHosts >= 1;
assert locustWorkers >= 0;
let
  numbered = prefix: count: builtins.genList (i: "${prefix}-${toString (i + 1)}") count;
in
rec {
  app = [ "app" ] ++ builtins.genList (i: "app-${toString (i + 2)}") (appHosts - 1);
  balancer = if appHosts > 1 then [ "balancer" ] else [ ];
  database = [ "database" ];
  monitoring = [ "monitoring" ];
  locustMaster = [ "locust-master" ];
  locustWorker = numbered "locust-worker" locustWorkers;
  # Where the fleet sends its requests: the balancer when there is one, else the app host.
  serviceHost = if appHosts > 1 then "balancer" else "app";
  all = app ++ balancer ++ database ++ monitoring ++ locustMaster ++ locustWorker;
}
