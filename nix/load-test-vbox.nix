# VirtualBox resources for every machine of load-test-network.nix (same arguments, same machine list).
{ appHosts ? 1, locustWorkers ? 2, ... }:
let
  machines = import ./machines.nix { inherit appHosts locustWorkers; };
  sizes = (import ./settings.nix).vbox;
  vm = size: { ... }: {
    deployment.targetEnv = "virtualbox";
    deployment.virtualbox = {
      inherit (size) memorySize vcpu;
      headless = true;
    };
  };
  sized = size: names: builtins.listToAttrs (map (name: { inherit name; value = vm size; }) names);
in
sized sizes.app machines.app
// sized sizes.balancer machines.balancer
// sized sizes.database machines.database
// sized sizes.monitoring machines.monitoring
// sized sizes.locust (machines.locustMaster ++ machines.locustWorker)
