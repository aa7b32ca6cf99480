# The monitoring host: Prometheus and Grafana provisioned from the same files as compose.yaml (../monitoring).
# Those files name their targets by compose service name; here each name resolves to the machine that runs it.
{ config, lib, pkgs, nodes, ... }:
let
  settings = import ./settings.nix;
  monitoring = ../monitoring;
  ipOf = machine: nodes.${machine}.config.networking.privateIPv4;
in
{
  # Compose service names used by monitoring/ -> the machines of this network.
  networking.hosts = {
    "127.0.0.1" = [ "prometheus" "grafana" ];
    ${ipOf "database"} = [ "timescaledb" "postgres-exporter" ];
    # The host under test; every machine runs a node exporter, see README "Scaling out" for scraping them all.
    ${ipOf "app"} = [ "node-exporter" ];
  };

  services.prometheus = {
    enable = true;
    port = settings.ports.prometheus;
    retentionTime = "15d";
    configText = builtins.readFile (monitoring + "/prometheus/prometheus.yml");
    # The rule files are referenced from prometheus.yml by their compose path; promtool cannot see them at build.
    checkConfig = "syntax-only";
    extraFlags = [ "--web.enable-lifecycle" ];
  };
  environment.etc."prometheus/rules".source = monitoring + "/prometheus/rules";

  services.grafana = {
    enable = true;
    settings = {
      server = { http_addr = "0.0.0.0"; http_port = settings.ports.grafana; };
      analytics.reporting_enabled = false;
      users.allow_sign_up = false;
      # Admin password from a NixOps key, not the store.
      security.admin_password = "$__file{/run/keys/grafana-admin-password}";
    };
    provision = {
      enable = true;
      datasources.path = monitoring + "/grafana/provisioning/datasources/prometheus.yml";
      dashboards.path = monitoring + "/grafana/provisioning/dashboards/fleetbed.yml";
    };
  };
  # The dashboard provider reads /var/lib/grafana/dashboards, as in compose.yaml.
  systemd.tmpfiles.rules = [ "L+ /var/lib/grafana/dashboards - - - - ${monitoring + "/grafana/dashboards"}" ];

  deployment.keys."grafana-admin-password" = {
    keyFile = ./secrets/grafana-admin-password;
    user = "grafana";
    group = "grafana";
    permissions = "0400";
  };
  users.users.grafana.extraGroups = [ "keys" ];
  systemd.services.grafana = {
    wants = [ "grafana-admin-password-key.service" ];
    after = [ "grafana-admin-password-key.service" ];
  };

  networking.firewall.allowedTCPPorts = [ settings.ports.prometheus settings.ports.grafana ];
}
