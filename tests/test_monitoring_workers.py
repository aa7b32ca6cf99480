"""With --workers N, one scrape of the shared port holds every worker's metrics, each labelled `worker`."""

from __future__ import annotations

import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics.workers import WORKER_SLOT, WorkerSlot, merge_expositions, metrics_handler
from tests.support.monitored_stack import SERVICE_WORKERS, MonitoredStack, prometheus_query

AiohttpClient = Callable[..., Awaitable[TestClient]]


def samples(text: str, name: str) -> dict[str, float]:
    """{worker: value summed over the other labels} of the samples named `name`."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[sample.labels["worker"]] = found.get(sample.labels["worker"], 0.0) + sample.value
    return found


def healthz_count(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "fleetbed_http_requests_total" and sample.labels.get("route") == "/healthz"
    )


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_every_scrape_holds_every_worker_and_counts_add_up(monitored_stack: MonitoredStack) -> None:
    metrics_url = f"{monitored_stack.service_url}/metrics"
    before = healthz_count(fetch(metrics_url))
    requests = 40
    for _ in range(requests):
        fetch(f"{monitored_stack.service_url}/healthz")  # a new connection each: the kernel picks a worker
    for _ in range(6):
        text = fetch(metrics_url)
        assert healthz_count(text) - before == requests, "the sum over workers counts every request once"
        workers = set(map(str, range(SERVICE_WORKERS)))
        assert set(samples(text, "process_resident_memory_bytes")) == workers
        assert set(samples(text, "python_gc_pause_seconds_count")) == workers
        answered = [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "fleetbed_metrics_workers" and sample.labels["state"] == "answered"
        ]
        assert answered == [SERVICE_WORKERS]
    per_worker = {}
    for family in text_string_to_metric_families(fetch(metrics_url)):
        for sample in family.samples:
            if sample.name == "fleetbed_http_requests_total" and sample.labels.get("route") == "/healthz":
                per_worker[sample.labels["worker"]] = sample.value
    assert len(per_worker) == SERVICE_WORKERS, f"requests reached only workers {sorted(per_worker)}"
    series = prometheus_query(
        monitored_stack.prometheus_url, 'count by (worker) (process_cpu_seconds_total{job="fleetbed"})'
    )
    assert sorted(one["metric"]["worker"] for one in series) == sorted(map(str, range(SERVICE_WORKERS)))


def test_merge_keeps_types_and_labels_every_sample() -> None:
    texts = {}
    for worker in (0, 1):
        registry = CollectorRegistry()
        counter = Counter("jobs_total", "Jobs.", ["kind"], registry=registry)
        counter.labels("a").inc(worker + 1)
        texts[worker] = generate_latest(registry).decode()
    merged = merge_expositions(texts, answered=2, missing=0).decode()
    assert merged.count("# TYPE jobs_total counter") == 1
    (jobs,) = [family for family in text_string_to_metric_families(merged) if family.name == "jobs"]
    assert jobs.type == "counter"
    totals = {(s.labels["kind"], s.labels["worker"]): s.value for s in jobs.samples if s.name == "jobs_total"}
    assert totals == {("a", "0"): 1.0, ("a", "1"): 2.0}
    created = [
        s for family in text_string_to_metric_families(merged) for s in family.samples if s.name == "jobs_created"
    ]
    assert sorted(s.labels["worker"] for s in created) == ["0", "1"]


async def test_a_worker_that_does_not_answer_is_counted_missing(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    registry = CollectorRegistry()
    Counter("jobs_total", "Jobs.", registry=registry).inc()
    app = web.Application()
    app[WORKER_SLOT] = WorkerSlot(index=0, count=3, socket_dir=tmp_path)  # no sibling ever listens
    app.router.add_get("/metrics", metrics_handler(registry))
    client = await aiohttp_client(app)
    text = await (await client.get("/metrics")).text()
    assert 'jobs_total{worker="0"} 1.0' in text
    assert 'fleetbed_metrics_workers{state="answered"} 1.0' in text
    assert 'fleetbed_metrics_workers{state="missing"} 2.0' in text
