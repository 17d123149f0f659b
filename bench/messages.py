"""The outbound pipeline: how many messages POST /api/v1/messages accepts, how fast a fake
gateway drains them meanwhile, and how long the hand-over from the API to the gateway takes.

For SQLite and for PostgreSQL (a fresh database on 127.0.0.1:5432, dropped at the end;
skipped with a note when the server cannot be reached), each in fresh throwaway stores set
up with the real CLI:

(a) no gateway online: wrk drives single sends, 100-recipient batches and the ceiling app's
    POST /insert and POST /echo (../shared/bench/ceiling.py) in alternating rounds; the
    messages only queue.
(b) the same with a fake gateway (``--max-in-flight 32 --set report_delay=0.01``) draining
    concurrently: also how many were sent by the end against how many were accepted, and
    how fast the rest drains once the load stops.
(c) hand-over latency: messages sent one at a time to an otherwise idle server with the
    fake gateway online, then read back; from their events, queued -> sending (the claim,
    i.e. the hand-over to the gateway) and queued -> sent. Then again under a background
    load of about 500 sends/s (the rate the hand-over target is set for).

Every rate is also printed as a ratio of the ceiling's POST /insert (one SQLite WAL insert
per request) from the same run, beside the issue's targets. It prints figures and never
asserts on them: timings depend on the machine and its load.

    .venv/bin/python bench/messages.py [--rounds 3] [--duration 5] [--connections 32]
                                       [--parts abc] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from _common import (
    BIN,
    ECHO_BODY,
    Processes,
    Server,
    Target,
    WrkResult,
    check_tools,
    create_key,
    http,
    install_signal_handlers,
    machine_info,
    parse_wrk,
    pinned,
    post_script,
    rotated,
    run_cli,
    run_wrk,
    simgate_env,
    start_ceiling,
    stop_process,
    wrk_argv,
)

SINGLE = "POST messages, 1 to"
BATCH = "POST messages, 100 to"
INSERT = "POST /insert (ceiling)"
ECHO = "POST /echo (ceiling)"
BATCH_SIZE = 100
BATCH_BODY = {
    "to": [f"+49151123456{n:02d}" for n in range(BATCH_SIZE)],  # 100 distinct DE mobiles
    "body": ECHO_BODY["body"],
}
# From the issue.
TARGET_SINGLE = 2_000.0  # accepted single sends per second
TARGET_BATCH = 20_000.0  # accepted recipients per second, in batches
TARGET_HANDOVER_P99 = 20.0  # ms, queued -> sending

GATEWAY = "fake1"
GATEWAY_ADD = [
    *("gateway", "add", GATEWAY, "--kind", "fake", "--max-in-flight", "32"),
    *("--set", "report_delay=0.01"),
]
PASSED = ("sent", "delivered")  # the gateway took it
UNFINISHED = ("queued", "sending", "scheduled")
FINAL = ("sent", "delivered", "failed", "expired", "canceled")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
WIDTH = 23


class BenchError(Exception):
    """Something in one part of the run went wrong; reported, and the next part runs."""


# --- databases ------------------------------------------------------------------------------


class Database:
    """Where the stores of one backend live."""

    label = ""

    def new_url(self, tag: str) -> str | None:
        """A fresh database for a store (None: SQLite in its data directory)."""
        raise NotImplementedError

    def counts(self, store: Store) -> dict[str, int]:
        """Outbound messages by status."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove what ``new_url`` made."""


class SQLite(Database):
    label = "SQLite"

    def new_url(self, tag: str) -> str | None:
        return None

    def counts(self, store: Store) -> dict[str, int]:
        path = store.data_dir / "simgate.db"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute(
                "SELECT status, count(*) FROM messages WHERE direction = 'outbound' GROUP BY status"
            ).fetchall()
        finally:
            db.close()
        return {str(status): int(n) for status, n in rows}


async def _pg_fetch(dsn: str, queries: list[str]) -> list[list[Any]]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        out: list[list[Any]] = []
        for query in queries:
            rows: list[Any] = await conn.fetch(query)
            out.append(rows)
        return out
    finally:
        await conn.close()


def pg_fetch(dsn: str, *queries: str) -> list[list[Any]]:
    return asyncio.run(_pg_fetch(dsn, list(queries)))


