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
from dataclasses import dataclass

from zhasr.bootstrap import paired_bootstrap_gain

FIT, UNFIT, INCONCLUSIVE = "fit", "unfit", "inconclusive"


@dataclass(frozen=True)
class Rise:
    rise: float  # export CER - merged CER on the whole set (fraction; positive = the export is worse)
    low: float  # lower end of the interval
    high: float  # upper end


def cer_rise(merged_errors: list[int], export_errors: list[int], reference_chars: list[int],
             samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> Rise:
    """Paired bootstrap interval of the CER rise; one entry per clip in each list."""
    # The "gain" of the merged model over the export is the export's rise.
    gain = paired_bootstrap_gain(merged_errors, export_errors, reference_chars, samples, confidence, seed)
    return Rise(gain.gain, gain.low, gain.high)


def verdict(rises: Iterable[Rise], limit: float) -> str:
    """FIT, UNFIT or INCONCLUSIVE for an export with these rises (one per set) against ``limit``."""
    rises = list(rises)
    if any(r.low > limit for r in rises):
        return UNFIT
    if all(r.high <= limit for r in rises):
        return FIT
    return INCONCLUSIVE
