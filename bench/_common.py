"""Pieces the benchmark scripts share: child servers, wrk runs and their parsing, the
ceiling app, machine info and the simgate CLI.

Not a benchmark itself; the scripts beside it import it (``bench/`` is their ``sys.path[0]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CEILING = (REPO / ".." / "shared" / "bench" / "ceiling.py").resolve()
ECHO_BODY = {"to": "+4915112345678", "body": "Your code is 123456"}
START_TIMEOUT = 60.0
CLI_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0
MAX_RESTARTS = 3  # per server, when something outside this script kills it mid-run

T = TypeVar("T")


# --- processes ------------------------------------------------------------------------------


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    """``argv`` under taskset (which execs it, so the pid stays the server's)."""
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http(
    url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback http)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc; NaN elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text[text.rindex(")") + 2 :].split()  # fields 3.. of proc(5)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen[bytes] | None, *, first: int = signal.SIGTERM) -> None:
    """Stop a child started in its own session: ``first`` to its group, SIGKILL after
    STOP_TIMEOUT. Only ever our own children, never anything found by name."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, first)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class Server:
    """A child HTTP server on a free loopback port, in its own session (so a Ctrl-C in the
    terminal reaches only us, and we stop its whole group). Restartable, on a new port, for
    when something outside this script kills it."""

    def __init__(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        *,
        env: dict[str, str],
        ready_path: str,
        log_dir: Path,
    ) -> None:
        self.name = name
        self._argv = argv
        self._env = env
        self._ready_path = ready_path
        self._log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = log_dir / f"{name}.log"
        self.restarts = -1

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else -1

    def died(self) -> int | None:
        """The exit code if the server has stopped on its own, else None."""
        return self.proc.poll() if self.proc is not None else None

    def start(self) -> None:
        self.stop()
        self.restarts += 1
        self.port = free_port()
        self.log_path = self._log_dir / f"{self.name}-{self.port}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self._argv(self.port),
                env=self._env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        url = self.base + self._ready_path
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(
                    f"error: {self.name} exited with {self.proc.returncode} before answering "
                    f"{url}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        sys.exit(f"error: {url} did not answer within {START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc)


class Processes:
    """Every child this script starts, so that all of them (and only they) are stopped on
    exit, Ctrl-C or error."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self._others: list[subprocess.Popen[bytes]] = []

    def server(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        *,
        env: dict[str, str],
        ready_path: str,
        log_dir: Path,
    ) -> Server:
        """A new (not yet started) server, stopped by ``stop_all``."""
        server = Server(name, argv, env=env, ready_path=ready_path, log_dir=log_dir)
        self.servers.append(server)
        return server

    def simgate(
        self, name: str, *, env: dict[str, str], log_dir: Path, ready_path: str = "/healthz"
    ) -> Server:
        """A new (not yet started) ``simgate serve`` on a free port, with ``env``."""
        return self.server(
            name,
            lambda port: [str(BIN / "simgate"), "serve", "--port", str(port)],
            env=env,
            ready_path=ready_path,
            log_dir=log_dir,
        )

    def spawn(self, argv: list[str], *, log: Path) -> subprocess.Popen[bytes]:
        """A background child in its own session, output to ``log``."""
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._others.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self._others):
            stop_process(proc)
        for server in reversed(self.servers):
            server.stop()


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """Ctrl-C must reach us even when started with SIGINT ignored (e.g. a background job);
    SIGTERM and SIGHUP unwind through ``finally`` blocks, so the children are stopped."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)


# --- wrk ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    server: Server  # its CPU time is read around each run
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    script: Path | None = None


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    cpu_us: float = math.nan  # server CPU time (all threads) per request
    seconds: float = math.nan  # wall time of the run, as wrk reports it


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    count = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and count and p50 and p99):
        raise ValueError("could not parse wrk output:\n" + output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        rps=float(rps.group(1)),
        requests=int(count.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        seconds=float(count.group(2)) * _UNITS_S[count.group(3)],
    )


def wrk_argv(
    target: Target,
    *,
    duration: int,
    connections: int,
    cpu: int | None,
    timeout: str = "5s",
) -> list[str]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", timeout]
    for name, value in target.headers.items():
        argv += ["-H", f"{name}: {value}"]
    if target.script is not None:
        argv += ["-s", str(target.script)]
    return pinned([*argv, target.server.base + target.path], cpu)


def run_wrk(target: Target, *, duration: int, connections: int, cpu: int | None) -> WrkResult:
    """One wrk run; if the server died meanwhile, restart it and run again."""
    server = target.server
    while True:
        argv = wrk_argv(target, duration=duration, connections=connections, cpu=cpu)
        cpu_before = cpu_seconds(server.pid)
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + 30, check=False
        )
        cpu_used = cpu_seconds(server.pid) - cpu_before
        code = server.died()
        if code is None and done.returncode == 0:
            result = parse_wrk(done.stdout)
            result.cpu_us = cpu_used / max(result.requests, 1) * 1e6
            return result
        if code is None:
            sys.exit(f"error: wrk failed on {target.name}: {(done.stderr or done.stdout).strip()}")
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if server.restarts >= MAX_RESTARTS:
            sys.exit(
                f"error: {server.name} stopped during {target.name} ({how}), "
                f"{server.restarts} restarts already; its output ends with:\n{server.log_tail()}"
            )
        print(
            f"  note: {server.name} stopped during {target.name} ({how}; not sent by this "
            "script); restarting it and repeating the run",
            flush=True,
        )
        server.start()
        warm = wrk_argv(target, duration=1, connections=connections, cpu=cpu)
        subprocess.run(warm, capture_output=True, timeout=30, check=False)


def post_script(
    directory: Path,
    body: Any = None,
    *,
    name: str = "post_echo.lua",
    delay_ms: float | None = None,
) -> Path:
    """A wrk Lua script that POSTs ``body`` (default: ECHO_BODY) as JSON; with ``delay_ms``,
    each connection waits that long on average (uniformly 0.5-1.5 times, so the connections
    do not stay in step) before each request: a rough rate limit."""
    path = directory / name
    text = json.dumps(ECHO_BODY if body is None else body)
    script = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(text)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    if delay_ms is not None:
        low, high = round(max(0.0, delay_ms) * 0.5), round(max(0.0, delay_ms) * 1.5)
        script += (
            "math.randomseed(os.time())\n"
            f"function delay()\n  return math.random({low}, {high})\nend\n"
        )
    path.write_text(script)
    return path


def measure(
    targets: list[Target],
    *,
    rounds: int,
    duration: int,
    connections: int,
    cpu: int | None,
    width: int = 22,
) -> dict[str, list[WrkResult]]:
    """Warm each target up, then ``rounds`` rounds, rotating the order every round."""
    for t in targets:
        run_wrk(t, duration=1, connections=connections, cpu=cpu)
    results: dict[str, list[WrkResult]] = {t.name: [] for t in targets}
    for r in range(rounds):
        for t in rotated(targets, r):
            res = run_wrk(t, duration=duration, connections=connections, cpu=cpu)
            results[t.name].append(res)
            print(
                f"  round {r + 1}/{rounds}  {t.name:<{width}} {res.rps:7.0f} req/s"
                f"  p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms"
                f"  server CPU {res.cpu_us:5.0f} us/req",
                flush=True,
            )
    return results


def rotated(items: list[T], r: int) -> list[T]:
    """``items`` rotated left by ``r`` (the order of round ``r``)."""
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


# --- report ---------------------------------------------------------------------------------


@dataclass
class Summary:
    rps: float
    rps_min: float
    rps_max: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    errors: int


def summarise(runs: list[WrkResult]) -> Summary:
    rps = [r.rps for r in runs]
    return Summary(
        rps=statistics.median(rps),
        rps_min=min(rps),
        rps_max=max(rps),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        cpu_us=statistics.median(r.cpu_us for r in runs),
        errors=sum(r.non_2xx + r.socket_errors for r in runs),
    )


def machine_info() -> None:
    load = os.getloadavg()
    wrk_version = subprocess.run(
        ["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    first = (wrk_version.stdout or wrk_version.stderr).splitlines()
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    nproc = os.cpu_count() or 1
    print(
        f"machine: nproc {nproc}, {cpu_model or platform.machine()}, "
        f"load average {' '.join(f'{x:.2f}' for x in load)}"
    )
    print(f"python {platform.python_version()} ({sys.executable}); {first[0] if first else 'wrk'}")
    if load[0] > 0.5 * nproc:
        print(
            "warning: the machine is busy (load average above half the CPUs); req/s will be "
            "noisy, server CPU per request less so"
        )


def check_tools(*, pin: bool) -> None:
    """Exit with a hint when wrk, the ceiling app or (for ``pin``) taskset is missing."""
    if shutil.which("wrk") is None:
        sys.exit(
            "error: wrk is not installed; install it with 'apt-get install wrk' "
            "(or run 'make bench' as root, which does that)"
        )
    if not CEILING.is_file():
        sys.exit(f"error: the ceiling app is missing: {CEILING}")
    if pin and ((os.cpu_count() or 1) < 2 or shutil.which("taskset") is None):
        sys.exit("error: --pin needs two CPUs and taskset")


def start_ceiling(processes: Processes, tmpdir: Path, cpu: int | None) -> Server:
    """The ceiling app (POST /echo, POST /insert into its own SQLite file), started and
    checked."""
    ceiling_db = str(tmpdir / "ceiling.db")
    ceiling = processes.server(
        "ceiling",
        lambda port: pinned(
            [sys.executable, str(CEILING), "--port", str(port), "--db", ceiling_db], cpu
        ),
        env=dict(os.environ),
        ready_path="/openapi.json",  # the ceiling has no GET route of its own
        log_dir=tmpdir,
    )
    ceiling.start()
    status, _ = http(
        f"{ceiling.base}/echo",
        headers={"Content-Type": "application/json"},
        body=json.dumps(ECHO_BODY).encode(),
    )
    if status != 202:
        sys.exit(f"error: ceiling POST /echo answered {status}, expected 202")
    return ceiling


INSERT_BODY = {"to": "+4915112345678", "body": "Your code is 123456"}


def ceiling_insert_rps(processes: Processes, tmpdir: Path) -> float:
    """Requests a second the ceiling app's ``POST /insert`` (one SQLite row each) makes: the
    figure throughput elsewhere is given as a ratio of."""
    ceiling = start_ceiling(processes, tmpdir, None)
    script = post_script(tmpdir, INSERT_BODY, name="post_insert.lua")
    insert = run_wrk(
        Target("ceiling /insert", ceiling, "/insert", script=script),
        duration=5,
        connections=50,
        cpu=None,
    )
    return insert.rps


# --- simgate --------------------------------------------------------------------------------


def simgate_env(
    data_dir: Path, *, access_log: bool, database_url: str | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMGATE_")}
    env.update(
        SIMGATE_DATA_DIR=str(data_dir),
        # The access log writes at info; with it off, warning keeps the server quiet.
        SIMGATE_ACCESS_LOG="true" if access_log else "false",
        SIMGATE_LOG_LEVEL="info" if access_log else "warning",
    )
    if database_url is not None:
        env["SIMGATE_DATABASE_URL"] = database_url
    return env


def run_cli(env: dict[str, str], *args: str) -> str:
    """Run ``simgate ARGS`` with ``env``; its standard output, or exit naming the failure."""
    done = subprocess.run(
        [str(BIN / "simgate"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"error: 'simgate {' '.join(args)}' failed: {done.stderr.strip()}")
    return done.stdout


def create_key(data_dir: Path, *, database_url: str | None = None) -> str:
    """Create the app ``bench`` with the real CLI; its API key (printed on the last line)."""
    env = simgate_env(data_dir, access_log=False, database_url=database_url)
    out = run_cli(env, "app", "create", "bench")
    return out.strip().splitlines()[-1].strip()


# --- helpers for figures and databases -----------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def pg_database(admin_url: str, purpose: str) -> str | None:
    """A fresh database on the server ``admin_url`` reaches; its URL, or None."""
    import asyncpg

    name = f"simgate_bench_{purpose}_{os.getpid()}"

    async def make() -> None:
        conn = await asyncpg.connect(admin_url, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        asyncio.run(make())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(admin_url, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        asyncio.run(drop())
