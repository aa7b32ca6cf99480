"""The service's own metrics, served at /metrics and scraped by Prometheus.

- `service`: `ServiceMetrics`, the registry and the ingest metrics the handlers update;
- `requests`: request counts and latencies, plain integers turned into metrics at scrape time;
- `runtime`: GC pauses and event-loop lag;
- `workers`: /metrics with `--workers N`, every worker's samples labelled `worker`;
- `pool`, `statements`: the connection pool and the SQL statements, watched from the side.

Metrics that need a query (fleet size) read through the data layer (`app.db.fleet_size`).
"""
