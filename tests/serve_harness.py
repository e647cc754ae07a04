"""Start the real service (``zhasr serve`` under uvicorn) on a free loopback port, in its own process."""

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
import soundfile as sf
import yaml

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
    args = [sys.executable, "-m", "tasks.cli", "serve", "--set", f"serve.port={port}"]
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


def make_root(root: Path, params: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return root


def add_key(root: Path, name: str) -> str:
    from zhasr.config import load_params
    from zhasr.serve.keys import KeyStore

    params = load_params(root / "params.yaml")
    return KeyStore(root / params.serve.keys_file).add(name)


def cut(source: Path, target: Path, start_s: float, seconds: float) -> Path:
    """``seconds`` of ``source`` from ``start_s``, written in the source's own rate and channels (PCM 16)."""
    info = sf.info(source)
    data, rate = sf.read(source, start=int(start_s * info.samplerate), frames=int(seconds * info.samplerate),
                         dtype="float32", always_2d=True)
    sf.write(target, data, rate, subtype="PCM_16")
    return target
