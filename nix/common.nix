# Every machine of the network: kernel and file limits for tens of thousands of connections, a node exporter,
# time sync, and the machine list (set by load-test-network.nix) for the modules that need to know their peers.
{ config, lib, pkgs, ... }:
let
  settings = import ./settings.nix;
in
{
  options.fleetbed.machines = lib.mkOption {
    type = lib.types.attrs;
    description = "Machine names by role, from nix/machines.nix.";
  };

  config = {
    boot.kernel.sysctl = settings.limits.sysctl;
    boot.kernelModules = [ "nf_conntrack" ];

    # Open files for every login session and every systemd service (each unit may raise its own further).
    security.pam.loginLimits = [
      { domain = "*"; type = "soft"; item = "nofile"; value = toString settings.limits.nofile; }
      { domain = "*"; type = "hard"; item = "nofile"; value = toString settings.limits.nofile; }
    ];
    systemd.extraConfig = "DefaultLimitNOFILE=${toString settings.limits.nofile}";

    services.prometheus.exporters.node = {
      enable = true;
      port = settings.ports.nodeExporter;
      openFirewall = true;
      enabledCollectors = [ "systemd" "processes" ];
    };

    services.timesyncd.enable = true;
    networking.firewall.enable = true;
    environment.systemPackages = with pkgs; [ htop iotop sysstat tcpdump ];
    system.stateVersion = "25.05";
  };
}
