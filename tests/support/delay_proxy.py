"""A TCP proxy that delays every chunk by a set time in each direction, as a slow link between two hosts would
(this kernel has no `tc netem`). Run it as a process (inside a network namespace, say):

    python -m tests.support.delay_proxy LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

It starts with no delay; SIGUSR1 turns the delay on, SIGUSR2 off, so a test can plant latency in the middle of a
run without cutting the connections. Chunks keep their order, and the delay does not add up with throughput
(each chunk waits its own DELAY_MS from when it arrived).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time


class DelayingProxy:
    def __init__(self, target: tuple[str, int], delay_s: float) -> None:
        self.target, self.delay_s, self.active = target, delay_s, False

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        await asyncio.gather(self.pipe(reader, upstream_writer), self.pipe(upstream_reader, writer))

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((time.monotonic() + (self.delay_s if self.active else 0.0), data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(ConnectionError, OSError):
            await sender
        writer.transport.abort()


async def main(listen_host: str, listen_port: int, target_host: str, target_port: int, delay_ms: float) -> None:
    proxy = DelayingProxy((target_host, target_port), delay_ms / 1000)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, lambda: setattr(proxy, "active", True))
    loop.add_signal_handler(signal.SIGUSR2, lambda: setattr(proxy, "active", False))
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    server = await asyncio.start_server(proxy.serve, listen_host, listen_port)
    print(f"delaying {listen_host}:{listen_port} -> {target_host}:{target_port} by {delay_ms:g} ms", flush=True)
    await stopping.wait()
    server.close()


if __name__ == "__main__":
    host, port, target, target_port, delay = sys.argv[1:6]
    asyncio.run(main(host, int(port), target, int(target_port), float(delay)))
