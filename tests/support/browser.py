"""A real headless Chromium driven over the DevTools protocol (aiohttp's WebSocket client): open a page, collect
console errors and exceptions, evaluate an expression, take a screenshot. Debian's `chromium` package, as root."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from app.stack.processes import stop
from tests.support.requirements import missing

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--remote-debugging-port=0", "--remote-allow-origins=*",
]  # fmt: skip


def chromium_binary() -> str:
    found = next((path for path in map(shutil.which, ("chromium", "chromium-browser")) if path), None)
    if found is None:
        missing("Chromium is not installed (Debian: apt-get install chromium)")
    return found


@dataclass
class PageVisit:
    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    value: Any = None


class DevTools:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.socket.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.socket.receive_json(), 30)
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    async def wait_event(self, method: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(event.get("method") == method for event in self.events):
            self.events.append(
                await asyncio.wait_for(self.socket.receive_json(), max(0.1, deadline - time.monotonic()))
            )


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(str(params.get("args")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            found.append(str(params["entry"].get("text")))
    return found


def _start(binary: str, profile: Path) -> subprocess.Popen[bytes]:
    with (profile / "chromium.log").open("wb") as log:
        return subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the helpers it forks go with it
        )


@asynccontextmanager
async def running_chromium() -> AsyncIterator[int]:
    """Chromium with a fresh profile; yields its DevTools port."""
    binary = chromium_binary()
    # Chromium's helpers may still be writing to the profile as it is removed: that must not fail the test.
    with tempfile.TemporaryDirectory(prefix="fleetbed-chromium-", ignore_cleanup_errors=True) as profile:
        process = _start(binary, Path(profile))
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"chromium did not start: {(Path(profile) / 'chromium.log').read_text()}")
                await asyncio.sleep(0.1)
            yield int(port_file.read_text().split()[0])
        finally:
            stop(process, 10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


async def visit(page_uri: str, expression: str) -> PageVisit:
    """Load `page_uri` (a file: URI), evaluate `expression` (returned by value), screenshot it, list console errors."""
    result = PageVisit()
    async with running_chromium() as port, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        async with session.ws_connect(ws_url, max_msg_size=0) as socket:
            tools = DevTools(socket)
            for domain in ("Page", "Runtime", "Log"):
                await tools.call(f"{domain}.enable")
            await tools.call("Page.navigate", url=page_uri)
            await tools.wait_event("Page.loadEventFired")
            evaluated = await tools.call("Runtime.evaluate", expression=expression, returnByValue=True)
            result.value = evaluated.get("result", {}).get("value")
            shot = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            result.screenshot = base64.b64decode(shot["data"])
            result.errors = _errors(tools.events)
    return result
