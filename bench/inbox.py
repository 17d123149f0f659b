"""The inbox and webhooks: how fast a waiting test hears of an SMS, and how many webhook
deliveries a node makes per second.

    .venv/bin/python bench/inbox.py [--samples 200] [--deliveries 2000]
                                    [--pg postgresql://postgres@127.0.0.1:5432/postgres]

1. **Wait wake-up, one node.** Starts ``simgate serve`` on SQLite with five phone gateways
   (made with the real CLI). For each sample: a client opens ``GET /api/v1/inbox/wait``
   for a token only that sample's SMS carries; once the wait is open, a phone posts the SMS
   to ``POST /api/v1/gateway/sms/received`` (the ingest). Prints the time from just before
   the ingest POST to the waiter's response, p50/p99 (target: under 10 ms).
2. **Wait wake-up, two PostgreSQL nodes.** The same with two servers on one fresh database:
   the wait is open on node A, the SMS posted to node B, so the wake-up crosses nodes by
   ``LISTEN/NOTIFY`` (target: under 50 ms). Skipped, saying so, when ``--pg`` is unreachable.
3. **Webhook deliveries per second.** A local receiver (HTTP/1.1 on asyncio, answering 204)
   and an endpoint for ``message.received``; with the server stopped, ``--deliveries`` SMS are
   stored (events in the outbox, as a crash or an outage would leave them); then the server
   starts and the receiver counts: deliveries per second from the first to the last, as a
   ratio to the ceiling app's ``POST /insert`` (``../shared/bench/ceiling.py``) measured with
   wrk in the same run.

Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import h11
import httpx

from _common import (
    BIN,
    REPO,
    Processes,
    Server,
    ceiling_insert_rps,
    check_tools,
    create_key,
    drop_database,
    install_signal_handlers,
    machine_info,
    pct,
    pg_database,
    run_cli,
    simgate_env,
)

PHONES = 5


def serve(processes: Processes, name: str, env: dict[str, str], tmpdir: Path, node: str) -> Server:
    env = {**env, "SIMGATE_NODE_NAME": node}
    return processes.server(
        name,
        lambda port: [str(BIN / "simgate"), "serve", "--port", str(port)],
        env=env,
        ready_path="/readyz",
        log_dir=tmpdir,
    )


def make_phones(env: dict[str, str]) -> list[str]:
    keys = []
    for i in range(PHONES):
        out = run_cli(env, "gateway", "add", f"bench-phone-{i}")
        keys.append(out.strip().splitlines()[-1].strip())
    return keys


async def wake_latency(
    wait_base: str, ingest_base: str, app_key: str, phone_keys: list[str], samples: int
) -> list[float]:
    """Milliseconds from just before each ingest POST to the waiter's answer."""
    out: list[float] = []
    limits = httpx.Limits(max_connections=4)
    async with (
        httpx.AsyncClient(base_url=wait_base, timeout=30, limits=limits) as waiter,
        httpx.AsyncClient(base_url=ingest_base, timeout=30, limits=limits) as phone,
    ):
        app = {"Authorization": f"Bearer {app_key}"}
        # Warm up both connections.
        await waiter.get("/healthz")
        await phone.get("/healthz")
        for i in range(samples):
            token = f"bench{os.getpid()}x{i}"
            wait = asyncio.create_task(
                waiter.get(
                    "/api/v1/inbox/wait",
                    params={"contains": token, "pattern": r"(\d{6})", "timeout": "20"},
                    headers=app,
                )
            )
            await asyncio.sleep(0.02)  # the wait is open and registered
            t0 = time.perf_counter()
            resp = await phone.post(
                "/api/v1/gateway/sms/received",
                json={
                    "phone_number": "+4915112345678",
                    "message_body": f"{token}: your code is 123456",
                    "received_at": datetime.now(UTC).isoformat(),
                },
                headers={"Authorization": f"Bearer {phone_keys[i % len(phone_keys)]}"},
            )
            answer = await wait
            t1 = time.perf_counter()
            if resp.status_code != 201 or answer.status_code != 200:
                sys.exit(f"error: ingest {resp.status_code} {resp.text}; wait {answer.text}")
            out.append((t1 - t0) * 1000)
    return out


def report(name: str, ms: list[float], target: float) -> None:
    print(
        f"{name}: p50 {statistics.median(ms):.1f} ms, p99 {pct(ms, 99):.1f} ms, "
        f"max {max(ms):.1f} ms over {len(ms)} samples (target: under {target:g} ms)"
    )


