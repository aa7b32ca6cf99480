"""The one-machine stack the commands start around the service: not part of the service itself.

- `processes`: starting child processes in their own session, waiting for them, stopping them;
- `lifetime`: every process started ends with its command (SIGTERM/SIGHUP as Ctrl-C, parent-death signals,
  the watcher that stops the embedded PostgreSQL when its starter is gone);
- `embedded_db`: the embedded PostgreSQL server (the default database);
- `database`: the database URL the commands share (configured, else embedded) and applying migrations;
- `prometheus_server`: a local Prometheus with the deployments' rules;
- `exporters`: node_exporter and postgres_exporter beside it (`fleetbed up`), when installed;
- `prometheus_export`: Prometheus range queries to CSV (`fleetbed export`, the experiment's `prometheus.csv`).
"""
