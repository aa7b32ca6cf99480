# The NixOps network of the load test: the service, its database, monitoring, a Locust master and its workers.
#
#   nixops create -d fleetbed nix/load-test-network.nix nix/load-test-vbox.nix
#   nixops set-args -d fleetbed --arg locustWorkers 4 --arg appHosts 2    # optional: scale out
#   nixops deploy -d fleetbed
#
# Machines reach each other by name (NixOps writes every machine into /etc/hosts).
{ appHosts ? 1, locustWorkers ? 2, ... }:
let
  machines = import ./machines.nix { inherit appHosts locustWorkers; };
  withRole = modules: names: builtins.listToAttrs (map (name: { inherit name; value = { imports = modules; }; }) names);
in
{
  network.description = "fleetbed load test (${toString appHosts} app hosts, ${toString locustWorkers} Locust workers)";
  network.enableRollback = true;

  defaults = { imports = [ ./common.nix ]; fleetbed.machines = machines; };
}
// withRole [ ./load-test-app.nix ] machines.app
// withRole [ ./load-test-balancer.nix ] machines.balancer
// withRole [ ./load-test-database.nix ] machines.database
// withRole [ ./monitoring.nix ] machines.monitoring
// withRole [ ./load-test-locust.nix { fleetbed.locust.role = "master"; } ] machines.locustMaster
// withRole [ ./load-test-locust.nix { fleetbed.locust.role = "worker"; } ] machines.locustWorker
