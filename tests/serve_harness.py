"""Helpers of the service tests: a project root with params, keys, clips cut from a call; the server
itself is started with ``service.process.start_server``."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
import yaml

from service.process import Server, free_port, start_server

__all__ = ["Server", "add_key", "cut", "free_port", "make_root", "start_server"]


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
