# syntax=docker/dockerfile:1
# The fleetbed image: the service and the `fleetbed` CLI, plus Locust and the fleet's locustfiles, so one image
# runs the service, its migrations and the load generators (`docker compose` overrides the entrypoint for Locust).
# Slim, non-root, no secrets: FLEETBED_DATABASE_URL, FLEETBED_SECRET and the rest come from the environment.

ARG PYTHON_VERSION=3.11

# Build stage: a wheel from pyproject.toml (the SQL migrations travel inside it), installed into a venv.
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN python -m venv /opt/fleetbed \
    && /opt/fleetbed/bin/pip install --upgrade pip build \
    && /opt/fleetbed/bin/python -m build --wheel --outdir /tmp/wheels . \
    && /opt/fleetbed/bin/pip install "$(ls /tmp/wheels/fleetbed-*.whl)[fast]" \
    && /opt/fleetbed/bin/pip uninstall --yes build

# Runtime stage: the venv, the locustfiles, an unprivileged user.
FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/fleetbed/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLEETBED_DATA_DIR=/var/lib/fleetbed \
    FLEETBED_HOST=0.0.0.0 \
    FLEETBED_PORT=8080
RUN groupadd --system fleetbed \
    && useradd --system --gid fleetbed --home-dir /var/lib/fleetbed --shell /usr/sbin/nologin fleetbed \
    && install -d -o fleetbed -g fleetbed -m 0750 /var/lib/fleetbed
COPY --from=build /opt/fleetbed /opt/fleetbed
COPY locustfiles /opt/fleetbed/locustfiles
USER fleetbed
WORKDIR /var/lib/fleetbed
VOLUME ["/var/lib/fleetbed"]
EXPOSE 8080
# Alive means the process answers; /readyz (database and migrations) is what the load balancer should ask.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"FLEETBED_PORT\", \"8080\")}/healthz', timeout=2)"]
ENTRYPOINT ["fleetbed"]
CMD ["serve", "--host", "0.0.0.0"]
