"""Transcribe stage: audio files through the engine, with a registered version or a model folder.

``models:/<name>@champion`` (or ``@challenger``, or ``models:/<name>/<version>``) is resolved here, in the
task layer: the version's Hugging Face files and the exports its register stage judged fit and kept
with the run (``registry.exports_of``), downloaded when remote.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from mlflow_services import registry, tracking
from zhasr.context import StageContext
from zhasr.transcribe import Transcriber
from zhasr.transcribe.writers import EXTENSIONS, write

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class ResolvedModel:
    model_dir: Path  # Hugging Face folder
    exports: dict[str, Path] = field(default_factory=dict)  # fit exports, {format: local path}
    identity: str = ""  # "zhasr-whisper v3", or the folder and its build ("/models/merged@3fa2b1c0d9e8")
    version: str | None = None  # the registry's version, None for a folder
    name: str | None = None  # the registered model's name, None for a folder


def fit_exports(version) -> dict[str, Path]:
    """``{format: local path}`` of the exports kept with ``version``'s run because they were fit
    (``registry.exports_of``)."""
    uris = {fmt: e.uri for fmt, e in registry.exports_of(version).items() if e.verdict == "fit" and e.uri}
    out = {}
    for fmt, uri in uris.items():
        local = Path(mlflow.artifacts.download_artifacts(uri))
        bins = sorted(local.glob("*.bin")) if not (local / "model.bin").is_file() else []
        out[fmt] = bins[0] if bins else local
    return out


def version_named(ctx: StageContext, spec: str) -> str | None:
    """The registry version a ``models:/`` spec names now, without downloading anything; None for a folder
    or an alias that no version holds."""
    match = MODEL_URI.match(spec)
    if not match:
        return None
    if match["version"]:
        return match["version"]
    tracking.configure(ctx)
    version = registry.version_by_alias(match["name"], match["alias"])
    return str(version.version) if version is not None else None


def resolve(ctx: StageContext, spec: str | None = None, key: str = "--model") -> ResolvedModel:
    """``spec``: a ``models:/`` URI (default: the champion of ``register.model_name``) or a local model path;
    ``key``: the option or setting it came from, named in the errors."""
    spec = spec or f"models:/{ctx.params.register.model_name}@{registry.CHAMPION}"
    match = MODEL_URI.match(spec)
    if not match:
        path = Path(spec).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{key} {spec}: neither a models:/NAME@ALIAS or models:/NAME/VERSION URI "
                                    "nor an existing folder or file")
        return ResolvedModel(path.resolve(), {}, f"{path.resolve()}@{folder_build(path)}")
    tracking.configure(ctx)
    name = match["name"]
    if match["alias"]:
        version = registry.version_by_alias(name, match["alias"])
        if version is None:
            raise LookupError(f"{key} {spec}: no version of {name} holds the alias {match['alias']!r}")
    else:
        version = MlflowClient().get_model_version(name, match["version"])
    return ResolvedModel(registry.whisper_dir(version), fit_exports(version), f"{name} v{version.version}",
                         str(version.version), name)


def folder_build(path: Path) -> str:
    """12 hex digits that change when a file under ``path`` (or ``path``, a file) is added, removed or
    written again: a model folder trained or merged anew under the same name is another model (an archive
    run decodes its calls again). From names, sizes and modification times; no byte is read."""
    digest = hashlib.sha256()
    for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def open_transcriber(ctx: StageContext, spec: str | None = None, runtime: str | None = None) -> Transcriber:
    return open_resolved(ctx, resolve(ctx, spec), runtime)


def open_resolved(ctx: StageContext, model: ResolvedModel, runtime: str | None = None) -> Transcriber:
    """The engine of a model ``resolve`` found, with the project's transcribe settings."""
    p = ctx.params
    return Transcriber.open(model.model_dir, p.transcribe, language=p.model.language, task=p.model.task,
                            exports=model.exports, runtime=runtime, identity=model.identity)


