"""Phones at scale: how much a connected phone costs the server, how many heartbeats it
handles, and how long a message takes from the API to the phone's socket.

    .venv/bin/python bench/phones.py [--phones 10000] [--latency-phones 1000] [--rate 100]
                                     [--seconds 20] [--clients 4] [--database-url URL]

1. Starts ``simgate serve`` on SQLite (or ``--database-url``) with the access log off and
   creates ``--phones`` phone gateways with their keys (in-process, through the service).
2. Connects them all from ``--clients`` child processes (the phones; each speaks seed 003's
   Action Cable protocol, subscribes, answers ``send_sms`` with ``sent`` then ``delivered``),
   and prints the server's RSS before and after: RSS per connection.
3. Heartbeats: every phone sends heartbeats over its socket as fast as the acks come back,
   for ``--seconds``; prints acks per second, as a ratio to the ceiling app's ``POST /insert``
   (a bare FastAPI + SQLite insert, ``../shared/bench/ceiling.py``) measured with wrk in the
   same run.
4. Latency: with ``--latency-phones`` connected, posts ``--rate`` messages a second for
   ``--seconds``, each pinned to the next phone, and prints send → ``send_sms`` latency
   (from just before the POST to the frame reaching the phone) p50/p99, and POST latency.

Targets (DEVELOPERS' issue): 10,000 connections under 1 GiB RSS; p99 under 20 ms at 100
sends/s over 1,000 phones. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    Processes,
    ceiling_insert_rps,
    check_tools,
    install_signal_handlers,
    machine_info,
    simgate_env,
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the phones (a child process) ------------------------------------------------------------


async def phone_client(url: str, keys: list[str], control: Any) -> None:
    """Run ``keys`` as reference phones (``simgate.phone_sim``); then obey commands on
    stdin: 'count', 'beat SECONDS', 'report', 'quit'."""
    from simgate.phone_sim import EmulatorConfig, PhoneEmulator

    received: dict[str, float] = {}

    def got(payload: dict[str, Any]) -> None:
        received[str(payload["message_id"])] = time.monotonic()

    phones = [
        PhoneEmulator(
            EmulatorConfig(url=url, key=k, deliver_after=0.2, sent_after=0, heartbeat_every=3600),
            on_send=got,
        )
        for k in keys
    ]
    tasks = []
    for i in range(0, len(phones), 200):  # connect in waves: a SYN flood helps nobody
        tasks += [asyncio.create_task(p.run()) for p in phones[i : i + 200]]
        await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), control)
    print(json.dumps({"ready": len(keys)}), flush=True)
    while line := (await reader.readline()).decode().strip():
        cmd, _, arg = line.partition(" ")
        if cmd == "count":
            connected = sum(p.subscribed.is_set() for p in phones)
            dead = [repr(t.exception())[:200] for t in tasks if t.done() and not t.cancelled()]
            print(
                json.dumps({"connected": connected, "dead": dead[:3], "n_dead": len(dead)}),
                flush=True,
            )
        elif cmd == "beat":
            # Every phone beats twice a second (under the socket's flood limit) for the
            # given time; the acks counted are what the server handled.
            before = sum(p.stats.acks for p in phones)
            beaters = [asyncio.create_task(_beat(p, float(arg))) for p in phones]
            await asyncio.gather(*beaters)
            await asyncio.sleep(1)
            print(json.dumps({"acks": sum(p.stats.acks for p in phones) - before}), flush=True)
        elif cmd == "report":
            print(json.dumps({"received": received}), flush=True)
        elif cmd == "quit":
            break
    for task in tasks:
        task.cancel()


async def _beat(phone: Any, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(Exception):  # a phone reconnecting misses a beat
            await phone.heartbeat()
        await asyncio.sleep(0.5)


# --- the benchmark ----------------------------------------------------------------------------


async def make_phones(data_dir: Path, database_url: str | None, n: int) -> list[str]:
    sys.path.insert(0, str(REPO / "src"))
    from simgate.config import load_settings
    from simgate.services import phones
    from simgate.store import migrate
    from simgate.store.engine import make_engine, make_sessionmaker

    overrides: dict[str, Any] = {"data_dir": data_dir}
    if database_url:
        overrides["database_url"] = database_url
    settings = load_settings(**overrides)
    engine = make_engine(settings)
    await migrate.upgrade(engine)
    keys = []
    try:
        for start in range(0, n, 500):
            async with make_sessionmaker(engine).begin() as session:
                for i in range(start, min(n, start + 500)):
                    made = await phones.create(
                        session, label=f"p{i}", device_id=None, name=f"p{i}", actor="bench"
                    )
                    keys.append(made.key)
    finally:
        await engine.dispose()
    return keys


class Clients:
    def __init__(self, url: str, keys: list[str], count: int, log_dir: Path) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        share = (len(keys) + count - 1) // count
        for i in range(count):
            chunk = keys[i * share : (i + 1) * share]
            if not chunk:
                continue
            keyfile = log_dir / f"keys-{i}.json"
            keyfile.write_text(json.dumps(chunk))
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--as-client", url, str(keyfile)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=(log_dir / f"client-{i}.log").open("w"),
                    text=True,
                    start_new_session=True,
                )
            )
        for proc in self.procs:
            self._read(proc)

    def _read(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            sys.exit("error: a phone client process ended; see client-*.log")
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, command: str) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
        return [self._read(proc) for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def wait_connected(clients: Clients, server_pid: int, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    said = time.monotonic()
    while time.monotonic() < deadline:
        answers = clients.ask("count")
        connected = sum(r["connected"] for r in answers)
        if connected >= n:
            return
        if time.monotonic() - said > 10:
            dead = sum(r["n_dead"] for r in answers)
            why = next((r["dead"][0] for r in answers if r["dead"]), "")
            print(f"  {connected} of {n} phones connected ({dead} gave up {why})", flush=True)
            said = time.monotonic()
        time.sleep(1)
    sys.exit(f"error: only {connected} of {n} phones connected")


async def post_messages(
    url: str, key: str, phones: int, rate: float, seconds: float
) -> tuple[dict[str, float], list[float]]:
    import httpx

    sent: dict[str, float] = {}
    post_ms: list[float] = []
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        total = int(rate * seconds)
        start = time.monotonic()

        async def one(i: int) -> None:
            t0 = time.monotonic()
            resp = await http.post(
                "/api/v1/messages",
                json={"to": "+4915112345678", "body": f"m{i}", "gateway": f"p{i % phones}"},
            )
            post_ms.append((time.monotonic() - t0) * 1000)
            if resp.status_code == 202:
                sent[resp.json()["id"]] = t0

        tasks = []
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return sent, post_ms


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--as-client", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--phones", type=int, default=10_000)
    parser.add_argument("--latency-phones", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.as_client:
        url, keyfile = args.as_client
        asyncio.run(phone_client(url, json.loads(Path(keyfile).read_text()), sys.stdin))
        return
    install_signal_handlers()
    check_tools(pin=False)
    machine_info()
    processes = Processes()
    clients: Clients | None = None
    with tempfile.TemporaryDirectory(prefix="simgate-bench-phones-") as tmp:
        tmpdir = Path(tmp)
        data_dir = tmpdir / "data"
        try:
            print(f"creating {args.phones} phone gateways ...", flush=True)
            keys = asyncio.run(make_phones(data_dir, args.database_url, args.phones))
            env = simgate_env(data_dir, access_log=False, database_url=args.database_url)
            env["SIMGATE_GATEWAY_ACK_TIMEOUT"] = "30"
            from _common import run_cli

            app_key = run_cli(env, "app", "create", "bench").strip().splitlines()[-1]
            server = processes.simgate("simgate", env=env, log_dir=tmpdir, ready_path="/readyz")
            server.start()
            time.sleep(2)
            base_rss = rss_mib(server.pid)
            ws_url = "ws" + server.base[4:]
            # --- connections and memory
            t0 = time.monotonic()
            clients = Clients(ws_url, keys, args.clients, tmpdir)
            wait_connected(clients, server.pid, len(keys))
            connect_s = time.monotonic() - t0
            time.sleep(12)  # a gateway heartbeat: every phone's driver started
            full_rss = rss_mib(server.pid)
            per = (full_rss - base_rss) * 1024 / max(1, len(keys))
            print(f"\n{len(keys)} phones connected in {connect_s:.1f} s")
            print(
                f"server RSS: {base_rss:.0f} MiB idle -> {full_rss:.0f} MiB connected "
                f"({per:.1f} KiB per connection; target: 10,000 under 1 GiB)"
            )
            # --- heartbeats
            beats = sum(r["acks"] for r in clients.ask(f"beat {args.seconds}")) / args.seconds
            insert_rps = ceiling_insert_rps(processes, tmpdir)
            print(
                f"heartbeats over the sockets: {beats:,.0f}/s ({beats / insert_rps:.2f}x "
                f"the ceiling's /insert at {insert_rps:,.0f}/s)"
            )
            clients.stop()
            # --- latency over fewer phones
            time.sleep(3)
            clients = Clients(
                ws_url, keys[: args.latency_phones], max(1, args.clients // 2), tmpdir
            )
            wait_connected(clients, server.pid, args.latency_phones)
            time.sleep(12)
            sent, post_ms = asyncio.run(
                post_messages(server.base, app_key, args.latency_phones, args.rate, args.seconds)
            )
            time.sleep(3)
            received: dict[str, float] = {}
            for report in clients.ask("report"):
                received.update(report["received"])
            lat = [(received[m] - t) * 1000 for m, t in sent.items() if m in received]
            print(
                f"\nsend -> send_sms at {args.rate:g}/s over {args.latency_phones} phones: "
                f"p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms "
                f"({len(lat)} of {len(sent)} arrived; target p99 < 20 ms)"
            )
            print(
                f"POST /api/v1/messages: p50 {pct(post_ms, 0.5):.1f} ms, "
                f"p99 {pct(post_ms, 0.99):.1f} ms"
            )
            print(f"server RSS at the end: {rss_mib(server.pid):.0f} MiB")
        finally:
            if clients is not None:
                clients.stop()
            processes.stop_all()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
