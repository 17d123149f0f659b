"""Run the real ``simgate`` console script as a subprocess, for tests that need a server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SIMGATE = str(Path(sys.executable).with_name("simgate"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMGATE_")}
    env.update(SIMGATE_DATA_DIR=str(data_dir), SIMGATE_LOG_FORMAT="json", **extra)
    return env


def simgate(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIMGATE, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Server:
    """``simgate serve`` on a free port; stderr goes to a file the test can read."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str],
        *,
        port: int | None = None,
        name: str = "server",
        hostname: str | None = None,
    ) -> None:
        """``hostname``: run the server in a UTS namespace of its own with this hostname
        (as after renaming the machine); needs ``unshare`` and root."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"{name}.log"
        self._log = self.log_path.open("a")
        wrap = []
        if hostname is not None:
            wrap = ["unshare", "--uts", "sh", "-c", f'hostname {hostname} && exec "$0" "$@"']
        self.proc = subprocess.Popen(
            [*wrap, SIMGATE, "serve", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server and wait. uvicorn re-raises a caught SIGTERM after its
        graceful shutdown, so a clean stop returns -15; the log says whether it was clean."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def can_rename_host() -> str | None:
    """None when a server can be given its own hostname here, else why not."""
    try:
        done = subprocess.run(
            ["unshare", "--uts", "sh", "-c", "hostname simgate-probe"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError as exc:
        return f"unshare is not available: {exc}"
    if done.returncode != 0:
        return f"cannot rename the host in a UTS namespace (needs root): {done.stderr.strip()}"
    return None


def wait_for(check: Callable[[], object], what: str, timeout: float = 60) -> object:
    """Poll ``check`` until it returns something true (returned); fail naming ``what``."""
    import pytest

    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.3)


@contextmanager
def simulated_modem(directory: Path, env: dict[str, str]) -> Iterator[tuple[Path, Path]]:
    """`simgate modem simulate --link …` in the background: its link and control socket."""
    link = directory / "sim0"
    with (directory / "sim.log").open("w") as log:
        proc = subprocess.Popen(
            [SIMGATE, "modem", "simulate", "--link", str(link)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: link.exists() and link.with_suffix(".ctl").exists(), "the simulator")
            yield link, link.with_suffix(".ctl")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
