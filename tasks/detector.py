"""Detector stage: the model ``transcribe.detector`` names, trained to hear personal data.

Synthesized calls of the demo's voices give phone, ID-card and bank-card numbers, codes and e-mail
addresses (``synth.personal_clips``' calls, the written forms a labeller uses); with the labelled calls
of the train split whose text holds personal data, the base model (the champion by default) is trained on
them with the ``train:`` settings, merged and converted to int8 CTranslate2. Where redaction is asked, the service, the CLI and bulk transcription decode the call with
it too and take what it hears as personal data out of the transcript by time; its own text, which
this training makes worse on ordinary speech (docs/transcripts.md), is never returned.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

import mlflow

from mlflow_services import tracking
from tasks.train import MlflowStepLogger, curves_figure
from tasks.transcribe import resolve
from zhasr.calltext.pii import find_pii
from zhasr.context import StageContext
from zhasr.data.ingest import ingest_batches
from zhasr.data.manifest import atomic_write_json
from zhasr.data.synth import synthesize_batch
from zhasr.export.ct2 import write_ct2
from zhasr.model.merge import merge_adapter
from zhasr.model.train import train_adapter
from zhasr.progress import progress_bar


@dataclass(frozen=True)
class DetectorReport:
    """What the detector stage wrote (reports/detector.json)."""

    model_dir: str  # the int8 CTranslate2 folder transcribe.detector can name
    base: str  # what it was trained from ("zhasr-whisper v3", or a folder)
    sentences: int  # synthesized sentences trained on
    labelled: int  # labelled train-split clips whose text holds personal data, trained on too
    minutes: float  # of the speech trained on
    steps: int
    final_loss: float
    seconds: float  # wall time of synthesis, training, merge and conversion

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorReport:
        return cls(**data)


def labelled_with_numbers(ctx: StageContext) -> list[dict[str, Any]]:
    """The dataset's train-split clips whose label holds personal data of any kind (the voices and lines of
    the project's own calls), their audio named by absolute path; none before a first ingest."""
    if not ctx.dataset_manifest().is_file():
        return []
    dataset = ctx.path("dataset")
    return [{**r, "audio": str(dataset / r["audio"])} for r in ctx.split_rows("train") if find_pii(r["text"])]


def run(ctx: StageContext) -> DetectorReport:
    started = time.perf_counter()
    p = ctx.params.detector
    base = resolve(ctx, p.base or None, "detector.base")
    out = ctx.root / p.out
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)  # a half-done earlier run's calls and checkpoints
    synth = dataclasses.replace(ctx.params.synth, batch="numbers", n_clips=0, personal_clips=p.clips, seed=p.seed)
    synthesize_batch(work / "incoming", synth)
    every_row_in_train = dataclasses.replace(ctx.params.ingest, dev_fraction=0.0, test_fraction=0.0,
                                             template_test_fraction=0.0)
    rows = [r for r in ingest_batches(work / "incoming", work / "dataset", every_row_in_train)
            if not r["decode_error"]]
    labelled = labelled_with_numbers(ctx)
    with tracking.stage_run(ctx, "detector"):
        mlflow.set_tags({"zhasr.detector.base": base.identity, "zhasr.detector.out": str(out)})
        with progress_bar("cache lower encoder") as progress:
            trained = train_adapter(base.model_dir, rows + labelled, work / "dataset", work / "run", ctx.params.train,
                                    language=ctx.params.model.language, task=ctx.params.model.task,
                                    callbacks=[MlflowStepLogger()], progress=progress)
        tracking.log_figure_png(curves_figure(trained.loss_history, []), "plots/detector_loss_curve.png")
        merged = merge_adapter(base.model_dir, trained.adapter_dir, work / "hf")
        write_ct2(merged, work / "ct2-int8")
        for folder in ("hf", "ct2-int8"):  # the last detector stays until this one is complete
            shutil.rmtree(out / folder, ignore_errors=True)
            (work / folder).rename(out / folder)
        ct2 = out / "ct2-int8"
        minutes = sum(r["duration_s"] for r in rows + labelled) / 60
        report = DetectorReport(str(ct2), base.identity, len(rows), len(labelled), round(minutes, 2), trained.steps,
                                trained.final_loss, round(time.perf_counter() - started, 1))
        mlflow.log_metrics({"detector_sentences": report.sentences, "detector_labelled_clips": report.labelled,
                            "detector_minutes": report.minutes,
                            "detector_steps": report.steps, "detector_final_loss": report.final_loss,
                            "detector_seconds": report.seconds})
        atomic_write_json(ctx.report("detector"), report.to_dict())
    shutil.rmtree(work, ignore_errors=True)
    return report
