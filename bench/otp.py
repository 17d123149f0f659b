"""One-time passcodes: code checks per second, and the time from starting a verification
to its SMS being handed to the (simulated) modem.

    .venv/bin/python bench/otp.py [--rounds 3] [--duration 10] [--connections 50]
                                  [--verifications 100000] [--samples 100]
                                  [--pg postgresql://postgres@127.0.0.1:5432/postgres]

1. **Checks per second** (target: at least 1,000/s, p99 under 10 ms). ``--verifications``
   pending verifications are stored while no server runs, each with a code hashed with the
   data directory's key exactly as the service hashes it; then wrk POSTs
   ``/api/v1/otp/verify`` at ``--connections``, each request a different verification:
   - *right code*: every check approves its verification (a conditional UPDATE that one
     check wins, and the SMS left in the queue canceled);
   - *wrong code*: every check counts a wrong attempt on its verification;
   - *paced load*: wrong codes from 20 connections that each pause about 40 ms between
     checks (some 400 a second): the latency of a busy service below its capacity, where
     the p99 target applies (at full load, latency is mostly time in the queue).
   On SQLite, and on PostgreSQL when ``--pg`` is reachable. Medians of ``--rounds`` rounds,
   with the ceiling app's ``POST /insert`` (``../shared/bench/ceiling.py``) measured in the
   same run for the ratio.
2. **Start to modem** (SQLite): ``simgate modem simulate`` on a pseudo-terminal, added with
   the real CLI; for each sample, ``POST /api/v1/otp`` to a new number, then the simulator's
   control socket is asked until it has the SMS (it records an SMS when the modem answers
   the AT+CMGS). Prints p50/p99 of the time from just before the POST.

Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from _common import (
    BIN,
    REPO,
    Processes,
    Server,
    Target,
    ceiling_insert_rps,
    check_tools,
    create_key,
    drop_database,
    install_signal_handlers,
    machine_info,
    measure,
    pct,
    pg_database,
    run_cli,
    run_wrk,
    simgate_env,
    summarise,
)

PACE_MS = 40
PACED_CONNECTIONS = 20  # about 400 checks a second: a busy service, below capacity
RIGHT = "246810"
WRONG = "135790"
LIMITS_OFF = {
    "SIMGATE_OTP_PER_APP_PER_HOUR": "0",
    "SIMGATE_OTP_PER_PHONE_PER_HOUR": "0",
    "SIMGATE_OTP_PER_IP_PER_HOUR": "0",
}


def serve(processes: Processes, name: str, env: dict[str, str], tmpdir: Path) -> Server:
    return processes.server(
        name,
        lambda port: [str(BIN / "simgate"), "serve", "--port", str(port)],
        env={**env, **LIMITS_OFF, "SIMGATE_NODE_NAME": name},
        ready_path="/readyz",
        log_dir=tmpdir,
    )


async def store_verifications(env: dict[str, str], n: int) -> list[str]:
    """``n`` pending verifications of the app ``bench``, each with the code RIGHT, written
    as the service writes them (its key, its hash); their ids."""
    sys.path.insert(0, str(REPO / "src"))
    from sqlalchemy import Table, insert, select

    from simgate.config import load_settings
    from simgate.domain import otp as rules
    from simgate.domain.ids import MonotonicIds
    from simgate.services.otp import load_key
    from simgate.store.engine import make_engine, make_sessionmaker
    from simgate.store.models import App, OtpVerification

    settings = load_settings(
        data_dir=Path(env["SIMGATE_DATA_DIR"]), database_url=env.get("SIMGATE_DATABASE_URL", "")
    )
    key = load_key(settings)
    key_id = rules.key_id(key)
    engine = make_engine(settings)
    table: Table = OtpVerification.__table__  # type: ignore[assignment]
    ids = MonotonicIds("otp")
    now = datetime.now(UTC)
    out: list[str] = []
    try:
        sm = make_sessionmaker(engine)
        async with sm() as session:
            app_id = await session.scalar(select(App.id).where(App.name == "bench"))
        for start in range(0, n, 5000):
            rows = []
            for i in range(start, min(n, start + 5000)):
                vid = ids()
                out.append(vid)
                rows.append(
                    {
                        "id": vid,
                        "app_id": app_id,
                        "phone": f"+49151{i:08d}",
                        "status": "pending",
                        "length": 6,
                        "code_hashes": [rules.code_hash(key, vid, RIGHT)],
                        "key_id": key_id,
                        "attempts": 0,
                        "max_attempts": 5,
                        "sends": 1,
                        "max_sends": 5,
                        "template": rules.TEMPLATES["en"],
                        "app_label": "bench",
                        "locale": "en",
                        "gateway": None,
                        "client_ip": None,
                        "message_ids": [],
                        "last_sent_at": now,
                        "expires_at": now + timedelta(minutes=30),
                        "created_at": now,
                        "updated_at": now,
                        "ended_at": None,
                    }
                )
            async with sm.begin() as session:
                await session.execute(insert(table), rows)
    finally:
        await engine.dispose()
    return out


def check_script(
    directory: Path, ids: list[str], code: str, name: str, delay_ms: int | None = None
) -> Path:
    """A wrk script POSTing one check per request, each to the next verification; with
    ``delay_ms``, each connection waits about that long before each request (a paced load
    below capacity, where latency is the service's and not the queue's)."""
    ids_file = directory / f"{name}.ids"
    ids_file.write_text("\n".join(ids) + "\n")
    path = directory / f"{name}.lua"
    path.write_text(
        f"""
