"""Detector stage: the model ``transcribe.detector`` names, trained to hear personal data.

Synthesized calls of the demo's voices give phone, ID-card and bank-card numbers, codes and e-mail
addresses (``synth.personal_clips``' calls, the written forms a labeller uses); with the labelled calls
of the train split whose text holds personal data, the base model (the champion by default) is trained on
them with the ``train:`` settings, merged and converted to int8 CTranslate2. Where redaction is asked, the service, the CLI and bulk transcription decode the call with
it too and take what it hears as personal data out of the transcript by time; its own text, which
this training makes worse on ordinary speech (docs/numbers-measured.md), is never returned.

Before it replaces the last detector it is judged on held-out sentences (``detector.check_*``: another seed's
numbers and voices, the sentence frames it never heard): the base model decodes them, the new detector and the
one in place (the model ``transcribe.detector`` names, else the last one in ``<out>``) hear them, and
``zhasr.evaluation.detector_verdict`` decides; one that fails is kept in ``<out>/rejected/`` and the last one stays.
Every build is also registered as a version of ``detector.model_name`` with the verdict as its gate: one that
passed becomes challenger, and champion only when a person approves (``mlflow_services.promotion``), so
``transcribe.detector: models:/zhasr-detector@champion`` follows only approved detectors.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlflow_services import registry, review, tracking
from mlflow_services.step_metrics import MlflowStepLogger
from tasks import decoding
from tasks.transcribe import ResolvedModel, detector_model, open_resolved, resolve, version_named
from zhasr.calltext.pii import find_pii
from zhasr.config import DetectorParams, SynthParams, short_digest
from zhasr.context import StageContext
from zhasr.data.ingest import decoded_rows, ingest_batches
from zhasr.data.manifest import ManifestRow, atomic_write_json
from zhasr.data.synth import speak_sentences, synthesize_batch
from zhasr.data.synth.call import sentence_calls
from zhasr.data.synth.personal import personal_set
from zhasr.evaluation.detector_verdict import DetectorVerdict, judge_detector
from zhasr.evaluation.redaction_recall import Heard, RedactionScore, score
from zhasr.evaluation.turns import transcribe_sentence_calls
from zhasr.export.ct2 import write_ct2
from zhasr.model.merge import merge_adapter
from zhasr.model.train import train_adapter
from zhasr.progress import progress_bar
from zhasr.project import git_commit
from zhasr.transcribe.engine import Transcriber
from zhasr.transcribe.records import Transcription

CHECK_ACTOR = "zhasr detector check"
SETTINGS_TAG = "zhasr.detector_settings"  # a version's settings_digest: a scheduled build repeats none
NAMING_SAID = {"any": "any noun of their kind", "frame": "their sentence frame's own noun"}
DETECTOR_MODEL_DESCRIPTION = (
    "Number detectors built by `zhasr detector`: Whisper trained on calls with numbers, heard beside the "
    "transcriber where redaction is asked (its own text is never returned). Each version's gate is its held-out "
    "check (docs/transcripts.md); a person makes one the champion that `transcribe.detector: "
    "models:/{name}@champion` follows.")


@dataclass(frozen=True)
class DetectorReport:
    """What the detector stage wrote (reports/detector.json)."""

    model_dir: str  # the int8 CTranslate2 folder transcribe.detector can name: the new one if accepted ("": none)
    base: str  # what it was trained from ("zhasr-whisper v3", or a folder)
    sentences: int  # synthesized sentences trained on
    labelled: int  # labelled train-split clips whose text holds personal data, trained on too
    minutes: float  # of the speech trained on
    steps: int
    final_loss: float
    seconds: float  # wall time of synthesis, training, merge, conversion and the check
    accepted: bool  # it replaced the last detector
    reasons: list[str]  # the check's rules it failed
    check_recall: dict[str, float]  # per kind on the check sentences, fractions ({}: not checked)
    check_on_personal_data: float | None  # of every span it gave there, the share on personal data
    replaced_recall: dict[str, float]  # the detector in place before, on the same check ({}: there was none)
    rejected_dir: str = ""  # where a refused detector was kept
    replaced: str = ""  # the detector in place it was checked against ("": none)
    version: str = ""  # its version of detector.model_name ("": not registered)
    alias: str | None = None  # "challenger" when registered and it passed its check
    model_card: str = ""  # markdown, its version's description ("": not registered)
    naming: str = ""  # synth.personal_naming of its sentences: "any" noun of a kind, or the "frame"'s own
    settings: str = ""  # settings_digest: what the schedule compares

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorReport:
        return cls(**data)


@dataclass(frozen=True)
class DetectorCheck:
    """The held-out check's scores: the new detector's, and the one in place's on the same decodings."""

    new: RedactionScore
    replaced: RedactionScore | None


