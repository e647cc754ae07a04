"""Whether an export keeps the merged model's accuracy: fit, unfit or inconclusive, from the interval.

The rise of an export's CER over the merged model it was written from is
estimated per set by a paired bootstrap over clips. A point estimate near the
limit flips between machines (a few clips decoded differently), so the verdict
reads the interval instead:

- fit: the upper end of the interval is within the limit on every set;
- unfit: the lower end is above the limit on some set;
- inconclusive: otherwise; too few clips to tell. Such an export is kept and
  tagged, never served as fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from zhasr.config import ExportParams
from zhasr.evaluation.clips import ClipScore, candidate_gain
from zhasr.evaluation.metrics import character_error_rate
from zhasr.export.formats import LOW_BIT

FIT, UNFIT, INCONCLUSIVE = "fit", "unfit", "inconclusive"


@dataclass(frozen=True)
class Rise:
    rise: float  # export CER - merged CER on the whole set (fraction; positive = the export is worse)
    low: float  # lower end of the interval
    high: float  # upper end


@dataclass(frozen=True)
class SetResult:
    """An export on one evaluated set."""

    cer: float  # fraction, numbers in one written form
    rise: Rise  # over the merged model, with its interval
    rtf: float  # decoding seconds per audio second, data loading included


@dataclass(frozen=True)
class ExportResult:
    """One export format's row of the export report (reports/export.json)."""

    format: str  # one of zhasr.config.EXPORT_FORMATS
    path: str  # where it was written (models/exports/ is overwritten by the next merge)
    size_mb: float
    write_s: float
    sets: dict[str, SetResult]  # by evaluated set: test, regression, telephone, ...
    limit: float  # the CER rise allowed (fraction)
    verdict: str  # FIT | UNFIT | INCONCLUSIVE
    uri: str | None = None  # runs:/<run>/exports/<format> once kept with the run (fit and inconclusive ones)

    @property
    def fit(self) -> bool:
        return self.verdict == FIT

    def kept(self, uri: str) -> ExportResult:
        return replace(self, uri=uri)

    def flat(self) -> dict[str, float]:
        """Its figures under one name each (``cer_test``, ``cer_test_increase_high``, ``rtf_test``, ...): the
        MLflow metrics and table columns."""
        figures = {"size_mb": self.size_mb, "write_s": self.write_s}
        for name, r in self.sets.items():
            figures |= {f"cer_{name}": r.cer, f"cer_{name}_increase": r.rise.rise,
                        f"cer_{name}_increase_low": r.rise.low, f"cer_{name}_increase_high": r.rise.high,
                        f"rtf_{name}": r.rtf}
        return figures

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportResult:
        sets = {name: SetResult(r["cer"], Rise(**r["rise"]), r["rtf"]) for name, r in data["sets"].items()}
        return cls(**{**data, "sets": sets})


def verdict(rises: Iterable[Rise], limit: float) -> str:
    """FIT, UNFIT or INCONCLUSIVE for an export with these rises (one per set) against ``limit``."""
    rises = list(rises)
    if any(r.low > limit for r in rises):
        return UNFIT
    if all(r.high <= limit for r in rises):
        return FIT
    return INCONCLUSIVE


def limit_for(fmt: str, params: ExportParams) -> float:
    """The largest CER rise ``fmt`` may show: the looser limit for 4- and 5-bit formats."""
    return params.low_bit_max_cer_increase if fmt in LOW_BIT else params.max_cer_increase


@dataclass(frozen=True)
class ExportReport:
    """The export stage's report (reports/export.json)."""

    reference_cer: dict[str, float]  # the merged model's CER per set, as evaluation measured it
    exports: list[ExportResult]

    def to_dict(self) -> dict[str, Any]:
        return {"reference_cer": self.reference_cer, "exports": [e.to_dict() for e in self.exports]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportReport:
        return cls(data["reference_cer"], [ExportResult.from_dict(e) for e in data["exports"]])


def rise_over_merged(references: list[str], merged: list[ClipScore], texts: list[str], samples: int = 1000,
                     confidence: float = 0.95) -> tuple[float, Rise]:
    """The export's CER on one set (numbers normalized, as evaluation scores) and its rise over the merged
    model, from the set's ``references``, the merged model's clips as evaluation scored them (it was the
    candidate there) and the export's ``texts`` (same clips, same order). The interval resamples speakers."""
    scored = character_error_rate(references, texts, numbers=True)
    # the "gain" of the merged model over the export is the export's rise
    gain = candidate_gain(merged, [e.errors for e in scored.utterances], samples, confidence)
    return scored.rate, Rise(gain.gain, gain.low, gain.high)
