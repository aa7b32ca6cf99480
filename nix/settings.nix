# Plain numbers shared by every machine of the NixOps network, and kept equal to compose.yaml by the tests
# (tests/test_deploy_nix.py evaluates this file without nixpkgs).
{
  ports = {
    app = 8080;
    database = 5432;
    prometheus = 9090;
    grafana = 3000;
    nodeExporter = 9100;
    postgresExporter = 9187;
    locustWeb = 8089;
    locustMaster = 5557;
    locustMetrics = 9646;
    balancer = 80;
  };

  # Service worker processes per app host (FLEETBED_WORKERS): one per vCPU of the app machine.
  appWorkers = 2;

  # The service's stop: the drain budget (FLEETBED_DRAIN_TIMEOUT_S) and systemd's stop timeout, longer, so
  # systemd's SIGKILL never cuts a drain short. Logins per second per client address: the fleet logs thousands
  # of devices in from a few Locust hosts, and behind the balancer every client has the balancer's address.
  service = { drainTimeoutS = 30; stopTimeoutS = 45; loginRatePerS = 1000; };

  # Tens of thousands of simulated devices, each with its own connection, on a handful of hosts.
  limits = {
    nofile = 65536;
    sysctl = {
      "fs.file-max" = 2097152;
      "fs.nr_open" = 1048576;
      "net.core.somaxconn" = 65535;
      "net.core.netdev_max_backlog" = 65536;
      "net.ipv4.tcp_max_syn_backlog" = 65535;
      "net.ipv4.ip_local_port_range" = "1024 65535";
      "net.ipv4.tcp_tw_reuse" = 1;
      "net.ipv4.tcp_fin_timeout" = 15;
      "net.netfilter.nf_conntrack_max" = 1048576;
    };
  };

  # VirtualBox sizes (MiB of memory, vCPUs) per role.
  vbox = {
    app = { memorySize = 2048; vcpu = 2; };
    database = { memorySize = 4096; vcpu = 2; };
    monitoring = { memorySize = 2048; vcpu = 1; };
    locust = { memorySize = 2048; vcpu = 2; };
    balancer = { memorySize = 1024; vcpu = 1; };
  };
}
