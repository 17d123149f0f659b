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
import sys
import tempfile
from pathlib import Path

from _common import (
    BIN,
    Processes,
    Target,
    WrkResult,
    check_tools,
    create_key,
    http,
    install_signal_handlers,
    machine_info,
    measure,
    pinned,
    post_script,
    simgate_env,
    start_ceiling,
    summarise,
)

TARGET_OVERHEAD = 10.0  # percent of a /healthz request, from the performance issue

HEALTHZ = "GET /healthz"
ME = "GET /api/v1/me"
ECHO = "POST /echo (ceiling)"


# --- report ---------------------------------------------------------------------------------


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

    check_tools(pin=args.pin)
    wrk_cpu, server_cpu = (0, 1) if args.pin else (None, None)

    install_signal_handlers()
    processes = Processes()
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
            ceiling = start_ceiling(processes, tmpdir, server_cpu)
            echo = Target(ECHO, ceiling, "/echo", script=post_script(tmpdir))

            overheads: list[tuple[str, float, float]] = []
            variants = [("access log off (SIMGATE_ACCESS_LOG=false, log level warning)", False)]
            if not args.skip_access_log:
                variants.append(("access log on (SIMGATE_ACCESS_LOG=true, log level info)", True))
            for title, access_log in variants:
                simgate = processes.server(
                    "simgate",
                    lambda port: pinned(
                        [str(BIN / "simgate"), "serve", "--port", str(port)], server_cpu
                    ),
                    env=simgate_env(data_dir, access_log=access_log),
                    ready_path="/healthz",
                    log_dir=tmpdir,
                )
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
        processes.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