local ids = {{}}
for line in io.lines({json.dumps(str(ids_file))}) do ids[#ids + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  local id = ids[((i - 1) % #ids) + 1]
  return wrk.format(nil, nil, nil, '{{"id": "' .. id .. '", "code": "{code}"}}')
end
"""
        + (
            f"math.randomseed(os.time())\nfunction delay()\n"
            f"  return math.random({delay_ms // 2}, {delay_ms * 3 // 2})\nend\n"
            if delay_ms
            else ""
        )
    )
    return path


def checks(
    processes: Processes,
    tmpdir: Path,
    label: str,
    env: dict[str, str],
    key: str,
    args: argparse.Namespace,
) -> list[tuple[str, float, float, float, float]]:
    ids = asyncio.run(store_verifications(env, args.verifications))
    half = len(ids) // 2
    server = serve(processes, f"checks-{label}", env, tmpdir)
    server.start()
    headers = {"Authorization": f"Bearer {key}"}
    targets = [
        Target(
            f"{label} right code",
            server,
            "/api/v1/otp/verify",
            headers=headers,
            script=check_script(tmpdir, ids[:half], RIGHT, f"right-{label}"),
        ),
        Target(
            f"{label} wrong code",
            server,
            "/api/v1/otp/verify",
            headers=headers,
            script=check_script(tmpdir, ids[half:], WRONG, f"wrong-{label}"),
        ),
    ]
    results = measure(
        targets,
        rounds=args.rounds,
        duration=args.duration,
        connections=args.connections,
        cpu=None,
        width=30,
    )
    paced = Target(
        f"{label} paced",
        server,
        "/api/v1/otp/verify",
        headers=headers,
        script=check_script(tmpdir, ids[half:], WRONG, f"paced-{label}", delay_ms=PACE_MS),
    )
    calm = run_wrk(paced, duration=args.duration, connections=PACED_CONNECTIONS, cpu=None)
    server.stop()
    out = []
    for target in targets:
        s = summarise(results[target.name])
        if s.errors:
            print(f"  warning: {s.errors} failed requests in {target.name}")
        out.append((target.name, s.rps, s.p50_ms, s.p99_ms, s.cpu_us))
    out.append((f"{label} paced load", calm.rps, calm.p50_ms, calm.p99_ms, calm.cpu_us))
    used = sum(r.requests for r in results[targets[0].name])
    if used > half:
        print(f"  note: {used} right-code checks over {half} verifications: some hit approved ones")
    return out


async def start_to_modem(base: str, key: str, ctl: Path, samples: int) -> list[float]:
    from simgate.modem_sim.control import request

    out: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        headers = {"Authorization": f"Bearer {key}"}
        await client.get("/healthz")
        for i in range(samples):
            before = len((await request(ctl, {"cmd": "sent"}))["sent"])
            t0 = time.perf_counter()
            resp = await client.post(
                "/api/v1/otp", json={"phone": f"+4917612{i:06d}"}, headers=headers
            )
            if resp.status_code != 201:
                sys.exit(f"error: POST /api/v1/otp answered {resp.status_code}: {resp.text}")
            deadline = time.monotonic() + 30
            while len((await request(ctl, {"cmd": "sent"}))["sent"]) <= before:
                if time.monotonic() > deadline:
                    sys.exit("error: the simulated modem got no SMS within 30 s")
            out.append((time.perf_counter() - t0) * 1000)
    return out


def modem_latency(processes: Processes, tmpdir: Path, args: argparse.Namespace) -> list[float]:
    data = tmpdir / "modem"
    env = simgate_env(data, access_log=False)
    key = create_key(data)
    link = tmpdir / "sim0"
    processes.spawn(
        [str(BIN / "simgate"), "modem", "simulate", "--link", str(link)],
        log=tmpdir / "simulator.log",
    )
    deadline = time.monotonic() + 30
    while not (link.exists() and link.with_suffix(".ctl").exists()):
        if time.monotonic() > deadline:
            sys.exit("error: the modem simulator did not start")
        time.sleep(0.1)
    # No per-minute limit (a real SIM800L gets 10 by default): this measures the path, not
    # the pacing that protects a SIM card from being blocked.
    run_cli(env, "modem", "add", "pi", "--port", str(link), "--rate-per-minute", "0")
    server = serve(processes, "modem", env, tmpdir)
    server.start()
    deadline = time.monotonic() + 60
    while " online " not in run_cli(env, "modem", "list"):
        if time.monotonic() > deadline:
            sys.exit("error: the simulated modem did not come online")
        time.sleep(0.3)
    ms = asyncio.run(start_to_modem(server.base, key, link.with_suffix(".ctl"), args.samples))
    server.stop()
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--verifications", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    install_signal_handlers()
    check_tools(pin=False)
    machine_info()
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="simgate-bench-otp-") as tmp:
        tmpdir = Path(tmp)
        try:
            rows = []
            data = tmpdir / "sqlite"
            env = simgate_env(data, access_log=False)
            rows += checks(processes, tmpdir, "SQLite", env, create_key(data), args)
            pg_url = pg_database(args.pg, "otp")
            if pg_url is None:
                print("PostgreSQL: skipped, cannot reach --pg " + args.pg)
            else:
                try:
                    pdata = tmpdir / "pg"
                    pdata.mkdir()
                    penv = simgate_env(pdata, access_log=False, database_url=pg_url)
                    pkey = create_key(pdata, database_url=pg_url)
                    rows += checks(processes, tmpdir, "PostgreSQL", penv, pkey, args)
                finally:
                    drop_database(args.pg, pg_url)
            insert_rps = ceiling_insert_rps(processes, tmpdir)
            ms = modem_latency(processes, tmpdir, args)
            print()
            print(
                f"code checks, {args.connections} connections, median of {args.rounds} rounds "
                f"(target: >= 1,000/s, p99 < 10 ms); ceiling /insert {insert_rps:,.0f}/s"
            )
            for name, rps, p50, p99, cpu in rows:
                print(
                    f"  {name:<24} {rps:7,.0f}/s ({rps / insert_rps:.2f}x ceiling)  "
                    f"p50 {p50:5.2f} ms  p99 {p99:5.2f} ms  server CPU {cpu:4.0f} us/check"
                )
            print(
                f"start to SMS handed to the simulated modem (SQLite): p50 "
                f"{statistics.median(ms):.1f} ms, p99 {pct(ms, 99):.1f} ms, max {max(ms):.1f} ms "
                f"over {len(ms)} samples"
            )
        finally:
            processes.stop_all()


if __name__ == "__main__":
    main()
