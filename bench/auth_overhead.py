"""What the API-key check costs: simgate's /healthz against /api/v1/me, under wrk.

Starts a throwaway simgate (SQLite in a temp data directory, key made with the real CLI) and
the bare-FastAPI ceiling app (../shared/bench/ceiling.py), loads them on loopback with
``wrk`` in alternating rounds, and prints the median requests/s, latency and server CPU time
per request for each endpoint, each simgate figure as a ratio of the ceiling's POST /echo,
and the authentication overhead ``1 - rps(/api/v1/me) / rps(/healthz)``. Then the same once
more with the access log on.

It prints figures and never asserts on them: timings depend on the machine and its load.

    .venv/bin/python bench/auth_overhead.py [--rounds 3] [--duration 5] [--connections 24]
"""

from __future__ import annotations

import argparse
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
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CEILING = (REPO / ".." / "shared" / "bench" / "ceiling.py").resolve()
ECHO_BODY = {"to": "+4915112345678", "body": "Your code is 123456"}
TARGET_OVERHEAD = 5.0  # percent, from the issue
START_TIMEOUT = 60.0
CLI_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0
MAX_RESTARTS = 3  # per server, when something outside this script kills it mid-run

HEALTHZ = "GET /healthz"
ME = "GET /api/v1/me"
ECHO = "POST /echo (ceiling)"


# --- servers --------------------------------------------------------------------------------


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
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


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


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    count = re.search(r"^\s*(\d+) requests in", output, re.M)
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
    )


def wrk_argv(target: Target, *, duration: int, connections: int, cpu: int | None) -> list[str]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
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


def post_script(directory: Path) -> Path:
    path = directory / "post_echo.lua"
    body = json.dumps(ECHO_BODY)
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return path


def measure(
    targets: list[Target], *, rounds: int, duration: int, connections: int, cpu: int | None
) -> dict[str, list[WrkResult]]:
    """Warm each target up, then ``rounds`` rounds, rotating the order every round."""
    for t in targets:
        run_wrk(t, duration=1, connections=connections, cpu=cpu)
    results: dict[str, list[WrkResult]] = {t.name: [] for t in targets}
    for r in range(rounds):
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        for t in order:
            res = run_wrk(t, duration=duration, connections=connections, cpu=cpu)
            results[t.name].append(res)
            print(
                f"  round {r + 1}/{rounds}  {t.name:<22} {res.rps:7.0f} req/s"
                f"  p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms"
                f"  server CPU {res.cpu_us:5.0f} us/req",
                flush=True,
            )
    return results


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


def report(title: str, results: dict[str, list[WrkResult]]) -> tuple[float, float]:
    """Print the table; return the overhead from req/s and from server CPU per request."""
    s = {name: summarise(runs) for name, runs in results.items()}
    ceiling = s[ECHO].rps
    print(f"\n{title}")
    print(
        f"  {'endpoint':<22} {'req/s':>7} {'(min-max)':>13} {'vs ceiling':>10}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'errors':>6}"
    )
    for name, v in s.items():
        spread = f"({v.rps_min:.0f}-{v.rps_max:.0f})"
        print(
            f"  {name:<22} {v.rps:7.0f} {spread:>13} {v.rps / ceiling:10.2f}"
            f" {v.p50_ms:7.2f} {v.p99_ms:7.2f} {v.cpu_us:10.0f} {v.errors:6d}"
        )
    overhead = (1 - s[ME].rps / s[HEALTHZ].rps) * 100
    cpu_overhead = (1 - s[HEALTHZ].cpu_us / s[ME].cpu_us) * 100
    verdict = "under" if overhead < TARGET_OVERHEAD else "ABOVE"
    print(
        f"  API-key check overhead: 1 - rps(/api/v1/me)/rps(/healthz) = {overhead:.1f}%"
        f"  ({verdict} the {TARGET_OVERHEAD:.0f}% target)"
    )
    print(
        f"  same from server CPU per request: 1 - cpu(/healthz)/cpu(/api/v1/me) = "
        f"{cpu_overhead:.1f}%  (+{s[ME].cpu_us - s[HEALTHZ].cpu_us:.0f} us per request)"
    )
    return overhead, cpu_overhead


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


# --- simgate --------------------------------------------------------------------------------


