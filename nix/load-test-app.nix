# An app host: `fleetbed migrate`, then `fleetbed serve` with one worker process per vCPU, as a hardened systemd
# unit. Secrets (database URL with its password, token key, operator token, enrolment key) come from a NixOps key
# pushed to /run/keys, never from the Nix store: see docs/deployment.md, "Deploy with NixOps". With several app
# hosts the service refuses to start unless that key sets the token key and operator token (one for all).
{ config, lib, pkgs, ... }:
let
  settings = import ./settings.nix;
  fleetbed = pkgs.callPackage ./fleetbed.nix { };
  appHosts = builtins.length config.fleetbed.machines.app;
in
{
  deployment.keys."fleetbed.env" = {
    keyFile = ./secrets/fleetbed.env;
    user = "fleetbed";
    group = "fleetbed";
    permissions = "0400";
  };

  users.groups.fleetbed = { };
  users.users.fleetbed = {
    isSystemUser = true;
    group = "fleetbed";
    extraGroups = [ "keys" ];
    home = "/var/lib/fleetbed";
  };

  environment.systemPackages = [ fleetbed ];

  systemd.services.fleetbed = {
    description = "fleetbed device-data service";
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" "fleetbed.env-key.service" ];
    after = [ "network-online.target" "fleetbed.env-key.service" ];
    environment = {
      FLEETBED_HOST = "0.0.0.0";
      FLEETBED_PORT = toString settings.ports.app;
      FLEETBED_WORKERS = toString settings.appWorkers;
      FLEETBED_DATA_DIR = "/var/lib/fleetbed";
      FLEETBED_POOL_MAX_SIZE = "20";
      FLEETBED_SERVICE_HOSTS = toString appHosts;
      FLEETBED_DRAIN_TIMEOUT_S = toString settings.service.drainTimeoutS;
      FLEETBED_LOGIN_RATE_PER_S = toString settings.service.loginRatePerS;
    };
    serviceConfig = {
      # FLEETBED_DATABASE_URL, FLEETBED_SECRET, FLEETBED_OPERATOR_TOKEN, FLEETBED_ENROLL_KEY (listening on all
      # interfaces, the service registers new devices only with it)
      EnvironmentFile = "/run/keys/fleetbed.env";
      ExecStartPre = "${fleetbed}/bin/fleetbed migrate";
      ExecStart = "${fleetbed}/bin/fleetbed serve --host 0.0.0.0 --workers ${toString settings.appWorkers}";
      User = "fleetbed";
      Group = "fleetbed";
      StateDirectory = "fleetbed";
      StateDirectoryMode = "0750";
      # The service's supervisor replaces a worker that dies; systemd restarts the whole service if it fails.
      Restart = "on-failure";
      RestartSec = 2;
      # SIGTERM: stop accepting, let requests in flight finish, within the drain budget; systemd waits longer.
      KillSignal = "SIGTERM";
      TimeoutStopSec = settings.service.stopTimeoutS;
      LimitNOFILE = settings.limits.nofile;
      NoNewPrivileges = true;
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
    };
  };

  networking.firewall.allowedTCPPorts = [ settings.ports.app ];
}
