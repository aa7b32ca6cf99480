"""/metrics with `--workers N`: every scrape sees every worker, with its process metrics, labelled `worker`.

With N processes sharing one port (SO_REUSEPORT), the kernel hands each scrape to one random worker: counters
would jump between workers' values and N-1 processes would be invisible. Two common cures, and why not here:
prometheus_client's multiprocess mode drops the process collectors (CPU, memory, fds, GC per process are exactly
what this test bed must show) and needs a shared directory cleaned between runs; one port per worker makes every
deployment list N targets and breaks `app:8080` as the single scrape target.

Instead, each worker also serves its own registry on a private Unix socket (`worker-<n>.sock` in a directory the
supervisor creates, mode 0700). The worker that receives a scrape on the shared port reads all N registries
(its own directly, the others through their sockets, concurrently), adds `worker="<n>"` to every sample and
answers with the merged exposition. Queries sum the label away; the per-worker series stay available. A worker
that does not answer within `SIBLING_TIMEOUT_S` is left out of that scrape and counted in
`fleetbed_metrics_workers{state="missing"}`, so a partial scrape is visible rather than silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

SIBLING_TIMEOUT_S = 2.0
WORKER_LABEL = "worker"


@dataclass(frozen=True)
class WorkerSlot:
    """Which of `count` workers this process is, and where the workers' private metric sockets live."""

    index: int
    count: int
    socket_dir: Path

    def socket_path(self, index: int) -> Path:
        return self.socket_dir / f"worker-{index}.sock"


WORKER_SLOT = web.AppKey("worker_slot", WorkerSlot)


def _families(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """{family name: (HELP/TYPE lines, sample lines)} of one text exposition (as generate_latest writes it)."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    current: tuple[list[str], list[str]] | None = None
    for line in text.split("\n"):
        if line.startswith("# HELP "):
            current = families.setdefault(line.split(" ", 3)[2], ([], []))
            current[0].append(line)
        elif line.startswith("#"):
            if current is not None:
                current[0].append(line)
        elif line and current is not None:
            current[1].append(line)
    return families


def _with_worker(sample_line: str, worker: int) -> str:
    """`name{a="x"} 1.0` -> `name{worker="n",a="x"} 1.0`; `name 1.0` -> `name{worker="n"} 1.0`."""
    brace, space = sample_line.find("{"), sample_line.find(" ")
    if brace != -1 and brace < space:
        return f'{sample_line[: brace + 1]}{WORKER_LABEL}="{worker}",{sample_line[brace + 1 :]}'
    return f'{sample_line[:space]}{{{WORKER_LABEL}="{worker}"}}{sample_line[space:]}'


def merge_expositions(texts: dict[int, str], answered: int, missing: int) -> bytes:
    """One exposition from the workers' texts: same-named families joined, every sample labelled by worker.

    Works on the text lines rather than parsing and re-rendering: the worker that takes a scrape does this on its
    event loop, and a parse of each registry would cost milliseconds per worker (bench/metrics_overhead.py).
    """
    merged: dict[str, tuple[list[str], list[str]]] = {}
    for worker, text in sorted(texts.items()):
        for name, (headers, samples) in _families(text).items():
            merged.setdefault(name, (headers, []))[1].extend(_with_worker(line, worker) for line in samples)
    lines = [line for headers, samples in merged.values() for line in (*headers, *samples)]
    lines += [
        "# HELP fleetbed_metrics_workers Workers whose metrics this scrape holds (answered) or lacks (missing).",
        "# TYPE fleetbed_metrics_workers gauge",
        f'fleetbed_metrics_workers{{state="answered"}} {float(answered)}',
        f'fleetbed_metrics_workers{{state="missing"}} {float(missing)}',
    ]
    return ("\n".join(lines) + "\n").encode()


async def _read_sibling(path: Path) -> str:
    connector = aiohttp.UnixConnector(path=str(path))
    timeout = aiohttp.ClientTimeout(total=SIBLING_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.get("http://worker/metrics") as response,
    ):
        response.raise_for_status()
        return await response.text()


def metrics_handler(registry: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics: this process's registry, or with `app[WORKER_SLOT]` set, all workers' merged."""

    async def metrics(request: web.Request) -> web.Response:
        slot = request.app.get(WORKER_SLOT)
        if slot is None:
            return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
        siblings = [index for index in range(slot.count) if index != slot.index]
        results = await asyncio.gather(
            *(_read_sibling(slot.socket_path(index)) for index in siblings), return_exceptions=True
        )
        texts = {slot.index: generate_latest(registry).decode()}
        texts.update({index: text for index, text in zip(siblings, results, strict=True) if isinstance(text, str)})
        body = merge_expositions(texts, answered=len(texts), missing=slot.count - len(texts))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def serve_worker_metrics(app: web.Application, registry: CollectorRegistry, slot: WorkerSlot) -> None:
    """Make `app` one of `slot.count` workers: its registry on its private socket, /metrics merged."""
    app[WORKER_SLOT] = slot

    @asynccontextmanager
    async def private_socket(app: web.Application) -> AsyncIterator[None]:
        local = web.Application()
        local.router.add_get("/metrics", metrics_handler(registry))
        runner = web.AppRunner(local, access_log=None)
        await runner.setup()
        path = slot.socket_path(slot.index)
        path.unlink(missing_ok=True)
        await web.UnixSite(runner, str(path)).start()
        try:
            yield
        finally:
            await runner.cleanup()

    app.cleanup_ctx.append(private_socket)
