# The load balancer in front of several app hosts (present when the network has appHosts > 1): nginx, least
# connections, keep-alive to the upstreams, open files for tens of thousands of device connections.
{ config, lib, ... }:
let
  settings = import ./settings.nix;
  upstreams = map (host: "${host}:${toString settings.ports.app}") config.fleetbed.machines.app;
in
{
  services.nginx = {
    enable = true;
    recommendedProxySettings = true;
    appendConfig = "worker_rlimit_nofile ${toString settings.limits.nofile};";
    eventsConfig = "worker_connections 32768;";
    upstreams.fleetbed = {
      servers = lib.genAttrs upstreams (_: { max_fails = 3; fail_timeout = "5s"; });
      extraConfig = ''
        least_conn;
        keepalive 256;
      '';
    };
    virtualHosts.fleetbed = {
      default = true;
      listen = [ { addr = "0.0.0.0"; port = settings.ports.balancer; } ];
      locations."/" = {
        proxyPass = "http://fleetbed";
        extraConfig = ''
          proxy_http_version 1.1;
          proxy_set_header Connection "";
          proxy_next_upstream error timeout http_503;
        '';
      };
    };
  };
  systemd.services.nginx.serviceConfig.LimitNOFILE = settings.limits.nofile;
  networking.firewall.allowedTCPPorts = [ settings.ports.balancer ];
}