def simgate_env(data_dir: Path, *, access_log: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMGATE_")}
    env.update(
        SIMGATE_DATA_DIR=str(data_dir),
        # The access log writes at info; with it off, warning keeps the server quiet.
        SIMGATE_ACCESS_LOG="true" if access_log else "false",
        SIMGATE_LOG_LEVEL="info" if access_log else "warning",
    )
    return env


def create_key(data_dir: Path) -> str:
    done = subprocess.run(
        [str(BIN / "simgate"), "app", "create", "bench"],
        env=simgate_env(data_dir, access_log=False),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"error: 'simgate app create bench' failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1].strip()


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=24, help="wrk connections (24)")
    parser.add_argument(
        "--pin", action="store_true", help="pin wrk to CPU 0 and the servers to CPU 1 (taskset)"
    )
    parser.add_argument(
        "--skip-access-log", action="store_true", help="skip the run with the access log on"
    )
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        sys.exit(
            "error: wrk is not installed; install it with 'apt-get install wrk' "
            "(or run 'make bench' as root, which does that)"
        )
    if not CEILING.is_file():
        sys.exit(f"error: the ceiling app is missing: {CEILING}")
    if args.pin and ((os.cpu_count() or 1) < 2 or shutil.which("taskset") is None):
        sys.exit("error: --pin needs two CPUs and taskset")
    wrk_cpu, server_cpu = (0, 1) if args.pin else (None, None)

    # Ctrl-C must reach us even when started with SIGINT ignored (e.g. a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    servers: list[Server] = []
    try:
        with tempfile.TemporaryDirectory(prefix="simgate-bench-") as tmp:
            tmpdir = Path(tmp)
            data_dir = tmpdir / "data"
            data_dir.mkdir()
            machine_info()
            print(
                f"wrk: 1 thread, {args.connections} connections, {args.rounds} alternating "
                f"rounds x {args.duration}s per endpoint, medians reported; loopback only\n",
                flush=True,
            )
            key = create_key(data_dir)

            ceiling_db = str(tmpdir / "ceiling.db")
            ceiling = Server(
                "ceiling",
                lambda port: pinned(
                    [sys.executable, str(CEILING), "--port", str(port), "--db", ceiling_db],
                    server_cpu,
                ),
                env=dict(os.environ),
                ready_path="/openapi.json",  # the ceiling has no GET route of its own
                log_dir=tmpdir,
            )
            servers.append(ceiling)
            ceiling.start()
            status, _ = http(
                f"{ceiling.base}/echo",
                headers={"Content-Type": "application/json"},
                body=json.dumps(ECHO_BODY).encode(),
            )
            if status != 202:
                sys.exit(f"error: ceiling POST /echo answered {status}, expected 202")
            echo = Target(ECHO, ceiling, "/echo", script=post_script(tmpdir))

            overheads: list[tuple[str, float, float]] = []
            variants = [("access log off (SIMGATE_ACCESS_LOG=false, log level warning)", False)]
            if not args.skip_access_log:
                variants.append(("access log on (SIMGATE_ACCESS_LOG=true, log level info)", True))
            for title, access_log in variants:
                simgate = Server(
                    "simgate",
                    lambda port: pinned(
                        [str(BIN / "simgate"), "serve", "--port", str(port)], server_cpu
                    ),
                    env=simgate_env(data_dir, access_log=access_log),
                    ready_path="/healthz",
                    log_dir=tmpdir,
                )
                servers.append(simgate)
                simgate.start()
                print(f"simgate on :{simgate.port}, {title}", flush=True)
                auth = {"Authorization": f"Bearer {key}"}
                status, body = http(f"{simgate.base}/api/v1/me", headers=auth)
                if status != 200:
                    sys.exit(f"error: /api/v1/me answered {status}: {body[:300]!r}")
                targets = [
                    Target(HEALTHZ, simgate, "/healthz"),
                    Target(ME, simgate, "/api/v1/me", headers=auth),
                    echo,
                ]
                results = measure(
                    targets,
                    rounds=args.rounds,
                    duration=args.duration,
                    connections=args.connections,
                    cpu=wrk_cpu,
                )
                simgate.stop()
                overheads.append((title, *report(f"Results, {title}:", results)))
                print(flush=True)

            print(f"Summary: API-key check overhead (target < {TARGET_OVERHEAD:.0f}%)")
            print(f"  {'by req/s':>8}  {'by CPU':>7}")
            for title, overhead, cpu_overhead in overheads:
                print(f"  {overhead:7.1f}%  {cpu_overhead:6.1f}%  {title}")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        for server in reversed(servers):
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