def detector_model(ctx: StageContext) -> ResolvedModel | None:
    """The number-trained model ``transcribe.detector`` names; None when it names none."""
    spec = ctx.params.transcribe.detector
    if not spec:
        return None
    try:
        return resolve(ctx, spec, "transcribe.detector")
    except (FileNotFoundError, LookupError) as exc:
        approve = "; a person approves one: zhasr approve N --model NAME" if spec.startswith("models:/") else ""
        raise LookupError(f"{exc} (zhasr detector trains one{approve})") from exc


def detector_stamp(ctx: StageContext) -> str | None:
    """Which build ``transcribe.detector`` names now: the registry version of a ``models:/`` spec (None while
    its alias names none), else its folder's inode and modification time (a folder renamed into place is a new
    build); None when it names none or no folder is there."""
    spec = ctx.params.transcribe.detector
    if not spec or spec.startswith("models:/"):
        return version_named(ctx, spec) if spec else None
    try:
        folder = Path(spec).expanduser().stat()
    except FileNotFoundError:  # not built yet, or between two renames
        return None
    return f"{folder.st_ino}:{folder.st_mtime_ns}"


def run(ctx: StageContext, files: list[Path], model: str | None = None, channels: str | None = None,
        fmt: str = "json", out_dir: Path | None = None, runtime: str | None = None,
        redact: Sequence[str] | None = None, itn: bool | None = None, redacted_audio: bool = False) -> Any:
    """One file without ``out_dir``: the result itself in ``fmt``. Otherwise ``<out_dir>/<stem>.<ext>`` per
    file and a summary per file. ``redact`` (None: ``transcribe.redact``) and ``itn`` (None:
    ``transcribe.itn``) as in ``zhasr.transcribe.redaction.finish_text``, with ``transcribe.detector``'s
    spans too where one is named; ``redacted_audio`` also writes
    ``<out_dir>/<stem>.redacted.wav`` (``muted_rate``: the call's own rate up to 16 kHz; its channels) with
    the redacted stretches muted."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zhasr.transcribe.media import read_call
    from zhasr.transcribe.redaction import muted_wav, transcribe_finished

    kinds = ctx.params.transcribe.redact if redact is None else list(redact)
    itn = ctx.params.transcribe.itn if itn is None else itn
    if redacted_audio and (out_dir is None or not kinds):
        raise LookupError("--redacted-audio: needs --out and kinds to redact (--redact or transcribe.redact)")
    transcriber = open_transcriber(ctx, model, runtime)
    detector = open_resolved(ctx, found) if kinds and (found := detector_model(ctx)) else None
    results: dict[str, str] = {}
    summary = []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_stderr()) as bar:
        files_task = bar.add_task("files", total=len(files))
        seconds_task = bar.add_task("speech seconds", total=None)
        for path in files:
            call = read_call(Path(path), str(path), ctx.params.transcribe.max_audio_s)
            result = transcribe_finished(transcriber, call, kinds, itn, detector,
                                         channels=channels, name=str(path),
                                         progress=lambda d, t: bar.update(seconds_task, completed=round(d),
                                                                          total=round(t)))
            text = write(result, fmt)
            results[str(path)] = text
            if out_dir is not None:
                target = Path(out_dir) / f"{Path(path).stem}.{EXTENSIONS[fmt]}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                if redacted_audio:
                    target.with_name(f"{Path(path).stem}.redacted.wav").write_bytes(
                        muted_wav(call, result.redactions))
                summary.append({"file": str(path), "out": str(target), "duration_s": result.duration_s,
                                "segments": len(result.segments), "runtime": result.runtime, "model": result.model,
                                "warnings": list(result.warnings)})
            bar.advance(files_task)
    if out_dir is not None:
        return summary
    return next(iter(results.values())) if len(results) == 1 else results


def _stderr():
    from rich.console import Console

    return Console(stderr=True)
