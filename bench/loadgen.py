"""A small HTTP/1.1 keep-alive load generator (asyncio, raw sockets), run in a process of its own.

`python -m bench.loadgen --port P --token K --ids 1,2 --concurrency C --seconds S` keeps C connections
busy (closed loop); with `--rate R` it sends R requests per second on schedule whatever the answers
(open loop) and measures each latency from the request's scheduled time, so a stall is not hidden by
requests that were never sent. Prints one JSON line: requests, rps, p50/p90/p99/max in ms, statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections import Counter


class Connection:
    """One keep-alive connection; `request` sends one request and reads the whole response."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    async def request(self, data: bytes) -> int:
        reader, writer = await self.connect()
        writer.write(data)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = head.lower()
        length = 0
        close = b"connection: close" in headers
        start = headers.find(b"content-length:")
        if start >= 0:
            length = int(headers[start + 15 : headers.index(b"\r\n", start)])
            await reader.readexactly(length)
        elif b"transfer-encoding: chunked" in headers:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def build_requests(host: str, path: str, token: str, ids: list[int]) -> list[bytes]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return [
        (f"POST {path.format(id=i)} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 0\r\n\r\n").encode() for i in ids
    ]


class Recorder:
    def __init__(self, measure_from: float) -> None:
        self.measure_from = measure_from
        self.latencies: list[float] = []
        self.slowest = (0.0, 0.0)  # (latency, when it was scheduled, in seconds from the start of measuring)
        self.statuses: Counter[str] = Counter()
        # Every answer, the warm-up's too: what a process's CPU over the whole run is divided by.
        self.all_statuses: Counter[str] = Counter()

    def add(self, scheduled: float, status: int | str) -> None:
        self.all_statuses[str(status)] += 1
        if scheduled >= self.measure_from:
            latency = time.perf_counter() - scheduled
            self.latencies.append(latency)
            if latency > self.slowest[0]:
                self.slowest = (latency, scheduled - self.measure_from)
            self.statuses[str(status)] += 1


async def closed_loop(args: argparse.Namespace, requests: list[bytes], rec: Recorder, end: float) -> None:
    cycle = itertools.cycle(requests)

    async def client() -> None:
        conn = Connection(args.host, args.port)
        while time.perf_counter() < end:
            started = time.perf_counter()
            try:
                status: int | str = await conn.request(next(cycle))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status = type(exc).__name__
                conn.close()
            rec.add(started, status)
        conn.close()

    await asyncio.gather(*(client() for _ in range(args.concurrency)))


async def connected(args: argparse.Namespace) -> asyncio.Queue[Connection]:
    """The open loop's connections, opened before its clock starts, as clients keep theirs: otherwise the first
    requests of a step with hundreds of connections wait behind this process opening them all at once."""
    connections = [Connection(args.host, args.port) for _ in range(args.concurrency)]
    await asyncio.gather(*(c.connect() for c in connections))
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in connections:
        pool.put_nowait(connection)
    return pool


async def open_loop(
    args: argparse.Namespace,
    pool: asyncio.Queue[Connection],
    requests: list[bytes],
    rec: Recorder,
    start: float,
    end: float,
) -> None:
    cycle = itertools.cycle(requests)
    tasks: list[asyncio.Task[None]] = []

    async def one(scheduled: float, data: bytes) -> None:
        conn = await pool.get()
        try:
            status: int | str = await conn.request(data)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            status = type(exc).__name__
            conn.close()
        pool.put_nowait(conn)
        rec.add(scheduled, status)

    interval = 1.0 / args.rate
    for i in itertools.count():
        scheduled = start + i * interval
        if scheduled >= end:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, next(cycle))))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    ids = [int(x) for x in args.ids.split(",")]
    requests = build_requests(f"{args.host}:{args.port}", args.path, args.token, ids)
    pool = await connected(args) if args.rate else None
    start = time.perf_counter()
    measure_from = start + args.warmup
    end = measure_from + args.seconds
    rec = Recorder(measure_from)
    if pool is not None:
        await open_loop(args, pool, requests, rec, start, end)
    else:
        await closed_loop(args, requests, rec, end)
    lat = sorted(rec.latencies)
    ok = sum(n for s, n in rec.statuses.items() if s.startswith("2"))
    return {
        "mode": f"open loop, {args.rate}/s" if args.rate else f"closed loop, {args.concurrency} connections",
        "requests": len(lat),
        "ok": ok,
        "rps": round(ok / args.seconds, 1),
        "p50_ms": round(1000 * percentile(lat, 0.50), 2),
        "p90_ms": round(1000 * percentile(lat, 0.90), 2),
        "p99_ms": round(1000 * percentile(lat, 0.99), 2),
        "max_ms": round(1000 * (lat[-1] if lat else 0.0), 2),
        "max_at_s": round(rec.slowest[1], 2),
        "statuses": dict(rec.statuses),
        "statuses_with_warmup": dict(rec.all_statuses),
        # The generator shares the machine's cores with the server: its own CPU per request says how much.
        "loadgen_cpu_ms_per_request": round(1000 * time.process_time() / max(1, sum(rec.all_statuses.values())), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/integrations/{id}/sync")
    parser.add_argument("--token", default="")
    parser.add_argument("--ids", default="1")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
