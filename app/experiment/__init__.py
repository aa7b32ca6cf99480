"""The main job: run an experiment (service, fleet, monitoring) and turn what it recorded into a verdict.

- `runner`: starts the database, the service, Prometheus and a headless Locust; writes the run directory;
- `search`: the default capacity search, steering the fleet step by step;
- `sampler`: the service's and the generator's resources during the run (`resources.csv`);
- `progress`: the live line in the terminal;
- `records`: reading the run directory back (Locust's stats history and statistics, resources, the export);
- `analysis`: per-step figures, capacity, knee and how sure (numpy);
- `diagnosis`: the bottleneck, in one sentence with its evidence;
- `summary`: the figures and the verdict as `summary.json`;
- `report_charts`, `plots`, `report_html`: what to plot, how an axis reads, the self-contained HTML;
- `report`: the pipeline records -> summary -> charts -> HTML; `compare`: two runs side by side.
"""
