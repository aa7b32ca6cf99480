# The database host: PostgreSQL with TimescaleDB in shared_preload_libraries (the migrations detect the extension
# and lay the schema out for it), tuned for ingest, durability on. The app's role password comes from a NixOps
# key, set by a one-shot unit; the Nix store never sees it.
{ config, lib, pkgs, ... }:
let
  settings = import ./settings.nix;
  postgresql = pkgs.postgresql_17;
  appHosts = config.fleetbed.machines.app;
in
{
  # TimescaleDB's compression and continuous aggregates are under the Timescale License.
  nixpkgs.config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) [ "timescaledb" ];

  deployment.keys."fleetbed-db-password" = {
    keyFile = ./secrets/fleetbed-db-password;
    user = "postgres";
    group = "postgres";
    permissions = "0400";
  };

  services.postgresql = {
    enable = true;
    package = postgresql;
    extensions = ps: [ ps.timescaledb ];
    enableTCPIP = true;
    ensureDatabases = [ "fleetbed" ];
    ensureUsers = [ { name = "fleetbed"; ensureDBOwnership = true; } ];
    # The app hosts share the database's private network; the exporter connects locally over the socket.
    authentication = "host fleetbed fleetbed samenet scram-sha-256\n";
    settings = {
      port = settings.ports.database;
      shared_preload_libraries = "timescaledb,pg_stat_statements";
      "timescaledb.telemetry_level" = "off";
      "timescaledb.max_background_workers" = 8;
      max_worker_processes = 16;
      max_parallel_workers = 4;
      # app hosts x worker processes x pool size, plus migrations and monitoring.
      max_connections = 100 + builtins.length appHosts * settings.appWorkers * 20;
      shared_buffers = "1GB";
      effective_cache_size = "3GB";
      work_mem = "16MB";
      maintenance_work_mem = "256MB";
      wal_buffers = "64MB";
      wal_compression = "on";
      max_wal_size = "8GB";
      # WAL write and sync times for the verdict (monitoring/postgres_exporter/queries.yml).
      track_wal_io_timing = "on";
      checkpoint_timeout = "15min";
      checkpoint_completion_target = 0.9;
      random_page_cost = 1.1;
      effective_io_concurrency = 200;
      "pg_stat_statements.track" = "all";
      track_io_timing = "on";
      password_encryption = "scram-sha-256";
    };
  };

  systemd.services.postgresql.serviceConfig.LimitNOFILE = settings.limits.nofile;

  systemd.services.fleetbed-db-password = {
    description = "Set the fleetbed database role's password from its NixOps key";
    wantedBy = [ "multi-user.target" ];
    after = [ "postgresql.service" "fleetbed-db-password-key.service" ];
    requires = [ "postgresql.service" ];
    wants = [ "fleetbed-db-password-key.service" ];
    serviceConfig = { Type = "oneshot"; User = "postgres"; RemainAfterExit = true; };
    path = [ postgresql ];
    # The password goes through stdin, never a command line.
    script = ''
      password=$(cat /run/keys/fleetbed-db-password)
      printf "ALTER ROLE fleetbed PASSWORD '%s';\n" "$password" | psql --quiet --set ON_ERROR_STOP=1 -d fleetbed
    '';
  };

  services.prometheus.exporters.postgres = {
    enable = true;
    port = settings.ports.postgresExporter;
    runAsLocalSuperUser = true;
    openFirewall = true;
    # Wait events, WAL timing and checkpoints for `fleetbed report`'s verdict.
    extraFlags = [ "--extend.query-path=${(import ./monitoring-files.nix).postgresExporterQueries}/queries.yml" ];
  };

  networking.firewall.allowedTCPPorts = [ settings.ports.database ];
}
