"""The promotion gate: rules from params.yaml over the evaluation of candidate and champion.

Input is the evaluate stage's sets (zhasr.evaluation.summary: ``{"test": ..., "regression": ...,
"telephone": ..., "telephone-alaw": ...}``) and the test split's clips (for the paired bootstrap). Every
rule's outcome is kept, so a reviewer sees why, not only whether.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from zhasr.config import GateParams
from zhasr.data.ingest import GENERAL_SPEECH_SETS
from zhasr.evaluation.bootstrap import GainInterval, over_limit
from zhasr.evaluation.clips import ClipScore, candidate_gain, loop_rise
from zhasr.evaluation.summary import SetSummary

# general speech is judged twice where the service's decoding is not whole clips without a prompt: the
# second decoding's sets are named <set><WHOLE_CLIP_SUFFIX> in the evaluation
WHOLE_CLIP_SUFFIX = "-whole-clip"


def judged_general_sets(sets: dict[str, SetSummary]) -> list[str]:
    """The general-speech sets the gate reads, in order: each set as the service decodes it, then as
    whole clips without a prompt when that decoding differs (``regression``, ``regression-whole-clip``, ...)."""
    return [name for base in GENERAL_SPEECH_SETS for name in (base, f"{base}{WHOLE_CLIP_SUFFIX}")
            if name in sets or name in ("regression", "telephone")]


@dataclass(frozen=True)
class RuleOutcome:
    rule: str  # short name, also the MLflow tag suffix: zhasr.gate.<rule>
    passed: bool
    detail: str  # the numbers behind the outcome


@dataclass(frozen=True)
class Verdict:
    passed: bool
    rules: list[RuleOutcome]
    gain: GainInterval

    @property
    def reason(self) -> str:
        failed = [f"{r.rule}: {r.detail}" for r in self.rules if not r.passed]
        return "; ".join(failed) if failed else f"all {len(self.rules)} rules pass"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "rules": [asdict(r) for r in self.rules],
                "gain": asdict(self.gain)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(data["passed"], [RuleOutcome(**r) for r in data["rules"]], GainInterval(**data["gain"]))


def _points(x: float) -> str:
    return f"{100 * x:+.2f} pts"


def _regression_rule(evaluated: SetSummary | None, rule: str, what: str, limit: float) -> RuleOutcome:
    """General speech must not get worse by more than ``limit`` (CER as a fraction) than the better of the
    champion and the base model: each round may move only as far as the rounds before left room for."""
    if evaluated is None:
        return RuleOutcome(rule, True, f"no {what} evaluated")
    champion = evaluated.champion.cer
    base = evaluated.base.cer if evaluated.base else champion
    reference, which = (champion, "champion") if champion <= base else (base, "base model")
    loss = evaluated.candidate.cer - reference
    return RuleOutcome(rule, loss <= limit,
                       f"CER {reference:.2%} ({which}; champion {champion:.2%}, base {base:.2%}) -> "
                       f"{evaluated.candidate.cer:.2%} on {evaluated.clips} clips, change {_points(loss)}, "
                       f"limit {_points(limit)}")


def decide(sets: dict[str, SetSummary], test_clips: list[ClipScore], rules: GateParams, seed: int = 0) -> Verdict:
    test = sets["test"]
    cand, champ = test.candidate, test.champion
    gain = candidate_gain(test_clips, samples=rules.bootstrap_samples, confidence=rules.confidence, seed=seed)
    outcomes = [
        RuleOutcome("cer_gain", gain.gain > rules.min_cer_gain,
                    f"CER {cand.cer:.2%} vs champion {champ.cer:.2%}: gain {_points(gain.gain)}, "
                    f"needs > {_points(rules.min_cer_gain)}"),
    ]
    relative = gain.gain / champ.cer if champ.cer > 0 else 0.0
    outcomes.append(RuleOutcome("relative_gain", relative >= rules.min_relative_gain,
                                f"{relative:.1%} fewer errors, needs >= {rules.min_relative_gain:.1%}"))
    if rules.require_significant:
        outcomes.append(RuleOutcome(
            "significant", gain.low > 0,
            f"{gain.confidence:.0%} interval of the gain [{_points(gain.low)}, {_points(gain.high)}] "
            f"over {gain.samples} paired resamples of {gain.units} speakers ({len(test_clips)} clips), "
            f"needs to lie above 0"))
    gated = [s for s in test.slices if s.clips >= rules.slice_min_clips]
    worst = max(gated, key=lambda s: s.candidate_cer - s.champion_cer, default=None)
    if worst is None:
        outcomes.append(RuleOutcome("slices", True, f"no slice has {rules.slice_min_clips}+ clips"))
    else:
        loss = worst.candidate_cer - worst.champion_cer
        outcomes.append(RuleOutcome(
            "slices", loss <= rules.max_slice_loss,
            f"worst of {len(gated)} slices: {worst.kind}={worst.value} ({worst.clips} clips) "
            f"{worst.champion_cer:.2%} -> {worst.candidate_cer:.2%}, change {_points(loss)}, "
            f"limit {_points(rules.max_slice_loss)}"))
    for set_name in judged_general_sets(sets):  # real speech's judging half, wideband and per channel
        outcomes.append(_regression_rule(sets.get(set_name), f"{set_name.replace('-', '_')}_set",
                                         f"{set_name} set", rules.max_regression_loss))
    rise, low, high = loop_rise(test_clips, rules.bootstrap_samples, rules.confidence, seed)
    outcomes.append(RuleOutcome(
        "loop_rate", not over_limit(rise, low, rules.max_loop_rate_increase, rules.loops_beyond_noise),
        f"loops {champ.loop_rate:.1%} -> {cand.loop_rate:.1%} of clips, rise {_points(rise)} "
        f"[{_points(low)}, {_points(high)}], limit {_points(rules.max_loop_rate_increase)}"
        f"{' where the interval lies above 0' if rules.loops_beyond_noise else ''}"))
    return Verdict(all(o.passed for o in outcomes), outcomes, gain)
