"""Memory over a long run: does the server's resident memory stay flat under steady use?

Starts a throwaway simgate (SQLite in a temp data directory, or a fresh PostgreSQL database
with ``--backend postgresql``) set up with the real CLI: an app key, a fake gateway draining
(``--max-in-flight 32 --set report_delay=0.01``, delivery reports included) and, through the
API, a webhook subscribed to every event, pointed at a small receiver in this process that
answers 200. Then, for ``--duration`` seconds, it sends a steady mix at ``--rate`` requests
a second: single sends (60 %), 10-recipient batches (10 %), ``GET /api/v1/me`` (10 %),
one-time codes started (10 %) and checked with a wrong code (5 %), and messages read back
(5 %). Every feature stays on: the request log, the webhook outbox, OTP.

Every ``--sample`` seconds it reads the server's resident memory (VmRSS in /proc) and prints
a line per minute. At the end: memory after the warm-up (``--warmup`` seconds, while the
caches fill), at the end and at its highest; the growth between the first and the last
minute after the warm-up; the least-squares slope; and what was sent, delivered and
received by the webhook receiver. Figures only; nothing is asserted.

    .venv/bin/python bench/memory.py [--duration 600] [--rate 200] [--backend sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from _common import (
    Processes,
    create_key,
    drop_database,
    install_signal_handlers,
    machine_info,
    pg_database,
    run_cli,
    simgate_env,
)

GATEWAY_ADD = [
    *("gateway", "add", "fake1", "--kind", "fake", "--max-in-flight", "32"),
    *("--set", "report_delay=0.01"),
]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MIX = [("send", 60), ("batch", 10), ("me", 10), ("otp", 10), ("verify", 5), ("read", 5)]


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (0 when it cannot be read)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Receiver:
    """A webhook endpoint: reads each request and answers 200, counting them."""

    def __init__(self) -> None:
        self.received = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip() or 0)
                if length:
                    await reader.readexactly(length)
                self.received += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the run is over: the loop cancels open connections
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class Load:
    """What the load did: answers by kind and status, and failures."""

    answers: dict[tuple[str, int], int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    verifications: list[str] = field(default_factory=list)

    def count(self, kind: str, status: int) -> None:
        self.answers[kind, status] = self.answers.get((kind, status), 0) + 1


async def one(
    client: httpx.AsyncClient, kind: str, numbers: itertools.count[int], load: Load
) -> None:
    def phone() -> str:
        return f"+49151{next(numbers) % 100_000_000:08d}"

    try:
        if kind == "send":
            resp = await client.post(
                "/api/v1/messages", json={"to": phone(), "body": "Your code is 123456"}
            )
            if resp.status_code == 202:
                load.message_ids.append(resp.json()["id"])
                del load.message_ids[:-1000]
        elif kind == "batch":
            resp = await client.post(
                "/api/v1/messages",
                json={"to": [phone() for _ in range(10)], "body": "Sale: 20 % off today only"},
            )
        elif kind == "me":
            resp = await client.get("/api/v1/me")
        elif kind == "otp":
            resp = await client.post("/api/v1/otp", json={"phone": phone()})
            if resp.status_code == 201:
                load.verifications.append(resp.json()["id"])
                del load.verifications[:-1000]
        elif kind == "verify":
            if not load.verifications:
                return
            resp = await client.post(
                "/api/v1/otp/verify",
                json={"id": random.choice(load.verifications), "code": "000000"},
            )
        else:
            if not load.message_ids:
                return
            resp = await client.get(f"/api/v1/messages/{random.choice(load.message_ids)}")
        load.count(kind, resp.status_code)
        if resp.status_code >= 500 and len(load.errors) < 20:
            load.errors.append(f"{kind}: {resp.status_code} {resp.text[:200]}")
    except httpx.HTTPError as exc:
        load.count(kind, 0)
        if len(load.errors) < 20:
            load.errors.append(f"{kind}: {type(exc).__name__}: {exc}")


async def drive(base: str, key: str, rate: float, until: float, load: Load) -> None:
    """``rate`` requests a second from the mix until ``until`` (monotonic), at most 64 at a
    time (a server that falls behind gets no more than that waiting on it)."""
    kinds = [k for k, weight in MIX for _ in range(weight)]
    numbers = itertools.count(random.randrange(10_000_000))
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    tick = 0.02
    per_tick = rate * tick
    owed = 0.0
    running: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30
    ) as client:
        next_at = time.monotonic()
        while time.monotonic() < until:
            owed += per_tick
            while owed >= 1 and len(running) < 64:
                owed -= 1
                task = asyncio.create_task(one(client, random.choice(kinds), numbers, load))
                running.add(task)
                task.add_done_callback(running.discard)
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if running:
            await asyncio.wait(running, timeout=30)


async def sample(pid: int, every: float, until: float, out: list[tuple[float, int]]) -> None:
    start = time.monotonic()
    last_line = -1
    while time.monotonic() < until:
        elapsed = time.monotonic() - start
        kib = rss_kib(pid)
        out.append((elapsed, kib))
        minute = int(elapsed // 60)
        if minute != last_line:
            last_line = minute
            print(f"  {elapsed:6.0f} s  RSS {kib / 1024:7.1f} MiB", flush=True)
        await asyncio.sleep(every)


def slope_per_minute(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, in MiB per minute."""
    if len(points) < 2:
        return float("nan")
    xs = [t / 60 for t, _ in points]
    ys = [kib / 1024 for _, kib in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


async def run(
    args: argparse.Namespace, processes: Processes, tmp: Path, database_url: str | None
) -> None:
    data_dir = tmp / "data"
    data_dir.mkdir()
    key = create_key(data_dir, database_url=database_url)
    env = simgate_env(data_dir, access_log=False, database_url=database_url)
    env.update(SIMGATE_WEBHOOK_ALLOW_PRIVATE="true", SIMGATE_OTP_PER_APP_PER_HOUR="0")
    env.update(SIMGATE_OTP_PER_IP_PER_HOUR="0", SIMGATE_OTP_PER_PHONE_PER_HOUR="0")
    run_cli(env, *GATEWAY_ADD)
    server = processes.simgate("simgate-memory", env=env, log_dir=tmp)
    server.start()
    receiver = Receiver()
    await receiver.start()
    async with httpx.AsyncClient(
        base_url=server.base, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        resp = await client.post(
            "/api/v1/webhooks",
            json={"url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["*"]},
        )
        if resp.status_code != 201:
            sys.exit(f"error: could not create the webhook: {resp.status_code} {resp.text}")
    print(
        f"simgate on :{server.port} ({args.backend}), {args.rate:g} requests/s for "
        f"{args.duration:g} s, mix {', '.join(f'{k} {w}%' for k, w in MIX)}; "
        f"webhook to :{receiver.port} on every event",
        flush=True,
    )
    load = Load()
    points: list[tuple[float, int]] = []
    until = time.monotonic() + args.duration
    await asyncio.gather(
        drive(server.base, key, args.rate, until, load),
        sample(server.pid, args.sample, until, points),
    )
    await asyncio.sleep(2)  # the last webhooks
    report(args, points, load, receiver.received)
    if server.died() is not None:
        print(f"  the server STOPPED during the run: {server.log_tail()}")
    server.stop()
    await receiver.stop()


def report(
    args: argparse.Namespace, points: list[tuple[float, int]], load: Load, hooks: int
) -> None:
    after = [p for p in points if p[0] >= args.warmup]
    if not after:
        print("  too short a run for figures after the warm-up")
        return
    first = [kib for t, kib in after if t < args.warmup + 60]
    last = [kib for t, kib in after if t >= args.duration - 60]
    start_mib = statistics.median(first) / 1024
    end_mib = statistics.median(last or first) / 1024
    peak = max(kib for _, kib in points) / 1024
    growth = end_mib - start_mib
    slope = slope_per_minute(after)
    print("Results:")
    print(
        f"  RSS after the {args.warmup:g} s warm-up (median of the next minute):"
        f" {start_mib:.1f} MiB"
    )
    print(f"  RSS in the last minute (median): {end_mib:.1f} MiB; highest: {peak:.1f} MiB")
    print(
        f"  growth after the warm-up: {growth:+.1f} MiB ({growth / start_mib * 100:+.1f} %);"
        f" slope {slope:+.2f} MiB/min over {len(after)} samples"
    )
    verdict = "flat" if abs(growth) <= max(4.0, 0.05 * start_mib) else "GROWING"
    print(f"  verdict: {verdict} (flat: within 4 MiB or 5 %, whichever is larger)")
    by_kind: dict[str, dict[int, int]] = {}
    for (kind, status), n in sorted(load.answers.items()):
        by_kind.setdefault(kind, {})[status] = n
    total = sum(load.answers.values())
    print(f"  requests answered: {total:,} ({total / args.duration:,.0f}/s)")
    for kind, statuses in by_kind.items():
        shown = ", ".join(f"{status or 'no answer'}: {n:,}" for status, n in statuses.items())
        print(f"    {kind:<7} {shown}")
    print(f"  webhook deliveries received: {hooks:,}")
    for error in load.errors[:10]:
        print(f"  error: {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (600)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (200)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds not judged (60)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples (5)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL server ({DEFAULT_PG})")
    args = parser.parse_args()
    if args.duration < args.warmup + 60:
        sys.exit("error: --duration must be at least --warmup + 60 seconds")
    install_signal_handlers()
    machine_info()
    database_url = None
    if args.backend == "postgresql":
        database_url = pg_database(args.pg, "memory")
        if database_url is None:
            sys.exit(f"error: PostgreSQL at {args.pg} is unreachable")
    processes = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="simgate-memory-") as tmp:
            try:
                asyncio.run(run(args, processes, Path(tmp), database_url))
            finally:
                processes.stop_all()
                if database_url is not None:
                    drop_database(args.pg, database_url)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
