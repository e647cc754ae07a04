"""Start ``zhasr serve`` as its own process on a free loopback port and wait until it is ready (tests,
benches, and anyone scripting a local server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def start_server(root: Path, sets: list[str], *, port: int | None = None, wait_ready: float = 180.0,
                 name: str = "serve") -> Server:
    """``zhasr serve`` in ``root`` with ``--set`` overrides; returns once /ready answers 200."""
    port = port or free_port()
    log = root / f"{name}-{port}.log"
    args = [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    for item in sets:
        args += ["--set", item]
    env = {**os.environ, "ZHASR_ROOT": str(root), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(args, env=env, cwd=root, stdout=log.open("a"), stderr=subprocess.STDOUT)
    server = Server(process, port, log)
    deadline = time.monotonic() + wait_ready
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{server.tail()}")
        try:
            if requests.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"the server was not ready in {wait_ready:.0f} s:\n{server.tail()}")
