# A Locust host, master or worker, running the fleet's locustfile (locustfiles/kettle.py) from the fleetbed
# package. The master serves the web UI and its metrics; each worker host runs one worker process per vCPU
# (Locust is single-threaded) and connects to the master by name.
{ config, lib, pkgs, ... }:
let
  settings = import ./settings.nix;
  cfg = config.fleetbed.locust;
  fleetbed = pkgs.callPackage ./fleetbed.nix { };
  # Locust with everything the locustfiles import (numpy, faker, orjson), i.e. fleetbed's own dependencies.
  locustEnv = pkgs.python3.withPackages (ps: [ (ps.toPythonModule fleetbed) ]);
  locustfile = "${fleetbed}/share/fleetbed/locustfiles/kettle.py";
  serviceHost = config.fleetbed.machines.serviceHost;
  servicePort = if serviceHost == "balancer" then settings.ports.balancer else settings.ports.app;
  serviceUrl = "http://${serviceHost}:${toString servicePort}";
  common = {
    environment = {
      LOCUST_LOCUSTFILE = locustfile;
      LOCUST_HOST = serviceUrl;
    };
    serviceConfig = {
      DynamicUser = true;
      Restart = "on-failure";
      RestartSec = 2;
      LimitNOFILE = settings.limits.nofile;
    };
    wantedBy = [ "multi-user.target" ];
    after = [ "network-online.target" ];
    wants = [ "network-online.target" ];
  };
in
{
  options.fleetbed.locust = {
    role = lib.mkOption {
      type = lib.types.enum [ "master" "worker" ];
      description = "master: web UI on ${toString settings.ports.locustWeb}, metrics on ${toString settings.ports.locustMetrics}; worker: generates load.";
    };
    webHost = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1";
      description = "Address of the web UI, which has no login of its own: loopback (reach it with `nixops ssh -d fleetbed locust-master -L 8089:127.0.0.1:8089`) unless set otherwise.";
    };
    processes = lib.mkOption {
      type = lib.types.ints.positive;
      default = settings.vbox.locust.vcpu;
      description = "Worker processes on a worker host (one per vCPU).";
    };
  };

  config = lib.mkMerge [
    (lib.mkIf (cfg.role == "master") {
      # FLEETBED_OPERATOR_TOKEN, with which the master records each run in the service (never database access),
      # at the service URL fixed here: the web UI's host field moves the load, never the records or the token.
      deployment.keys."locust.env" = { keyFile = ./secrets/locust.env; permissions = "0400"; };
      systemd.services.locust-master = lib.recursiveUpdate common {
        description = "Locust master (fleetbed fleet)";
        wants = [ "network-online.target" "locust.env-key.service" ];
        after = [ "network-online.target" "locust.env-key.service" ];
        environment.LOCUST_RUN_RECORD_URL = serviceUrl;
        serviceConfig.EnvironmentFile = "/run/keys/locust.env";
        serviceConfig.ExecStart = "${locustEnv}/bin/locust --master --web-host ${cfg.webHost} --web-port ${toString settings.ports.locustWeb} --master-bind-port ${toString settings.ports.locustMaster}";
      };
      networking.firewall.allowedTCPPorts = with settings.ports;
        [ locustMaster locustMetrics ] ++ lib.optional (cfg.webHost != "127.0.0.1") locustWeb;
    })
    (lib.mkIf (cfg.role == "worker") {
      # LOCUST_ENROLL_KEY: the service's FLEETBED_ENROLL_KEY, sent by every simulated device at its login.
      deployment.keys."locust-worker.env" = { keyFile = ./secrets/locust-worker.env; permissions = "0400"; };
      systemd.services = builtins.listToAttrs (builtins.genList (i: {
        name = "locust-worker-${toString (i + 1)}";
        value = lib.recursiveUpdate common {
          description = "Locust worker ${toString (i + 1)} (fleetbed fleet)";
          wants = [ "network-online.target" "locust-worker.env-key.service" ];
          after = [ "network-online.target" "locust-worker.env-key.service" ];
          serviceConfig.EnvironmentFile = "/run/keys/locust-worker.env";
          serviceConfig.ExecStart = "${locustEnv}/bin/locust --worker --master-host locust-master --master-port ${toString settings.ports.locustMaster}";
        };
      }) cfg.processes);
    })
  ];
}
