"""HTTP handlers: parse and validate, call the data layer, answer JSON.

- `devices`: POST /login, GET /command, POST /measurement;
- `operator`: PUT and DELETE /devices/{id}/command;
- `runs`: the load-test run records (/runs);
- `stats`: GET /stats;
- `health`: /healthz and /readyz.

Limits only one endpoint knows are named constants in its module, read from there by `app.openapi`.
"""