def labelled_with_numbers(ctx: StageContext) -> list[ManifestRow]:
    """The dataset's train-split clips whose label holds personal data of any kind (the voices and lines of
    the project's own calls), their audio named by absolute path; none before a first ingest."""
    if not ctx.dataset_manifest().is_file():
        return []
    dataset = ctx.path("dataset")
    return [dataclasses.replace(r, audio=str(dataset / r.audio)) for r in ctx.split_rows("train") if find_pii(r.text)]


def detector_in_place(ctx: StageContext, folder: Path) -> ResolvedModel | None:
    """The detector a new one is checked against: the model ``transcribe.detector`` names (what redaction
    hears with now), else, or while its alias names no version yet, the int8 ``folder`` the stage replaces
    (None before its first build). Raises LookupError for a model named that is not there."""
    own = ResolvedModel(folder, identity=str(folder)) if (folder / "model.bin").is_file() else None
    spec = ctx.params.transcribe.detector
    if not spec or Path(spec).expanduser().resolve() == folder.resolve() or (
            spec.startswith("models:/") and "@" in spec and version_named(ctx, spec) is None):
        return own
    return detector_model(ctx)


def check_detector(ctx: StageContext, base: ResolvedModel, new: Path, replaced: ResolvedModel | None,
                   work: Path) -> DetectorCheck:
    """``detector.check_*``'s sentences said by ``synth:``'s voices of ``check_seed`` into ``work`` and made
    into two-voice calls (``sentence_calls``), decoded by ``base`` (at full precision in ``evaluate.runtime``,
    as evaluation decodes) and heard by ``new`` (an int8 CTranslate2 folder) and ``replaced`` (in its int8
    copy) as the service transcribes a call (a channel's turns share windows), with word times as where
    redaction is asked; each sentence, its turn, scored as the base's text with what the detector heard
    taken out."""
    p = ctx.params.detector
    rows = personal_set(p.check_seed, p.check_per_kind, p.check_others, frames="odd")
    synth = dataclasses.replace(ctx.params.synth, seed=p.check_seed)
    calls = sentence_calls(speak_sentences(rows, work / "sentences", synth), work / "calls", synth.n_speakers,
                           seed=p.check_seed)

    def decode(model: ResolvedModel, engine: Transcriber | None = None) -> list[Transcription]:
        with progress_bar(f"check: {model.identity} (s of speech)") as show:
            return transcribe_sentence_calls(engine or open_resolved(ctx, model), calls, words=True,
                                             progress=lambda done, whole: show(round(done), round(whole)))

    # the base at full precision in evaluation's runtime (its float32 CTranslate2 copy, written once per weights)
    decoded = decode(base, decoding.open_transcriber(ctx, decoding.Model.of("base", base.model_dir)))
    heard_by = lambda model: score(rows, [Heard(d, h) for d, h in zip(decoded, decode(model))], True)  # noqa: E731
    return DetectorCheck(heard_by(ResolvedModel(new, identity="the new detector")),
                         heard_by(dataclasses.replace(replaced, identity=f"the detector in place, {replaced.identity}"))
                         if replaced else None)


