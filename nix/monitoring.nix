# The monitoring host: Prometheus and Grafana provisioned from the same files as compose.yaml (../monitoring).
# Those files name their targets by compose service name; here each name resolves to the machine that runs it.
{ config, lib, pkgs, nodes, ... }:
let
  settings = import ./settings.nix;
  files = import ./monitoring-files.nix;
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
    # prometheus.yml names its rule files relative to itself (compose mounts the rules beside it); here the config
    # lives in the store and the rules in /etc/prometheus/rules, so those references become absolute.
    configText = builtins.replaceStrings [ "  - rules/" ] [ "  - /etc/prometheus/rules/" ]
      (builtins.readFile files.prometheusConfig);
    # promtool cannot see /etc/prometheus/rules in the build sandbox.
    checkConfig = "syntax-only";
    # No --web.enable-lifecycle: it would let anyone who reaches port 9090 shut Prometheus down (/-/quit).
    extraFlags = [ ];
  };
  environment.etc."prometheus/rules".source = files.prometheusRules;

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
      datasources.path = files.grafanaDatasources;
      dashboards.path = files.grafanaDashboardProvider;
    };
  };
  # The dashboard provider reads /var/lib/grafana/dashboards, as in compose.yaml.
  systemd.tmpfiles.rules = [ "L+ /var/lib/grafana/dashboards - - - - ${files.grafanaDashboards}" ];

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
    # No password, no Grafana: never its built-in admin/admin.
    serviceConfig.ExecStartPre = [ "${pkgs.coreutils}/bin/test -s /run/keys/grafana-admin-password" ];
  };

  networking.firewall.allowedTCPPorts = [ settings.ports.prometheus settings.ports.grafana ];
}
