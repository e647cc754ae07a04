"""Whether a newly trained number detector may replace the last one: its figures on the held-out check
sentences against ``detector:``'s floors and against the detector it would replace."""

from __future__ import annotations

from dataclasses import dataclass

from zhasr.config import DetectorParams
from zhasr.evaluation.redaction_recall import RedactionScore


@dataclass(frozen=True)
class DetectorVerdict:
    accepted: bool
    reasons: tuple[str, ...]  # each rule that failed, with its figures; empty when accepted


def _below(value: float, floor: float) -> bool:
    """``value < floor``, where both are sums of twentieths and the like: 0.85 computed as a mean reaches 0.85."""
    return round(value - floor, 9) < 0


def judge_detector(new: RedactionScore, current: RedactionScore | None, params: DetectorParams) -> DetectorVerdict:
    """The mean recall over kinds reaches ``min_mean_recall`` and each kind the check holds ``min_recall``;
    of every span, ``min_precision`` falls on personal data; the mean recall falls at most ``max_recall_drop``
    below ``current``'s (the detector in place, scored on the same decodings of the base model; None: there
    is none)."""
    reasons = [f"mean recall {100 * new.mean_recall:.1f} % < {100 * params.min_mean_recall:.1f} %"
               ] if _below(new.mean_recall, params.min_mean_recall) else []
    reasons += [f"{kind} recall {100 * s.recall:.1f} % < {100 * params.min_recall:.1f} %"
                for kind, s in new.kinds.items() if s.sentences and _below(s.recall, params.min_recall)]
    if _below(new.on_personal_data, params.min_precision):
        reasons.append(f"spans on personal data {100 * new.on_personal_data:.1f} % < "
                       f"{100 * params.min_precision:.1f} %")
    if current is not None and _below(new.mean_recall, current.mean_recall - params.max_recall_drop):
        reasons.append(f"mean recall {100 * new.mean_recall:.1f} % < the current detector's "
                       f"{100 * current.mean_recall:.1f} % - {100 * params.max_recall_drop:.1f} points")
    return DetectorVerdict(not reasons, tuple(reasons))