class PostgreSQL(Database):
    label = "PostgreSQL"

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.created: list[str] = []

    @staticmethod
    def unreachable(admin_dsn: str) -> str | None:
        """Why PostgreSQL cannot be used (None: it can)."""
        try:
            pg_fetch(admin_dsn, "SELECT 1")
        except Exception as exc:  # any failure to connect means: skip PostgreSQL
            return f"{type(exc).__name__}: {exc}".strip()
        return None

    def _dsn(self, name: str) -> str:
        return urllib.parse.urlsplit(self.admin_dsn)._replace(path=f"/{name}").geturl()

    def new_url(self, tag: str) -> str | None:
        name = f"simgate_bench_{os.getpid()}_{tag}"
        try:
            pg_fetch(
                self.admin_dsn, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'
            )
        except Exception as exc:
            raise BenchError(f"could not create database {name}: {exc}") from exc
        self.created.append(name)
        dsn = self._dsn(name)
        return "postgresql+asyncpg" + dsn[dsn.index("://") :]

    def counts(self, store: Store) -> dict[str, int]:
        assert store.database_url is not None
        dsn = "postgresql" + store.database_url[store.database_url.index("://") :]
        [rows] = pg_fetch(
            dsn,
            "SELECT status, count(*) FROM messages WHERE direction = 'outbound' GROUP BY status",
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def cleanup(self) -> None:
        for name in self.created:
            try:
                pg_fetch(self.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
        self.created.clear()


def redacted(dsn: str) -> str:
    """``dsn`` without its password, for printing."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


@dataclass
class Store:
    """One throwaway simgate installation: a data directory and its database."""

    db: Database
    data_dir: Path
    database_url: str | None
    key: str = ""

    def env(self) -> dict[str, str]:
        return simgate_env(self.data_dir, access_log=False, database_url=self.database_url)

    def counts(self) -> dict[str, int]:
        try:
            return self.db.counts(self)
        except Exception as exc:
            raise BenchError(f"could not count messages: {exc}") from exc

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def new_store(db: Database, tmpdir: Path, tag: str, *, gateway: bool) -> Store:
    data_dir = tmpdir / f"{db.label.lower()}-{tag}"
    data_dir.mkdir()
    store = Store(db, data_dir, db.new_url(tag))
    store.key = create_key(data_dir, database_url=store.database_url)
    if gateway:
        run_cli(store.env(), *GATEWAY_ADD)
    return store


# --- the simgate server ---------------------------------------------------------------------


def start_simgate(
    processes: Processes, store: Store, tmpdir: Path, name: str, cpu: int | None
) -> Server:
    server = processes.server(
        name,
        lambda port: pinned([str(BIN / "simgate"), "serve", "--port", str(port)], cpu),
        env=store.env(),
        ready_path="/healthz",
        log_dir=tmpdir,
    )
    server.start()
    return server


def post_json(server: Server, store: Store, body: Any) -> tuple[int, Any]:
    status, raw = http(
        f"{server.base}/api/v1/messages",
        headers={**store.auth, "Content-Type": "application/json"},
        body=json.dumps(body).encode(),
    )
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw[:300]


def check_sends(server: Server, store: Store) -> None:
    """One single send and one batch must answer 202 with the message(s)."""
    status, data = post_json(server, store, ECHO_BODY)
    if status != 202 or not isinstance(data, dict) or "id" not in data:
        raise BenchError(f"a single send answered {status}: {data!r}")
    status, data = post_json(server, store, BATCH_BODY)
    if status != 202 or len(data.get("messages", [])) != BATCH_SIZE:
        raise BenchError(f"a {BATCH_SIZE}-recipient send answered {status}: {str(data)[:300]}")


def gateway_info(server: Server, store: Store) -> dict[str, Any]:
    status, raw = http(f"{server.base}/api/v1/gateways", headers=store.auth)
    if status != 200:
        raise BenchError(f"GET /api/v1/gateways answered {status}: {raw[:300]!r}")
    for g in json.loads(raw)["data"]:
        if g["name"] == GATEWAY:
            return dict(g)
    raise BenchError(f"gateway {GATEWAY!r} is not listed")


def wait_gateway_online(server: Server, store: Store, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = gateway_info(server, store)
        if info["status"] == "online":
            return
        time.sleep(0.2)
    raise BenchError(
        f"gateway {GATEWAY!r} not online after {timeout:.0f} s: {info}\n{server.log_tail()}"
    )


def sent_counter(server: Server, store: Store) -> int:
    return int(gateway_info(server, store)["counters"]["sent"])


def log_problems(server: Server) -> list[str]:
    """Warning, error and traceback lines in the server's output (it runs at log level
    warning, so anything it logs at all is worth a look)."""
    try:
        lines = server.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [
        line
        for line in lines
        if line.strip() and not line.startswith(("simgate ", "Log in at ", "INFO:"))
    ]


def check_log(server: Server, where: str, f: Findings) -> None:
    problems = log_problems(server)
    if not problems:
        print("  server log: no warnings or errors")
        return
    print(f"  server log: {len(problems)} line(s) at warning or above, e.g.:")
    for line in problems[:5]:
        print(f"    {line[:300]}")
    f.problems.append(f"{where}: {len(problems)} warning/error lines in {server.log_path.name}")


# --- throughput -----------------------------------------------------------------------------


@dataclass
class Load:
    target: Target
    per_request: int  # messages (rows) one request makes
    probe: Callable[[], int] | None = None  # the gateway's sent counter, around each run


@dataclass
class Run:
    res: WrkResult
    per_request: int
    wall: float
    sent: float = math.nan

    @property
    def ok(self) -> int:
        """Requests answered 2xx (wrk counts non-2xx in req/s too)."""
        return max(0, self.res.requests - self.res.non_2xx)

    @property
    def ok_rps(self) -> float:
        return self.res.rps * self.ok / max(self.res.requests, 1)

    @property
    def rate(self) -> float:
        """Messages (recipients, rows) per second."""
        return self.ok_rps * self.per_request

    @property
    def sent_rate(self) -> float:
        return self.sent / self.wall


def run_load(load: Load, *, duration: int, connections: int, cpu: int | None) -> Run:
    before = load.probe() if load.probe else 0
    t0 = time.monotonic()
    res = run_wrk(load.target, duration=duration, connections=connections, cpu=cpu)
    wall = time.monotonic() - t0
    sent = float(load.probe() - before) if load.probe else math.nan
    return Run(res, load.per_request, wall, sent)


def measure_loads(
    loads: list[Load], *, rounds: int, duration: int, connections: int, cpu: int | None
) -> tuple[dict[str, list[Run]], int]:
    """Warm-up (1 s each), then ``rounds`` rotating rounds. Also returns how many messages
    simgate answered 2xx for in all runs, warm-ups included."""
    accepted = 0
    for load in loads:
        warm = run_load(load, duration=1, connections=connections, cpu=cpu)
        if load.target.name in (SINGLE, BATCH):
            accepted += warm.ok * warm.per_request
    results: dict[str, list[Run]] = {load.target.name: [] for load in loads}
    for r in range(rounds):
        for load in rotated(loads, r):
            run = run_load(load, duration=duration, connections=connections, cpu=cpu)
            results[load.target.name].append(run)
            if load.target.name in (SINGLE, BATCH):
                accepted += run.ok * run.per_request
            res = run.res
            errors = res.non_2xx + res.socket_errors
            extra = f"  errors {errors}" if errors else ""
            if load.probe:
                extra += f"  gateway sent {run.sent_rate:6.0f}/s"
            print(
                f"  round {r + 1}/{rounds}  {load.target.name:<{WIDTH}} {res.rps:6.0f} req/s"
                f" {run.rate:7.0f} msgs/s  p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms"
                f"  CPU {res.cpu_us / run.per_request:5.0f} us/msg{extra}",
                flush=True,
            )
    return results, accepted


@dataclass
class Rates:
    rate: float  # median messages/s
    rate_min: float
    rate_max: float
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_msg: float
    errors: int
    sent_rate: float


def rates(runs: list[Run]) -> Rates:
    values = [r.rate for r in runs]
    return Rates(
        rate=statistics.median(values),
        rate_min=min(values),
        rate_max=max(values),
        rps=statistics.median(r.res.rps for r in runs),
        p50_ms=statistics.median(r.res.p50_ms for r in runs),
        p99_ms=statistics.median(r.res.p99_ms for r in runs),
        cpu_us_msg=statistics.median(r.res.cpu_us / r.per_request for r in runs),
        errors=sum(r.res.non_2xx + r.res.socket_errors for r in runs),
        sent_rate=statistics.median(r.sent_rate for r in runs),
    )


def verdict(value: float, target: float, *, above: bool = True) -> str:
    if math.isnan(value):
        return "n/a"
    if not above:
        return "met" if value < target else "NOT met"
    return ("met" if value >= target else "NOT met") + f" ({value / target:.0%} of it)"


def report_rates(title: str, results: dict[str, list[Run]], *, draining: bool) -> dict[str, Rates]:
    s = {name: rates(runs) for name, runs in results.items()}
    insert = s[INSERT].rate
    print(f"\n{title}")
    print(
        f"  {'endpoint':<{WIDTH}} {'req/s':>6} {'msgs/s':>7} {'(min-max)':>15} {'x /insert':>9}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'CPU us/msg':>10} {'errors':>6}"
        + (f" {'sent/s':>7} {'x /insert':>9}" if draining else "")
        + "  target"
    )
    for name, v in s.items():
        spread = f"({v.rate_min:.0f}-{v.rate_max:.0f})"
        line = (
            f"  {name:<{WIDTH}} {v.rps:6.0f} {v.rate:7.0f} {spread:>15} {v.rate / insert:9.2f}"
            f" {v.p50_ms:7.2f} {v.p99_ms:7.2f} {v.cpu_us_msg:10.0f} {v.errors:6d}"
        )
        if draining:
            if math.isnan(v.sent_rate):
                line += f" {'':>7} {'':>9}"
            else:
                line += f" {v.sent_rate:7.0f} {v.sent_rate / insert:9.2f}"
        if name == SINGLE:
            line += f"  >= {TARGET_SINGLE:,.0f} sends/s: {verdict(v.rate, TARGET_SINGLE)}"
        elif name == BATCH:
            line += f"  >= {TARGET_BATCH:,.0f} recipients/s: {verdict(v.rate, TARGET_BATCH)}"
        print(line)
    print(
        "  msgs/s: messages (for batches: recipients; for /insert: rows) answered 2xx per"
        " second; x /insert: that over the ceiling's /insert rows/s"
        + ("; sent/s: what the gateway sent during those runs" if draining else "")
    )
    return s


def backlog(counts: dict[str, int]) -> int:
    return sum(counts.get(k, 0) for k in UNFINISHED)


def passed(counts: dict[str, int]) -> int:
    return sum(counts.get(k, 0) for k in PASSED)


def show_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


# --- hand-over latency ----------------------------------------------------------------------


@dataclass
class Handover:
    post_ms: list[float] = field(default_factory=list)
    handover_ms: list[float] = field(default_factory=list)  # queued -> sending
    sent_ms: list[float] = field(default_factory=list)  # queued -> sent
    errors: list[str] = field(default_factory=list)
    unfinished: dict[str, int] = field(default_factory=dict)


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00"))


def _first(events: list[dict[str, Any]], status: str) -> datetime | None:
    return next((_at(e) for e in events if e["status"] == status), None)


def sample_handover(
    server: Server, store: Store, *, count: int, pause: float, wait: float = 60.0
) -> Handover:
    """Send ``count`` messages one at a time (each after the previous 202, then ``pause``),
    wait for each to leave the queue, and read the intervals off their events."""
    out = Handover()
    ids: list[str] = []
    with httpx.Client(base_url=server.base, headers=store.auth, timeout=10) as client:
        for _ in range(count):
            t0 = time.perf_counter()
            try:
                resp = client.post("/api/v1/messages", json=ECHO_BODY)
            except httpx.HTTPError as exc:
                out.errors.append(f"POST: {type(exc).__name__}: {exc}")
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status_code != 202:
                out.errors.append(f"POST answered {resp.status_code}: {resp.text[:200]}")
                continue
            out.post_ms.append(elapsed)
            ids.append(str(resp.json()["id"]))
            time.sleep(pause)
        deadline = time.monotonic() + wait
        for mid in ids:
            while True:
                resp = client.get(f"/api/v1/messages/{mid}")
                if resp.status_code != 200:
                    out.errors.append(f"GET {mid} answered {resp.status_code}: {resp.text[:200]}")
                    break
                data = resp.json()
                if data["status"] in FINAL or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if resp.status_code != 200:
                continue
            if data["status"] not in FINAL:
                out.unfinished[data["status"]] = out.unfinished.get(data["status"], 0) + 1
            events = data["events"]
            queued, sending, sent = (_first(events, s) for s in ("queued", "sending", "sent"))
            if queued is None:
                out.errors.append(f"{mid}: no queued event: {events}")
                continue
            if sending is not None:
                out.handover_ms.append((sending - queued).total_seconds() * 1000)
            if sent is not None:
                out.sent_ms.append((sent - queued).total_seconds() * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def report_handover(title: str, h: Handover, count: int) -> float:
    """Print the sample; return the hand-over p99 in ms."""
    print(f"  {title}")
    rows = [
        ("POST answered (at client)", h.post_ms, ""),
        ("queued -> sending (hand-over)", h.handover_ms, "handover"),
        ("queued -> sent", h.sent_ms, ""),
    ]
    for label, values, kind in rows:
        p99 = pct(values, 0.99)
        line = (
            f"    {label:<30} n {len(values):4d}  p50 {pct(values, 0.5):7.2f} ms"
            f"  p99 {p99:7.2f} ms  max {max(values, default=math.nan):7.2f} ms"
        )
        if kind == "handover":
            line += f"  target p99 < {TARGET_HANDOVER_P99:.0f} ms: " + verdict(
                p99, TARGET_HANDOVER_P99, above=False
            )
        print(line)
    if len(h.handover_ms) < count:
        print(f"    note: {count - len(h.handover_ms)} of {count} messages have no hand-over time")
    if h.unfinished:
        print(f"    STUCK: not sent within the wait: {show_counts(h.unfinished)}")
    for error in h.errors[:5]:
        print(f"    error: {error}")
    if len(h.errors) > 5:
        print(f"    ... {len(h.errors) - 5} more errors")
    return pct(h.handover_ms, 0.99)


# --- one backend ----------------------------------------------------------------------------


@dataclass
class Options:
    rounds: int
    duration: int
    connections: int
    wrk_cpu: int | None
    server_cpu: int | None
    latency_count: int
    pause: float
    background_rate: float
    background_connections: int
    drain_wait: float
    parts: str = "abc"


@dataclass
class Findings:
    """What goes into the final summary, per backend."""

    queue: dict[str, Rates] = field(default_factory=dict)
    drain: dict[str, Rates] = field(default_factory=dict)
    drain_loaded: float = math.nan  # messages sent per second over phase (b)
    drain_after: float = math.nan  # messages sent per second once the load stopped
    sent_share: float = math.nan  # sent by the end of phase (b) / accepted
    insert_queue: float = math.nan
    insert_drain: float = math.nan
    handover_idle: float = math.nan
    handover_loaded: float = math.nan
    background_rate: float = math.nan
    problems: list[str] = field(default_factory=list)


def throughput_loads(
    server: Server, store: Store, ceiling: Server, tmpdir: Path, *, draining: bool
) -> list[Load]:
    probe = (lambda: sent_counter(server, store)) if draining else None
    headers = store.auth
    return [
        Load(
            Target(
                SINGLE,
                server,
                "/api/v1/messages",
                headers=headers,
                script=post_script(tmpdir, ECHO_BODY, name="post_single.lua"),
            ),
            1,
            probe,
        ),
        Load(
            Target(
                BATCH,
                server,
                "/api/v1/messages",
                headers=headers,
                script=post_script(tmpdir, BATCH_BODY, name="post_batch.lua"),
            ),
            BATCH_SIZE,
            probe,
        ),
        Load(
            Target(INSERT, ceiling, "/insert", script=post_script(tmpdir, name="post_insert.lua")),
            1,
        ),
        Load(Target(ECHO, ceiling, "/echo", script=post_script(tmpdir)), 1),
    ]


def errors_probe(
    server: Server, store: Store, results: dict[str, list[Run]], where: str, f: Findings
) -> None:
    """When wrk saw errors, show what a send answers now."""
    for name in (SINGLE, BATCH):
        runs = results.get(name, [])
        non_2xx = sum(r.res.non_2xx for r in runs)
        sockets = sum(r.res.socket_errors for r in runs)
        if non_2xx or sockets:
            f.problems.append(
                f"{where}: {name}: {non_2xx} non-2xx answers, {sockets} socket errors"
            )
    if any(r.res.non_2xx or r.res.socket_errors for runs in results.values() for r in runs):
        status, data = post_json(server, store, ECHO_BODY)
        print(f"  wrk saw errors; a single send now answers {status}: {str(data)[:300]}")


def phase_queue(
    db: Database, processes: Processes, tmpdir: Path, ceiling: Server, opts: Options, f: Findings
) -> None:
    store = new_store(db, tmpdir, "queue", gateway=False)
    server = start_simgate(
        processes, store, tmpdir, f"simgate-{db.label.lower()}-queue", opts.server_cpu
    )
    title = f"{db.label}, (a) no gateway online: the messages only queue"
    print(f"\n{title}: simgate on :{server.port}", flush=True)
    check_sends(server, store)
    loads = throughput_loads(server, store, ceiling, tmpdir, draining=False)
    results, accepted = measure_loads(
        loads,
        rounds=opts.rounds,
        duration=opts.duration,
        connections=opts.connections,
        cpu=opts.wrk_cpu,
    )
    accepted += 1 + BATCH_SIZE  # check_sends
    errors_probe(server, store, results, f"{db.label} (a)", f)
    counts = store.counts()
    f.queue = report_rates(f"Results, {title}:", results, draining=False)
    f.insert_queue = f.queue[INSERT].rate
    total = sum(counts.values())
    print(
        f"  in the database: {total:,} messages ({show_counts(counts)}); wrk counted "
        f"{accepted:,} answered 202 (requests in flight when wrk stops are not counted)"
    )
    if total < accepted:
        f.problems.append(f"{db.label} (a): {accepted - total:,} messages answered 202 are missing")
        print(f"  PROBLEM: {accepted - total:,} messages answered 202 are not in the database")
    if set(counts) - {"queued"}:
        f.problems.append(f"{db.label} (a): statuses other than queued: {show_counts(counts)}")
    check_log(server, f"{db.label} (a)", f)
    server.stop()


def phase_drain(
    db: Database, processes: Processes, tmpdir: Path, ceiling: Server, opts: Options, f: Findings
) -> None:
    store = new_store(db, tmpdir, "drain", gateway=True)
    server = start_simgate(
        processes, store, tmpdir, f"simgate-{db.label.lower()}-drain", opts.server_cpu
    )
    title = f"{db.label}, (b) fake gateway {GATEWAY} draining concurrently"
    print(f"\n{title}: simgate on :{server.port}", flush=True)
    wait_gateway_online(server, store)
    check_sends(server, store)
    loads = throughput_loads(server, store, ceiling, tmpdir, draining=True)
    t0 = time.monotonic()
    sent0 = passed(store.counts())
    results, _ = measure_loads(
        loads,
        rounds=opts.rounds,
        duration=opts.duration,
        connections=opts.connections,
        cpu=opts.wrk_cpu,
    )
    end = store.counts()
    t1 = time.monotonic()
    errors_probe(server, store, results, f"{db.label} (b)", f)
    f.drain = report_rates(f"Results, {title}:", results, draining=True)
    insert = f.insert_drain = f.drain[INSERT].rate
    accepted = sum(end.values())
    done = passed(end)
    left = backlog(end)
    f.drain_loaded = (done - sent0) / (t1 - t0)
    f.sent_share = done / max(accepted, 1)
    print(
        f"  by the end of the rounds ({t1 - t0:.0f} s incl. warm-ups; simgate loaded about"
        f" half of it, the ceiling the rest): {accepted:,} accepted, {done:,} sent"
        f" ({done / max(accepted, 1):.0%}), {left:,} still queued or sending"
    )
    print(
        f"  drain rate over the rounds: {f.drain_loaded:,.0f} sent/s"
        f" ({f.drain_loaded / insert:.2f} x /insert); all statuses: {show_counts(end)}"
    )
    # Then let it drain with no load, bounded.
    t2 = time.monotonic()
    counts = end
    while backlog(counts) and time.monotonic() - t2 < opts.drain_wait:
        time.sleep(1.0)
        counts = store.counts()
    t3 = time.monotonic()
    drained = passed(counts) - done
    f.drain_after = drained / (t3 - t2) if t3 > t2 else math.nan
    if backlog(counts):
        print(
            f"  after the load stopped: {drained:,} more sent in {t3 - t2:.0f} s"
            f" ({f.drain_after:,.0f}/s = {f.drain_after / insert:.2f} x /insert);"
            f" NOT drained within --drain-wait {opts.drain_wait:.0f} s: {show_counts(counts)}"
        )
    elif drained:
        print(
            f"  after the load stopped: the remaining {drained:,} were sent in {t3 - t2:.1f} s"
            f" ({f.drain_after:,.0f}/s = {f.drain_after / insert:.2f} x /insert, no ingest"
            f" competing); now {show_counts(counts)}"
        )
    failed = counts.get("failed", 0)
    if failed:
        f.problems.append(f"{db.label} (b): {failed:,} messages failed on the fake gateway")
    check_log(server, f"{db.label} (b)", f)
    server.stop()


def phase_latency(
    db: Database, processes: Processes, tmpdir: Path, opts: Options, f: Findings
) -> None:
    store = new_store(db, tmpdir, "latency", gateway=True)
    server = start_simgate(
        processes, store, tmpdir, f"simgate-{db.label.lower()}-latency", opts.server_cpu
    )
    title = f"{db.label}, (c) hand-over latency with fake gateway {GATEWAY}"
    print(f"\n{title}: simgate on :{server.port}", flush=True)
    wait_gateway_online(server, store)
    sample_handover(server, store, count=20, pause=opts.pause)  # warm-up, not reported
    n = opts.latency_count
    pause_text = f"{opts.pause * 1000:.0f} ms pause"
    idle = sample_handover(server, store, count=n, pause=opts.pause)
    f.handover_idle = report_handover(
        f"idle server: {n} messages one at a time ({pause_text} after each 202):", idle, n
    )
    if idle.unfinished:
        f.problems.append(f"{db.label} (c) idle: stuck {show_counts(idle.unfinished)}")

    # A paced background load: each of c connections waits about c/rate s before each
    # request, less the answer time, which a 2 s calibration run measures.
    c = opts.background_connections
    cycle_ms = c * 1000 / opts.background_rate
    target = Target(
        "background",
        server,
        "/api/v1/messages",
        headers=store.auth,
        script=post_script(tmpdir, ECHO_BODY, name="post_paced.lua", delay_ms=cycle_ms),
    )
    cal = run_wrk(target, duration=2, connections=c, cpu=opts.wrk_cpu)
    answer_ms = max(0.0, c * 1000 / max(cal.requests / cal.seconds, 1e-3) - cycle_ms)
    delay_ms = max(0.0, cycle_ms - answer_ms)
    target.script = post_script(tmpdir, ECHO_BODY, name="post_paced.lua", delay_ms=delay_ms)
    argv = wrk_argv(target, duration=3600, connections=c, cpu=opts.wrk_cpu)
    wrk_log = tmpdir / f"wrk-background-{db.label.lower()}.log"
    before = store.counts()
    proc = processes.spawn(argv, log=wrk_log)
    try:
        time.sleep(1.0)
        loaded = sample_handover(server, store, count=n, pause=opts.pause)
    finally:
        stop_process(proc, first=signal.SIGINT)  # wrk prints its summary on SIGINT
    after = store.counts()
    bg: WrkResult | None = None
    with contextlib.suppress(OSError, ValueError):
        bg = parse_wrk(wrk_log.read_text(errors="replace"))
    if bg is None:
        bg_text = f"could not read wrk's summary ({wrk_log})"
    else:
        f.background_rate = (bg.requests - bg.non_2xx) / bg.seconds
        bg_text = (
            f"{f.background_rate:.0f} sends/s answered 202 ({c} connections, each pausing"
            f" {delay_ms:.0f} ms on average), p50 {bg.p50_ms:.2f} ms, p99 {bg.p99_ms:.2f} ms,"
            f" errors {bg.non_2xx + bg.socket_errors}"
        )
    f.handover_loaded = report_handover(
        f"under a background load of ~{opts.background_rate:.0f} sends/s: {bg_text}",
        loaded,
        n,
    )
    print(
        f"    queue at the start of the load: {backlog(before):,} queued or sending; right after"
        f" it: {backlog(after):,} ({show_counts(after)})"
    )
    if bg is not None and bg.non_2xx + bg.socket_errors:
        f.problems.append(
            f"{db.label} (c): background load: {bg.non_2xx} non-2xx answers,"
            f" {bg.socket_errors} socket errors"
        )
    for h in (idle, loaded):
        if h.errors:
            f.problems.append(f"{db.label} (c): {len(h.errors)} errors, e.g. {h.errors[0]}")
    if loaded.unfinished:
        f.problems.append(f"{db.label} (c) loaded: stuck {show_counts(loaded.unfinished)}")
    check_log(server, f"{db.label} (c)", f)
    server.stop()


def run_backend(
    db: Database, processes: Processes, tmpdir: Path, ceiling: Server, opts: Options
) -> Findings:
    f = Findings()
    phases: list[tuple[str, Callable[[], None]]] = [
        ("(a)", lambda: phase_queue(db, processes, tmpdir, ceiling, opts, f)),
        ("(b)", lambda: phase_drain(db, processes, tmpdir, ceiling, opts, f)),
        ("(c)", lambda: phase_latency(db, processes, tmpdir, opts, f)),
    ]
    for name, phase in phases:
        if name.strip("()") not in opts.parts:
            continue
        try:
            phase()
        except (BenchError, httpx.HTTPError) as exc:
            f.problems.append(f"{db.label} {name}: {exc}")
            print(f"\nerror in {db.label} {name}: {exc}; going on with the next part", flush=True)
    return f


# --- summary --------------------------------------------------------------------------------


def summary(findings: dict[str, Findings]) -> None:
    labels = list(findings)
    if not labels:
        print("\nNothing measured (no backend left to run).")
        return
    print("\nSummary (medians; x /insert: over the ceiling's /insert rows/s in the same phase)")
    print(f"  {'':<38}" + "".join(f" {label:>20}" for label in labels) + "  target")

    def row(label: str, values: list[tuple[float, float]], target: str, unit: str = "") -> None:
        cells = "".join(
            f" {'-':>20}"
            if math.isnan(v)
            else f" {f'{v:,.0f}{unit}' + (f' ({v / ref:.2f}x)' if not math.isnan(ref) else ''):>20}"
            for v, ref in values
        )
        print(f"  {label:<38}{cells}  {target}")

    def ms(label: str, values: list[float], target: str) -> None:
        cells = "".join(f" {'-' if math.isnan(v) else f'{v:.2f} ms':>20}" for v in values)
        print(f"  {label:<38}{cells}  {target}")

    def get(f: Findings, part: str, name: str) -> float:
        table = f.queue if part == "queue" else f.drain
        return table[name].rate if name in table else math.nan

    row(
        "single sends/s, queue only",
        [(get(f, "queue", SINGLE), f.insert_queue) for f in findings.values()],
        ">= 0.5x SQLite, 0.4x PostgreSQL",
    )
    ms(
        "single sends p99, queue only",
        [f.queue[SINGLE].p99_ms if SINGLE in f.queue else math.nan for f in findings.values()],
        "< 20 ms",
    )
    row(
        "recipients/s in batches, queue only",
        [(get(f, "queue", BATCH), f.insert_queue) for f in findings.values()],
        f">= {TARGET_BATCH:,.0f}",
    )
    row(
        "single sends/s, gateway draining",
        [(get(f, "drain", SINGLE), f.insert_drain) for f in findings.values()],
        f">= {TARGET_SINGLE:,.0f}",
    )
    row(
        "recipients/s in batches, draining",
        [(get(f, "drain", BATCH), f.insert_drain) for f in findings.values()],
        f">= {TARGET_BATCH:,.0f}",
    )
    row(
        "sent/s while loaded (whole phase b)",
        [(f.drain_loaded, f.insert_drain) for f in findings.values()],
        "",
    )
    row(
        "sent/s once the load stopped",
        [(f.drain_after, f.insert_drain) for f in findings.values()],
        ">= 2,000 SQLite, 1,000 PostgreSQL",
    )
    cells = "".join(
        f" {'-' if math.isnan(f.sent_share) else f'{f.sent_share:.0%}':>20}"
        for f in findings.values()
    )
    print(f"  {'sent by the end of b / accepted':<38}{cells}")
    row(
        "/insert rows/s (ceiling), phase a",
        [(f.insert_queue, math.nan) for f in findings.values()],
        "",
    )

    ms(
        "hand-over p99, idle",
        [f.handover_idle for f in findings.values()],
        f"< {TARGET_HANDOVER_P99:.0f} ms",
    )
    ms(
        "hand-over p99, under background load",
        [f.handover_loaded for f in findings.values()],
        f"< {TARGET_HANDOVER_P99:.0f} ms",
    )
    row(
        "  background load reached, sends/s",
        [(f.background_rate, math.nan) for f in findings.values()],
        "",
    )
    problems = [p for f in findings.values() for p in f.problems]
    if problems:
        print("\nProblems seen:")
        for p in problems:
            print(f"  - {p}")


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument(
        "--pin", action="store_true", help="pin wrk to CPU 0 and the servers to CPU 1 (taskset)"
    )
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql (default both)",
    )
    parser.add_argument(
        "--pg",
        default=DEFAULT_PG,
        help=f"PostgreSQL to create the throwaway databases on (default {DEFAULT_PG})",
    )
    parser.add_argument(
        "--latency-count", type=int, default=300, help="messages per latency sample (300)"
    )
    parser.add_argument(
        "--pause-ms", type=float, default=10.0, help="pause after each 202 in a sample (10)"
    )
    parser.add_argument(
        "--background-rate", type=float, default=500.0, help="background sends/s (500)"
    )
    parser.add_argument(
        "--background-connections",
        type=int,
        default=32,
        help="wrk connections for the background load (32)",
    )
    parser.add_argument(
        "--drain-wait",
        type=float,
        default=30.0,
        help="seconds to let the backlog drain after the load (30)",
    )
    parser.add_argument(
        "--parts",
        default="abc",
        help="which parts to run: a (queue only), b (draining), c (hand-over); default abc",
    )
    args = parser.parse_args()
    if not args.parts or set(args.parts) - set("abc"):
        sys.exit("error: --parts: give some of a, b and c, e.g. --parts c")
    backends = [b.strip().lower() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        sys.exit(f"error: --backends: unknown {', '.join(sorted(unknown))}")
    check_tools(pin=args.pin)
    wrk_cpu, server_cpu = (0, 1) if args.pin else (None, None)
    opts = Options(
        rounds=args.rounds,
        duration=args.duration,
        connections=args.connections,
        wrk_cpu=wrk_cpu,
        server_cpu=server_cpu,
        latency_count=args.latency_count,
        pause=args.pause_ms / 1000,
        background_rate=args.background_rate,
        background_connections=args.background_connections,
        drain_wait=args.drain_wait,
        parts=args.parts,
    )

    install_signal_handlers()
    processes = Processes()
    databases: list[Database] = []
    try:
        with tempfile.TemporaryDirectory(prefix="simgate-bench-") as tmp:
            try:
                run_all(args, opts, backends, processes, databases, Path(tmp))
            finally:  # before the directory goes: the servers write into it
                processes.stop_all()
                for db in databases:
                    db.cleanup()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


def run_all(
    args: argparse.Namespace,
    opts: Options,
    backends: list[str],
    processes: Processes,
    databases: list[Database],
    tmpdir: Path,
) -> None:
    machine_info()
    print(
        f"wrk: 1 thread, {args.connections} connections, {args.rounds} alternating "
        f"rounds x {args.duration}s per endpoint after a 1 s warm-up, medians reported;"
        " loopback only; simgate at log level warning, access log off",
        flush=True,
    )
    if "sqlite" in backends:
        databases.append(SQLite())
    if "postgresql" in backends:
        why = PostgreSQL.unreachable(args.pg)
        if why is None:
            version = pg_fetch(args.pg, "SHOW server_version")[0][0][0]
            print(f"PostgreSQL {version} at {redacted(args.pg)}")
            databases.append(PostgreSQL(args.pg))
        else:
            print(
                f"PostgreSQL at {redacted(args.pg)} is unreachable ({why}); "
                "skipping the PostgreSQL figures"
            )
    ceiling = start_ceiling(processes, tmpdir, opts.server_cpu)
    findings: dict[str, Findings] = {}
    for db in databases:
        findings[db.label] = run_backend(db, processes, tmpdir, ceiling, opts)
    summary(findings)


if __name__ == "__main__":
    sys.exit(main())
