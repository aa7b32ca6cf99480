# syntax=docker/dockerfile:1
# The fleetbed image: the service and the `fleetbed` CLI, plus Locust and the fleet's locustfiles, so one image
# runs the service, its migrations and the load generators (`docker compose` overrides the entrypoint for Locust).
# Slim, non-root, no secrets: FLEETBED_DATABASE_URL, FLEETBED_SECRET and the rest come from the environment.
# Installed the way a user installs it: the built wheel with the `fast` extra, into a virtual environment.
# tests/test_installed.py replays these steps (without Docker) and runs the CMD and HEALTHCHECK below.

ARG PYTHON_VERSION=3.11

# Wheel stage: `pip wheel` on the project, as a user would build it (the wheel carries migrations, locustfiles
# and monitoring files inside the package).
FROM python:${PYTHON_VERSION}-slim AS wheel
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
COPY locustfiles ./locustfiles
COPY monitoring ./monitoring
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

# Runtime stage: the dependencies in their own layer (read from pyproject.toml alone, so a code change does not
# reinstall them), then the wheel on top, then an unprivileged user.
FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/fleetbed/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLEETBED_DATA_DIR=/var/lib/fleetbed \
    FLEETBED_HOST=0.0.0.0 \
    FLEETBED_PORT=8080
RUN groupadd --system fleetbed \
    && useradd --system --gid fleetbed --home-dir /var/lib/fleetbed --shell /usr/sbin/nologin fleetbed \
    && install -d -o fleetbed -g fleetbed -m 0750 /var/lib/fleetbed
COPY pyproject.toml /opt/fleetbed-build/pyproject.toml
RUN python -m venv /opt/fleetbed \
    && python -c "import sys, tomllib; project = tomllib.load(open(sys.argv[1], 'rb'))['project']; print('\n'.join(project['dependencies'] + project['optional-dependencies']['fast']))" /opt/fleetbed-build/pyproject.toml > /opt/fleetbed-build/requirements.txt \
    && /opt/fleetbed/bin/pip install --requirement /opt/fleetbed-build/requirements.txt \
    && rm -rf /opt/fleetbed-build
# The wheel (its dependencies are already satisfied: nothing else is downloaded). /opt/fleetbed/locustfiles links
# to the locustfiles inside the installed package, where compose's LOCUST_LOCUSTFILE points. (COPY --from rather
# than RUN --mount, so builders without BuildKit, docker-compose 1.29's, build it too.)
COPY --from=wheel /wheels/ /opt/fleetbed-wheels/
RUN /opt/fleetbed/bin/pip install "$(ls /opt/fleetbed-wheels/fleetbed-*.whl)[fast]" \
    && rm -rf /opt/fleetbed-wheels \
    && ln -s "$(/opt/fleetbed/bin/fleetbed locustfile --dir)" /opt/fleetbed/locustfiles \
    && fleetbed --version
USER fleetbed
WORKDIR /var/lib/fleetbed
VOLUME ["/var/lib/fleetbed"]
EXPOSE 8080
# Alive means the process answers; /readyz (database and migrations) is what the load balancer should ask.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"FLEETBED_PORT\", \"8080\")}/healthz', timeout=2)"]
ENTRYPOINT ["fleetbed"]
CMD ["serve", "--host", "0.0.0.0"]
