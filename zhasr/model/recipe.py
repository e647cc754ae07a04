"""How much a round trains: which clips (new batches and replayed ones) and how many steps.

The step count follows the data: ``train.epochs`` passes over the round's training windows (a clip each, or
several clips each when packed), capped by
``train.max_steps`` and by the steps that fit in ``train.time_budget_s`` at the measured step time,
then rounded down to a multiple of the evaluation interval so that the last step is evaluated.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

from zhasr.config import TrainParams
from zhasr.data.manifest import ManifestRow


@dataclass(frozen=True)
class StepPlan:
    steps: int  # optimizer steps
    eval_every: int  # dev CER and a checkpoint every this many steps
    warmup_steps: int  # learning-rate warm-up
    limited_by: str  # what set the count: "epochs", "max_steps" or "time_budget"
    step_seconds: float | None = None  # measured before training; None without a time budget


def plan_steps(windows: int, params: TrainParams, processes: int = 1, step_seconds: float | None = None) -> StepPlan:
    """The steps for ``windows`` training windows on ``processes`` data-parallel processes.

    ``step_seconds``: wall time of one optimizer step, needed when ``params.time_budget_s`` is set.
    """
    per_step = params.batch_size * params.grad_accum * processes
    limits = {"epochs": max(1, math.ceil(params.epochs * windows / per_step))}
    if params.max_steps:
        limits["max_steps"] = params.max_steps
    if params.time_budget_s and step_seconds:
        limits["time_budget"] = max(1, int(params.time_budget_s // step_seconds))
    limited_by = min(limits, key=lambda k: (limits[k], k != "epochs"))
    raw = limits[limited_by]
    eval_every = max(1, raw // params.evaluations)
    steps = eval_every * (raw // eval_every)
    return StepPlan(steps=steps, eval_every=eval_every, warmup_steps=round(params.warmup_ratio * steps),
                    limited_by=limited_by, step_seconds=step_seconds)


@dataclass(frozen=True)
class RoundOrigin:
    """Where a round's clips came from: kept in its plan, so that a resumed run reports the same."""

    new_clips: int  # clips of batches the start model had not learned
    replayed_clips: int  # clips of batches it had learned, drawn again
    learned_batches: list[str]  # the batches the trained model will have learned
    start: str  # the model the round started from ("base", "zhasr-whisper v3")


@dataclass(frozen=True)
class SavedPlan:
    """A training folder's ``plan.json``: the steps, the clips and their origin; a resumed run keeps all three.
    The file is flat: StepPlan's fields, ``rows``, ``windows`` and RoundOrigin's fields."""

    steps: StepPlan
    rows: list[str]  # ids of the clips trained on, telephone copies and pseudo-labelled clips included
    windows: int  # training windows they were packed into
    origin: RoundOrigin | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.steps), "rows": self.rows, "windows": self.windows,
                **(asdict(self.origin) if self.origin else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SavedPlan:
        def of(record: type) -> dict[str, Any]:
            return {f.name: data[f.name] for f in fields(record) if f.name in data}

        origin = of(RoundOrigin)
        return cls(StepPlan(**of(StepPlan)), list(data["rows"]), int(data.get("windows", 0)),
                   RoundOrigin(**origin) if len(origin) == len(fields(RoundOrigin)) else None)


@dataclass(frozen=True)
class RoundRows:
    rows: list[ManifestRow]  # the clips this round trains on: new ones, then replayed ones
    new: int  # clips of batches the start model has not learned
    replayed: int  # clips of batches it has learned, drawn again
    learned_batches: list[str]  # the batches the trained model will have learned


def select_rows(train_rows: list[ManifestRow], learned: set[str], init_from: str, replay_ratio: float,
                seed: int = 0) -> RoundRows:
    """The round's clips. From the base model every train clip; from the champion the clips of batches
    it has not learned (``learned``: its batches) and ``replay_ratio`` replayed clips of its batches per
    new clip, drawn with ``seed``, so the newest batch does not wash out the rest. Nothing new: all
    clips again."""
    batches = sorted({r.batch for r in train_rows} | learned)
    new = [r for r in train_rows if r.batch not in learned]
    earlier = [r for r in train_rows if r.batch in learned]
    if init_from == "base":  # the start model is the base model: ``learned`` is empty, every clip is new
        return RoundRows(new + earlier, len(new), len(earlier), batches)
    if not new:
        return RoundRows(earlier, 0, len(earlier), batches)
    replayed = random.Random(seed).sample(earlier, min(len(earlier), round(replay_ratio * len(new))))
    return RoundRows(new + replayed, len(new), len(replayed), batches)