def detector_check_figure(new: RedactionScore, replaced: RedactionScore | None, p: DetectorParams):
    """Recall per kind of a new number detector on its held-out check and of the one it would replace
    (None: none), each labelled with its mean; ``p``'s floors (each kind, the mean) drawn across."""
    kinds = [k for k, s in new.kinds.items() if s.sentences]
    shown = [("new", new, "tab:blue")] + ([("in place", replaced, "tab:gray")] if replaced else [])
    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(shown)
    for i, (label, scored, color) in enumerate(shown):
        axis.bar([k + i * width for k in range(len(kinds))], [100 * scored.kinds[k].recall for k in kinds], width,
                 label=f"{label}: mean {100 * scored.mean_recall:.0f} %", color=color)
    axis.axhline(100 * p.min_mean_recall, color="tab:red", linestyle=":", label="detector.min_mean_recall")
    axis.axhline(100 * p.min_recall, color="tab:red", linestyle="--", label="detector.min_recall")
    axis.set_xticks([k + width * (len(shown) - 1) / 2 for k in range(len(kinds))], kinds)
    axis.set_ylabel("recall (%)")
    axis.set_ylim(0, 105)
    axis.set_title(f"Held-out check: {p.check_per_kind} sentences a kind said as turns of calls;\n"
                   "recall of the transcript with what the detector heard taken out", fontsize=10)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    figure.tight_layout()
    return figure


def log_check(check: DetectorCheck, p: DetectorParams) -> None:
    """The check's figures as metrics, a table (detector/check.json) and a plot."""
    for name, scored in (("check", check.new), ("replaced", check.replaced)):
        if scored is not None:
            mlflow.log_metrics({f"detector_{name}_recall_{kind}": s.recall for kind, s in scored.kinds.items()
                                if s.sentences} | {f"detector_{name}_mean_recall": scored.mean_recall,
                                                   f"detector_{name}_on_personal_data": scored.on_personal_data})
    rows = [{"detector": name, "kind": kind, **asdict(s)}
            for name, scored in (("new", check.new), ("in place", check.replaced)) if scored is not None
            for kind, s in scored.kinds.items()]
    mlflow.log_table(pd.DataFrame(rows), artifact_file="detector/check.json")
    tracking.log_figure_png(detector_check_figure(check.new, check.replaced, p), "plots/detector_check.png")


def mean_recall(recall: dict[str, float]) -> float | None:
    """Unweighted over the kinds of a report's recall (None: not checked)."""
    return sum(recall.values()) / len(recall) if recall else None


def detector_card(name: str, number: str, report: DetectorReport, p: DetectorParams) -> str:
    """The version's description in the registry (markdown): what it was trained on, its check, the verdict."""
    lines = [f"# {name} v{number}: number detector", "",
             f"Trained from {report.base} on {report.sentences} synthesized sentences (seed {p.seed}, numbers named "
             f"by {NAMING_SAID[report.naming]}; settings {report.settings}) and "
             f"{report.labelled} labelled calls with personal data ({report.minutes} min of speech), {report.steps} "
             f"steps, final loss {report.final_loss:.3f}. Where redaction is asked it hears the call beside the "
             "transcriber and what it hears as personal data is taken out of the transcript by time; its own text "
             "is never returned.", ""]
    if report.check_recall:
        lines += [f"## Held-out check (seed {p.check_seed}: {p.check_per_kind} sentences a kind, {p.check_others} "
                  "without personal data, frames never trained on, said as turns of two-voice calls)", "",
                  f"| kind | this build: recall % | in place ({report.replaced or 'none'}) |", "|---|---|---|"]
        mean = lambda recall: f"{100 * mean_recall(recall):.0f}" if recall else ""  # noqa: E731
        lines += [f"| {kind} | {100 * r:.0f} | " + (f"{100 * report.replaced_recall[kind]:.0f}"
                                                    if kind in report.replaced_recall else "") + " |"
                  for kind, r in report.check_recall.items()]
        lines.append(f"| **mean** | {mean(report.check_recall)} | {mean(report.replaced_recall)} |")
        lines += ["", f"Spans on personal data: {100 * report.check_on_personal_data:.1f} %.", ""]
    lines.append(f"**Check: {'failed' if not report.accepted else 'passed' if report.check_recall else 'none'}**" +
                 (f": {'; '.join(report.reasons)}" if report.reasons else "") +
                 ("" if report.check_recall else " (detector.check_per_kind is 0: it cannot be approved)") + ".")
    if report.accepted and report.check_recall:
        lines += ["", f"A person makes it the champion: `zhasr approve {number} --model {name} --by NAME --note WHY`."]
    return "\n".join(lines) + "\n"


