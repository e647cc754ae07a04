"""The nightly loop itself: three successive synthetic batches, the retraining flow after each, every
challenger that passes the gate approved, the champion tracked round after round.

    .venv/bin/python bench/retrain_batches.py [--recipe base|champion] [--rounds 3] [--clips 80]
                                              [--speakers 16] [--set KEY=VALUE ...]

Each recipe runs in a project of its own under ``runs/bench-retrain/<recipe>/`` (its own MLflow store,
Prefect home, decode cache and data; the imported whisper-base hard-linked, not copied), started empty:
round 1's champion is the base model. Round k writes batch ``bench-b<k>`` (seed k: other speakers,
voices and fillers), runs ``zhasr retrain`` as a user would, and ``zhasr approve`` when the candidate
passed. Exports are off (``export.formats=[]``): the loop is what is measured.

Printed per round: train clips (new, replayed), steps and what set them, the merge weight, wall time,
the evaluate stage's time (and its share of round 1's), the clips of the evaluation sets the champion
was decoded on in that stage and those the decode cache answered, candidate and champion CER on the
grown test split (numbers normalized), on its unseen sentences, on real-zh's judging half wideband and
through mu-law (candidate, champion, base), the telephone channel where the candidate lost most against
the base model, and the gate's verdict. The table is also
logged as an MLflow run (``bench/retrain_batches.json``) in the bench project's store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zhasr.data.ingest import GENERAL_SPEECH_SETS  # noqa: E402
from zhasr.evaluation.gate import Verdict  # noqa: E402
from zhasr.evaluation.summary import EvaluationSummary  # noqa: E402
from zhasr.model.merge import MergeReport  # noqa: E402
from zhasr.model.train import TrainReport  # noqa: E402


def zhasr(root: Path, *args: str) -> str:
    """Run ``zhasr ARGS`` in the bench project; its stdout (the JSON result). Raises with its log on failure."""
    env = {**os.environ, "ZHASR_ROOT": str(root)}
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_HOME", "PREFECT_API_URL"):  # the bench project's own stores
        env.pop(key, None)
    done = subprocess.run([str(REPO / ".venv" / "bin" / "zhasr"), *args], env=env, cwd=root, capture_output=True,
                          text=True)
    (root / "logs").mkdir(exist_ok=True)
    (root / "logs" / f"{args[0]}-{time.strftime('%H%M%S')}.log").write_text(done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise RuntimeError(f"zhasr {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def last_json(text: str) -> dict:
    """The JSON object a ``zhasr`` command prints last on stdout."""
    start = 0 if text.startswith("{") else text.rindex("\n{") + 1
    return json.loads(text[start:])


def new_project(recipe: str) -> Path:
    root = REPO / "runs" / "bench-retrain" / recipe
    shutil.rmtree(root, ignore_errors=True)
    (root / "models").mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    base = REPO / "models" / "whisper-base"
    if not (base / "config.json").is_file():
        zhasr(REPO, "import-model")
    # hard links: the model's files, not a link MLflow would refuse to log as an artifact
    shutil.copytree(base, root / "models" / "whisper-base", copy_function=os.link)
    return root


def report(root: Path, stage: str) -> dict:
    return json.loads((root / "reports" / f"{stage}.json").read_text(encoding="utf-8"))


def evaluate_seconds(root: Path, run_id: str) -> float:
    """The flow run's ``stage_evaluate_s`` in the bench project's MLflow store."""
    from mlflow.tracking import MlflowClient

    from zhasr.project import mlflow_tracking_uri

    return MlflowClient(tracking_uri=mlflow_tracking_uri(root)).get_run(run_id).data.metrics["stage_evaluate_s"]


def round_row(root: Path, k: int, seconds: float, run_id: str) -> dict:
    train, merge = TrainReport.from_dict(report(root, "train")), MergeReport.from_dict(report(root, "merge"))
    evaluation, gate = EvaluationSummary.from_dict(report(root, "evaluate")), Verdict.from_dict(report(root, "gate"))
    sets = evaluation.sets
    test = sets["test"]
    unseen = next((s for s in test.slices if s.kind == "sentence" and s.value == "unseen"), None)
    row = {"round": k, "train_clips": train.train_clips, "new": train.new_clips,
           "replayed": train.replayed_clips, "steps": train.steps, "set_by": train.limited_by,
           "weight": merge.adapter_weight, "wall_s": round(seconds), "evaluate_s": evaluate_seconds(root, run_id),
           "champion_decoded": evaluation.decode_cache["champion"]["misses"],
           "champion_cached": evaluation.decode_cache["champion"]["hits"], "test_clips": test.clips,
           "cer_candidate": test.candidate.cer, "cer_champion": test.champion.cer,
           "unseen_candidate": unseen.candidate_cer if unseen else None,
           "unseen_champion": unseen.champion_cer if unseen else None,
           "champion_version": evaluation.champion_version, "gate": "pass" if gate.passed else "fail",
           "reason": gate.reason}
    for name in GENERAL_SPEECH_SETS:
        if name in sets:
            row.update({f"{name}_candidate": sets[name].candidate.cer, f"{name}_champion": sets[name].champion.cer,
                        f"{name}_base": sets[name].base.cer})
    channels = [n for n in GENERAL_SPEECH_SETS if n != "regression" and n in sets]
    if channels:
        worst = max(channels, key=lambda n: row[f"{n}_candidate"] - row[f"{n}_base"])
        row |= {"worst_channel": worst, "worst_channel_change": row[f"{worst}_candidate"] - row[f"{worst}_base"]}
    return row


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def print_table(recipe: str, rows: list[dict]) -> None:
    print(f"\nrecipe init_from={recipe}")
    print("| round | train clips (new + replayed) | steps (set by) | weight | wall | evaluate (of round 1) | "
          "champion decoded / cached | test clips | CER candidate | "
          "CER champion | unseen: candidate / champion | real-zh: candidate / champion / base | "
          "telephone: candidate / champion / base | worst channel: candidate - base | gate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = r["evaluate_s"] / rows[0]["evaluate_s"]
        print(f"| {r['round']} | {r['train_clips']} ({r['new']} + {r['replayed']}) | {r['steps']} ({r['set_by']}) | "
              f"{r['weight']} | {r['wall_s']} s | {r['evaluate_s']:.1f} s ({share:.0%}) | "
              f"{r['champion_decoded']} / {r['champion_cached']} | {r['test_clips']} | {pct(r['cer_candidate'])} | "
              f"{pct(r['cer_champion'])} (v{r['champion_version']}) | {pct(r['unseen_candidate'])} / "
              f"{pct(r['unseen_champion'])} | {pct(r.get('regression_candidate'))} / "
              f"{pct(r.get('regression_champion'))} / {pct(r.get('regression_base'))} | "
              f"{pct(r.get('telephone_candidate'))} / {pct(r.get('telephone_champion'))} / "
              f"{pct(r.get('telephone_base'))} | {r.get('worst_channel', '')} "
              f"{100 * r.get('worst_channel_change', 0):+.2f} pts | {r['gate']} |")
    for r in rows:
        if r["gate"] != "pass":
            print(f"round {r['round']}: {r['reason']}")


def log_to_mlflow(root: Path, recipe: str, rows: list[dict], args: argparse.Namespace) -> None:
    import mlflow
    import pandas as pd

    from zhasr.project import mlflow_artifact_uri

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    if mlflow.get_experiment_by_name("zhasr-bench-retrain") is None:
        mlflow.create_experiment("zhasr-bench-retrain", artifact_location=mlflow_artifact_uri(root))
    mlflow.set_experiment("zhasr-bench-retrain")
    with mlflow.start_run(run_name=f"retrain-batches-{recipe}"):
        mlflow.log_params({"recipe": recipe, "rounds": args.rounds, "clips": args.clips, "speakers": args.speakers,
                           "overrides": json.dumps(args.set)})
        mlflow.log_table(pd.DataFrame(rows), artifact_file="bench/retrain_batches.json")
        for r in rows:
            mlflow.log_metrics({"cer_candidate": r["cer_candidate"], "cer_champion": r["cer_champion"],
                                "wall_s": r["wall_s"], "evaluate_s": r["evaluate_s"], "steps": r["steps"]},
                               step=r["round"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=("base", "champion"), default="base", help="train.init_from")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clips", type=int, default=80, help="clips per batch")
    parser.add_argument("--speakers", type=int, default=16, help="speakers per batch")
    parser.add_argument("--set", action="append", default=[], help="params override KEY=VALUE, every round")
    args = parser.parse_args()

    root = new_project(args.recipe)
    manifest = (REPO / "../shared/data/real-zh/manifest.jsonl").resolve()
    common = ["approval.timeout_s=0", "export.formats=[]", f"train.init_from={args.recipe}",
              f"regression.manifest={manifest}", *args.set]
    rows = []
    for k in range(1, args.rounds + 1):
        synth = [f"synth.batch=bench-b{k}", f"synth.seed={k}", f"synth.n_clips={args.clips}",
                 f"synth.n_speakers={args.speakers}"]
        zhasr(root, "synth", *(x for o in common + synth for x in ("--set", o)))
        started = time.perf_counter()
        result = last_json(zhasr(root, "retrain", *(x for o in common for x in ("--set", o))))
        rows.append(round_row(root, k, time.perf_counter() - started, result["mlflow_run_id"]))
        if result["passed"]:
            zhasr(root, "approve", result["version"], "--by", "bench", "--note", f"round {k}: {result['reason']}")
        print_table(args.recipe, rows)
    log_to_mlflow(root, args.recipe, rows, args)


if __name__ == "__main__":
    main()