class Receiver:
    """A webhook receiver: HTTP/1.1 keep-alive on asyncio, every request answered 204."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        with contextlib.suppress(ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    if not data:
                        break
                    conn.receive_data(data)
                elif isinstance(event, h11.EndOfMessage):
                    self.times.append(time.perf_counter())
                    writer.write(conn.send(h11.Response(status_code=204, headers=[])) or b"")
                    writer.write(conn.send(h11.EndOfMessage()) or b"")
                    await writer.drain()
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    break
        writer.close()


async def store_backlog(env: dict[str, str], n: int) -> None:
    """``n`` received SMS stored directly, while no server runs: their events wait in the
    outbox."""
    sys.path.insert(0, str(REPO / "src"))
    from simgate.config import load_settings
    from simgate.domain.messages import Received
    from simgate.services import inbound
    from simgate.services.changes import ChangeFeed
    from simgate.store.engine import make_engine

    settings = load_settings(data_dir=Path(env["SIMGATE_DATA_DIR"]))
    engine = make_engine(settings)
    sm = ChangeFeed(node="bench", notify=False).sessionmaker(engine)
    try:
        for start in range(0, n, 500):
            async with sm.begin() as session:
                for i in range(start, min(n, start + 500)):
                    await inbound.store(
                        session,
                        Received(
                            gateway="bench-phone-0",
                            sender="+4915112345678",
                            body=f"backlog {i}: your code is 123456",
                            received_at=datetime.now(UTC),
                        ),
                    )
    finally:
        await engine.dispose()


async def deliveries(
    processes: Processes, env: dict[str, str], tmpdir: Path, app_key: str, n: int
) -> tuple[float, float]:
    receiver = Receiver()
    await receiver.start()
    server = serve(processes, "deliveries", env, tmpdir, "bench-deliveries")
    server.start()
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
        resp = await client.post(
            "/api/v1/webhooks",
            json={"url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["message.received"]},
            headers={"Authorization": f"Bearer {app_key}"},
        )
        if resp.status_code != 201:
            sys.exit(f"error: registering the webhook: {resp.status_code} {resp.text}")
    server.stop()
    await store_backlog(env, n)
    started = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(None, server.start)
    deadline = time.monotonic() + 600
    while len(receiver.times) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    server.stop()
    await receiver.stop()
    got = receiver.times
    if len(got) < n:
        print(f"warning: only {len(got)} of {n} deliveries arrived within 10 minutes")
    if len(got) < 2:
        return 0.0, 0.0
    rate = (len(got) - 1) / (got[-1] - got[0])
    return rate, got[-1] - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    install_signal_handlers()
    check_tools(pin=False)
    machine_info()
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="simgate-bench-inbox-") as tmp:
        tmpdir = Path(tmp)
        try:
            # --- one node, SQLite
            env = simgate_env(tmpdir / "one", access_log=False)
            env["SIMGATE_WEBHOOK_ALLOW_PRIVATE"] = "true"
            app_key = create_key(tmpdir / "one")
            phone_keys = make_phones(env)
            server = serve(processes, "one", env, tmpdir, "bench-one")
            server.start()
            ms = asyncio.run(
                wake_latency(server.base, server.base, app_key, phone_keys, args.samples)
            )
            server.stop()
            report("wait wake-up, one node (SQLite), ingest to answer", ms, 10)
            # --- two PostgreSQL nodes
            pg_url = pg_database(args.pg, "inbox")
            if pg_url is None:
                print("two PostgreSQL nodes: skipped, cannot reach --pg " + args.pg)
            else:
                try:
                    penv = simgate_env(tmpdir / "pg", access_log=False, database_url=pg_url)
                    (tmpdir / "pg").mkdir(exist_ok=True)
                    pkey = create_key(tmpdir / "pg", database_url=pg_url)
                    pphones = make_phones(penv)
                    a = serve(processes, "node-a", penv, tmpdir, "bench-a")
                    b = serve(processes, "node-b", penv, tmpdir, "bench-b")
                    a.start()
                    b.start()
                    ms = asyncio.run(wake_latency(a.base, b.base, pkey, pphones, args.samples))
                    a.stop()
                    b.stop()
                    report("wait wake-up, two PostgreSQL nodes (wait on A, SMS to B)", ms, 50)
                finally:
                    drop_database(args.pg, pg_url)
            # --- webhook deliveries
            rate, total = asyncio.run(deliveries(processes, env, tmpdir, app_key, args.deliveries))
            insert_rps = ceiling_insert_rps(processes, tmpdir)
            print(
                f"webhook deliveries to a local receiver (SQLite, one endpoint): {rate:,.0f}/s "
                f"({rate / insert_rps:.2f}x the ceiling's /insert at {insert_rps:,.0f}/s); "
                f"{args.deliveries} delivered {total:.1f} s after the server was started"
            )
        finally:
            processes.stop_all()


if __name__ == "__main__":
    main()