def register_build(ctx: StageContext, report: DetectorReport, place: Path, name: str, commit: str) -> DetectorReport:
    """``place``'s build (hf/ and ct2-int8/) registered as a new version of ``name`` in the active run, the check's
    verdict as its gate (``zhasr.gate``, the reasons as the run's ``zhasr.gate_reason``; "unchecked" without a
    check, which no one can approve), its int8 copy kept with the run as its fit ct2 export; challenger when it
    passed. ``commit``: the code's, read when the stage began."""
    run_id = mlflow.active_run().info.run_id
    uri = tracking.log_export(place / "ct2-int8", "ct2-int8", run_id)
    passed = report.accepted and bool(report.check_recall)
    gate = "pass" if passed else "fail" if not report.accepted else "unchecked"
    mean = mean_recall(report.check_recall)
    reason = "; ".join(report.reasons) or (f"passed the check: mean recall {100 * mean:.1f} %, spans on personal "
                                           f"data {100 * report.check_on_personal_data:.1f} %" if mean is not None
                                           else "not checked (detector.check_per_kind 0)")
    mlflow.set_tags({"zhasr.gate_reason": reason, "zhasr.git_commit": commit,
                     "zhasr.params_hash": ctx.params.digest()})
    tags = {"zhasr.role": "detector", "zhasr.gate": gate, "zhasr.parent": report.base, SETTINGS_TAG: report.settings,
            registry.EXPORTS_TAG: json.dumps({"ct2-int8": {"verdict": "fit", "uri": uri}})}
    if mean is not None:
        tags[registry.DETECTOR_RECALL_TAG] = f"{mean:.4f}"
    version = registry.log_and_register(name, place / "hf", ctx.params.model.language, tags=tags,
                                        transcribe=ctx.params.transcribe)
    number = str(version.version)
    card = detector_card(name, number, report, ctx.params.detector)
    registry.publish_card(name, number, card)
    if not MlflowClient().get_registered_model(name).description:
        MlflowClient().update_registered_model(name, description=DETECTOR_MODEL_DESCRIPTION.format(name=name))
    mlflow.set_tags({"zhasr.gate": gate, "zhasr.model_version": number})
    alias = None
    if passed:
        alias = registry.CHALLENGER
        registry.change_alias(name, alias, number, action="gate", by=CHECK_ACTOR, note=reason)
    return dataclasses.replace(report, version=number, alias=alias, model_card=card)


def training_calls(ctx: StageContext) -> SynthParams:
    """The synthesized calls a build trains on: ``synth:``'s voices and channels, ``detector.clips`` and ``seed``."""
    p = ctx.params.detector
    return dataclasses.replace(ctx.params.synth, batch="numbers", n_clips=0, personal_clips=p.clips, seed=p.seed)


def settings_digest(ctx: StageContext) -> str:
    """``short_digest`` of the detector's own settings: the calls it synthesizes (``training_calls``, not how many
    threads say them), ``train:``, and ``detector:`` less its schedule, registry name and folder. The sections it
    shares with the transcriber (``model:``, ``ingest:``, ``evaluate:``, ``transcribe:``) are left out: their changes
    reach it with the next champion."""
    detector = {k: v for k, v in asdict(ctx.params.detector).items() if k not in ("cron", "model_name", "out")}
    calls = {k: v for k, v in asdict(training_calls(ctx)).items() if k != "workers"}
    return short_digest([calls, asdict(ctx.params.train), detector])


def already_built(ctx: StageContext) -> str | None:
    """Why no new detector is built now (a version of ``detector.model_name`` was built with these settings on the
    base a build would start from: the transcriber's champion by default; or there is no such champion yet), else
    None; what a scheduled build asks first. A version registered before settings were recorded counts as built
    with other settings; one built by hand without its check (``check_per_kind: 0``) has other settings too."""
    p = ctx.params.detector
    if not p.model_name:
        return None
    tracking.configure(ctx)
    try:
        base = resolve(ctx, p.base or None, "detector.base").identity
    except LookupError as exc:  # no champion yet: nothing to build on
        return str(exc)
    settings = settings_digest(ctx)
    built = [v for v in registry.versions(p.model_name)
             if v.tags.get("zhasr.parent") == base and v.tags.get(SETTINGS_TAG) == settings]
    if not built:
        return None
    newest = built[0]
    return (f"{p.model_name} v{newest.version} was built on {base} with these settings ({settings}; gate "
            f"{newest.tags['zhasr.gate']})")


