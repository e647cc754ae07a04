"""What a reviewer looks at in MLflow: confusion pairs, the CER-by-slice chart, the training curves, the model
card."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from zhasr.evaluation.gate import judged_general_sets  # noqa: E402
from zhasr.evaluation.summary import SYSTEMS, SetSummary, SliceRates  # noqa: E402

if TYPE_CHECKING:
    from zhasr.config import Params
    from zhasr.evaluation.gate import Verdict
    from zhasr.evaluation.summary import EvaluationSummary
    from zhasr.model.merge import MergeReport
    from zhasr.model.train import TrainReport

# Han glyphs in chart labels: the first installed CJK font wins, DejaVu (no Han) last.
plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "DejaVu Sans"]


def confusion_table(summary: SetSummary, top: int = 20) -> pd.DataFrame:
    """Most frequent character errors of each system: reference -> hypothesis ("" = deleted / inserted)."""
    rows = []
    for system in SYSTEMS:
        for ref, hyp, count in summary.system(system).confusions[:top]:
            kind = "substitution" if ref and hyp else "deletion" if ref else "insertion"
            rows.append({"system": system, "reference": ref, "hypothesis": hyp, "count": count, "kind": kind})
    return pd.DataFrame(rows, columns=["system", "reference", "hypothesis", "count", "kind"])


def cer_by_slice_figure(slices: list[SliceRates], set_name: str, max_speakers: int = 12):
    """Grouped bars, champion vs candidate CER (%) for each slice; speakers: the largest ``max_speakers``."""
    speakers = sorted((s for s in slices if s.kind == "speaker"), key=lambda s: -s.clips)[:max_speakers]
    shown = [s for s in slices if s.kind != "speaker"] + sorted(speakers, key=lambda s: s.value)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.55 * len(shown) + 2), 4.2))
    x = range(len(shown))
    width = 0.4
    for offset, system, color in ((-width / 2, "champion", "#9aa5b1"), (width / 2, "candidate", "#1f77b4")):
        axis.bar([i + offset for i in x], [100 * s.cer(system) for s in shown], width, label=system, color=color)
    axis.set_xticks(list(x))
    axis.set_xticklabels([f"{s.kind}={s.value}\n({s.clips})" for s in shown], rotation=60, ha="right",
                         fontsize=7)
    axis.set_ylabel("CER (%)")
    axis.set_title(f"CER by slice, {set_name} set (clips in brackets)")
    bounds = [i for i in range(1, len(shown)) if shown[i].kind != shown[i - 1].kind]
    for b in bounds:
        axis.axvline(b - 0.5, color="#cccccc", linewidth=0.8)
    axis.legend()
    figure.tight_layout()
    return figure


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _set_row(name: str, s: SetSummary) -> str:
    """One set's row of the model card's evaluation table."""
    c, b = s.candidate, s.champion
    base, change = (s.base.cer, f"{100 * s.base.candidate_change:+.2f} [{100 * s.base.candidate_change_low:+.2f}, "
                    f"{100 * s.base.candidate_change_high:+.2f}]") if s.base else (b.cer, "")
    return (f"| {name} | {s.clips} | {_pct(base)} | {_pct(b.cer)} ({_pct(b.cer_raw)}) | "
            f"{_pct(c.cer)} ({_pct(c.cer_raw)}) | {change} | {_pct(c.mer)} | "
            f"{_pct(b.hotword_recall)} -> {_pct(c.hotword_recall)} | {_pct(b.loop_rate)} -> {_pct(c.loop_rate)} | {_pct(c.hallucination_rate)} | {c.rtf:.3f} |")


def _what_it_is(params: Params, train: TrainReport, merge: MergeReport) -> str:
    tried = ", ".join(str(t.adapter_weight) for t in merge.weights_tried) or "one"
    return (f"Whisper fine-tuned for Mandarin call-center speech: {params.train.method} adapter "
            f"(rank {params.train.rank}, targets {params.train.targets}) on {train.start}, merged "
            f"into a plain Hugging Face model at weight {merge.adapter_weight} (0: the start model, 1: as "
            f"trained; weights tried: {tried}).")


def _training(params: Params, train: TrainReport) -> str:
    dev = " → ".join(f"{_pct(cer)} (step {step})" for step, cer in train.dev_cer_history)
    best = f"; best at step {train.best_step}" if train.best_step is not None else "; no dev evaluation"
    return (f"- {train.train_clips} clips ({train.new_clips} new, {train.replayed_clips} replayed), {train.steps} "
            f"steps of batch {params.train.batch_size} (set by {train.limited_by}), learning rate "
            f"{params.train.learning_rate}; dev CER {dev}{best}")


def _evaluation(evaluation: EvaluationSummary, verdict: Verdict) -> list[str]:
    sets, gain = evaluation.sets, verdict.gain
    return [
        f"## Evaluation against champion v{evaluation.champion_version}",
        "",
        "CER with numbers in one written form (raw CER, numbers as written, in brackets).",
        "",
        "| set | clips | CER base | CER champion | CER candidate | candidate - base (95% interval) | MER candidate | "
        "hotword recall | loops | hallucinations | RTF |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_set_row(name, sets[name]) for name in ("test", *judged_general_sets(sets)) if name in sets),
        "",
        f"CER gain {100 * gain.gain:+.2f} points, {gain.confidence:.0%} paired-bootstrap interval "
        f"[{100 * gain.low:+.2f}, {100 * gain.high:+.2f}].",
        "",
        f"## Gate: {'PASS' if verdict.passed else 'FAIL'}",
        "",
        *(f"- {'pass' if r.passed else '**FAIL**'} `{r.rule}`: {r.detail}" for r in verdict.rules),
        "",
        "## Slices (test set)",
        "",
        "| slice | clips | champion | candidate |",
        "|---|---|---|---|",
        *(f"| {s.kind}={s.value} | {s.clips} | {_pct(s.champion_cer)} | {_pct(s.candidate_cer)} |"
          for s in sets["test"].slices if s.kind != "speaker"),
        "",
        "## Most frequent errors (test set, candidate)",
        "",
        ", ".join(f"{r or '∅'}→{h or '∅'} ×{n}" for r, h, n in sets["test"].candidate.confusions[:10]),
    ]


def model_card(*, name: str, version: str, params: Params, lineage: dict[str, str],
               train: TrainReport, merge: MergeReport, evaluation: EvaluationSummary, verdict: Verdict) -> str:
    """Markdown for the model version's description and ``model_card.md`` in the run."""
    lines = [
        f"# {name} v{version}",
        "",
        _what_it_is(params, train, merge),
        "",
        "## Lineage",
        "",
        *(f"- {k}: `{v}`" for k, v in lineage.items()),
        "",
        "## Training",
        "",
        _training(params, train),
        "",
        *_evaluation(evaluation, verdict),
        "",
        "## Limits",
        "",
        "- Scored on normalized text: punctuation removed, traditional to simplified, full-width to half-width, "
        "numbers in one written form on both sides (raw CER keeps them as written).",
        "- The test split holds the speakers and the held-out templates of every batch so far "
        "(sentence=unseen: never trained on); slices under "
        f"{params.gate.slice_min_clips} clips are shown but not gated.",
        "- Promotion to champion needs a person's approval (`zhasr approve`).",
    ]
    return "\n".join(lines) + "\n"


def curves_figure(loss: list[tuple[int, float]], dev_cer: list[tuple[int, float]]):
    """Training loss and, where measured, dev CER against the optimizer step; each a list of (step, value)."""
    figure, left = plt.subplots(figsize=(7, 3.8))
    if loss:
        left.plot(*zip(*loss), color="tab:blue", label="training loss")
    left.set_xlabel("optimizer step")
    left.set_ylabel("training loss (nats/token)", color="tab:blue")
    left.grid(alpha=0.3)
    if dev_cer:
        right = left.twinx()
        steps, cer = zip(*dev_cer)
        right.plot(steps, [100 * c for c in cer], color="tab:red", marker="o", label="dev CER")
        right.set_ylabel("dev CER (%)", color="tab:red")
    left.set_title("Training loss and dev CER" if dev_cer else "Training loss")
    figure.tight_layout()
    return figure
