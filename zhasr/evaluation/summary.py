"""The evaluate stage's report as typed records: per set, per system (reports/evaluate.json).

Rates are fractions (0.0512 = 5.12%); CER is scored with numbers in one written form on both sides,
``cer_raw`` as written. The JSON keeps one key per set beside the report's own fields, so DVC's
metrics read ``test.candidate.cer`` as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

System = Literal["candidate", "champion"]
SYSTEMS: tuple[System, ...] = ("candidate", "champion")


@dataclass(frozen=True)
class HotwordCount:
    found: int  # occurrences in the references that the hypothesis holds
    occurrences: int  # occurrences in the references


@dataclass(frozen=True)
class SystemMetrics:
    """One system on one set."""

    cer: float
    cer_raw: float
    mer: float  # mixed error rate: Han characters and Latin words as units
    substitutions: int  # character edits behind ``cer``
    deletions: int
    insertions: int
    reference_chars: int
    loops: int  # clips whose decoding repeated itself
    loop_rate: float  # loops / clips
    hallucination_rate: float  # share of clips whose insertions are at least half the reference length
    hit_token_cap: int  # clips that reached the decoder's token limit
    retried: int  # clips decoded a second time, with repeated n-grams banned (zhasr.transcribe.guard)
    rtf: float  # decoding seconds per audio second, data loading included
    hotword_recall: float | None  # None: no hotword in the references
    hotwords: dict[str, HotwordCount]
    confusions: list[tuple[str, str, int]]  # (reference, hypothesis, count), most frequent first; "" = none

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SystemMetrics:
        return cls(**{**data, "hotwords": {w: HotwordCount(**c) for w, c in data["hotwords"].items()},
                      "confusions": [tuple(c) for c in data["confusions"]]})


@dataclass(frozen=True)
class SliceRates:
    """CER of both systems on the clips of one slice (kind ``batch``, ``band``, ``noise``, ``sentence``, ...)."""

    kind: str
    value: str
    clips: int
    candidate_cer: float
    champion_cer: float
    candidate_cer_raw: float
    champion_cer_raw: float

    def cer(self, system: System, raw: bool = False) -> float:
        return getattr(self, f"{system}_cer{'_raw' if raw else ''}")


@dataclass(frozen=True)
class BaseFigures:
    """The base model on a set (the champion's figures while it is the champion), and the candidate's
    change against it with its paired bootstrap interval (positive = the candidate is worse)."""

    cer: float
    cer_raw: float
    candidate_change: float
    candidate_change_low: float
    candidate_change_high: float


@dataclass(frozen=True)
class SetSummary:
    """Candidate and champion on one evaluated set, and the base model beside them."""

    clips: int
    hours: float
    candidate: SystemMetrics
    champion: SystemMetrics
    slices: list[SliceRates]
    base: BaseFigures | None = None  # None until the evaluate stage adds it

    def system(self, name: System) -> SystemMetrics:
        return self.candidate if name == "candidate" else self.champion

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SetSummary:
        return cls(clips=data["clips"], hours=data["hours"],
                   candidate=SystemMetrics.from_dict(data["candidate"]),
                   champion=SystemMetrics.from_dict(data["champion"]),
                   slices=[SliceRates(**s) for s in data["slices"]],
                   base=BaseFigures(**data["base"]) if data.get("base") else None)


@dataclass(frozen=True)
class EvaluationSummary:
    """What the evaluate stage hands the gate, the export checks, the registry and the model card."""

    champion_version: str
    decode_cache: dict[str, dict[str, int]]  # system -> clips {"hits", "misses"} (and 30-s "encoder_hits", ...)
    whole_clip_decoding: str  # "decoded again" | "the service's own"
    sets: dict[str, SetSummary]  # test, regression, telephone, ... (and <set>-whole-clip)

    def to_dict(self) -> dict[str, Any]:
        header = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sets"}
        return header | {name: asdict(s) for name, s in self.sets.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationSummary:
        header = {f.name for f in fields(cls)} - {"sets"}
        return cls(**{k: data[k] for k in header},
                   sets={k: SetSummary.from_dict(v) for k, v in data.items() if k not in header})