def run(ctx: StageContext) -> DetectorReport:
    started, commit = time.perf_counter(), git_commit(ctx.root)
    p = ctx.params.detector
    base = resolve(ctx, p.base or None, "detector.base")
    out = ctx.root / p.out
    in_place = out / "ct2-int8"
    replaced = detector_in_place(ctx, in_place) if p.check_per_kind else None
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)  # a half-done earlier run's calls and checkpoints
    synthesize_batch(work / "incoming", training_calls(ctx))
    every_row_in_train = dataclasses.replace(ctx.params.ingest, dev_fraction=0.0, test_fraction=0.0,
                                             template_test_fraction=0.0)
    rows = decoded_rows(ingest_batches(work / "incoming", work / "dataset", every_row_in_train))
    labelled = labelled_with_numbers(ctx)
    with tracking.stage_run(ctx, "detector"):
        mlflow.set_tags({"zhasr.detector.base": base.identity, "zhasr.detector.out": str(out)})
        with progress_bar("cache lower encoder") as progress:
            trained = train_adapter(base.model_dir, rows + labelled, work / "dataset", work / "run", ctx.params.train,
                                    language=ctx.params.model.language, task=ctx.params.model.task,
                                    callbacks=[MlflowStepLogger()], progress=progress)
        tracking.log_figure_png(review.curves_figure(trained.loss_history, []), "plots/detector_loss_curve.png")
        merged = merge_adapter(base.model_dir, trained.adapter_dir, work / "hf")
        write_ct2(merged, work / "ct2-int8")
        check, verdict = None, DetectorVerdict(True, ())
        if p.check_per_kind:
            check = check_detector(ctx, base, work / "ct2-int8", replaced, work / "check")
            verdict = judge_detector(check.new, check.replaced, p)
            log_check(check, p)
        place = out if verdict.accepted else out / "rejected"
        recall = lambda scored: {k: s.recall for k, s in scored.kinds.items() if s.sentences} if scored else {}  # noqa: E731
        minutes = sum(r.duration_s for r in rows + labelled) / 60
        report = DetectorReport(str(in_place) if verdict.accepted or (in_place / "model.bin").is_file() else "",
                                base.identity, len(rows), len(labelled), round(minutes, 2), trained.steps,
                                trained.final_loss, round(time.perf_counter() - started, 1), verdict.accepted,
                                list(verdict.reasons), recall(check.new if check else None),
                                check.new.on_personal_data if check else None, recall(check.replaced if check else None),
                                "" if verdict.accepted else str(place / "ct2-int8"), replaced.identity if replaced else "",
                                naming=ctx.params.synth.personal_naming, settings=settings_digest(ctx))
        if p.model_name:  # before the swap: a build the registry could not take replaces nothing
            report = register_build(ctx, report, work, p.model_name, commit)
        place.mkdir(parents=True, exist_ok=True)
        for folder in ("hf", "ct2-int8"):  # the last detector stays until this one is complete and accepted
            shutil.rmtree(place / folder, ignore_errors=True)
            (work / folder).rename(place / folder)
        mlflow.set_tag("zhasr.detector.accepted", str(verdict.accepted).lower())
        mlflow.log_metrics({"detector_sentences": report.sentences, "detector_labelled_clips": report.labelled,
                            "detector_minutes": report.minutes,
                            "detector_steps": report.steps, "detector_final_loss": report.final_loss,
                            "detector_seconds": report.seconds, "detector_accepted": float(verdict.accepted)})
        atomic_write_json(ctx.report("detector"), report.to_dict())
    shutil.rmtree(work, ignore_errors=True)
    return report


detector_task = task(run, name="detector", cache_policy=NO_CACHE)
