# The monitoring files the deployments use, the same ones compose.yaml mounts (tests/test_deploy_nix.py checks
# both lists against each other and against the tree). Paths, so Nix copies them into the store at deploy time.
{
  prometheusConfig = ../monitoring/prometheus/prometheus.yml;
  prometheusRules = ../monitoring/prometheus/rules;
  grafanaDatasources = ../monitoring/grafana/provisioning/datasources/prometheus.yml;
  grafanaDashboardProvider = ../monitoring/grafana/provisioning/dashboards/fleetbed.yml;
  grafanaDashboards = ../monitoring/grafana/dashboards;
  # postgres_exporter's extra queries (wait events, WAL timing, checkpoints) for `fleetbed report`'s verdict.
  postgresExporterQueries = ../monitoring/postgres_exporter;
}
