"""The main job: run an experiment (service, fleet, monitoring) and turn what it recorded into a verdict.

- `runner`: starts the database, the service, Prometheus and a headless Locust; writes the run directory;
- `sampler`: the service's and the generator's resources during the run (`resources.csv`);
- `progress`: the live line in the terminal;
- `records`: reading the run directory back (Locust's stats history, resources);
- `analysis`: per-step figures, capacity and knee (numpy);
- `diagnosis`: the bottleneck, in one sentence with its evidence;
- `plots`, `report_html`: the self-contained HTML report.
"""
