"""Paired bootstrap confidence interval for the CER difference of two systems on the same clips."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GainInterval:
    gain: float  # champion CER - candidate CER on all clips (0-1; positive = candidate better)
    low: float  # lower bound of the interval
    high: float  # upper bound
    confidence: float  # e.g. 0.95
    samples: int  # bootstrap resamples
    units: int = 0  # what was resampled: speakers where clips were grouped by speaker, else clips (0: not recorded)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_loss(self) -> tuple[float, float, float]:
        """(loss, low, high): the same interval read the other way, positive = the candidate is worse
        (``0.0 - x``, so that no bound reads "-0.00")."""
        return 0.0 - self.gain, 0.0 - self.high, 0.0 - self.low


def points_with_interval(change: float, low: float, high: float) -> str:
    """A change of an error rate (fractions) in percentage points with its interval: ``+0.62 pts [-1.10, +2.30]``."""
    return f"{100 * change:+.2f} pts [{100 * low:+.2f}, {100 * high:+.2f}]"


def over_limit(loss: float, low: float, limit: float, beyond_noise: bool) -> bool:
    """Whether a loss (or a rise) counts against ``limit``: over it, and with ``beyond_noise`` also with
    its interval's lower end above zero. On a few speakers a loss a clip or a character over the limit
    is noise; the merge guard and the gate's loop rule read it so."""
    return loss > limit and (low > 0 or not beyond_noise)


def paired_bootstrap_gain(candidate_errors: Sequence[int], champion_errors: Sequence[int],
                          reference_lens: Sequence[int], samples: int = 1000, confidence: float = 0.95,
                          seed: int = 0, speakers: Sequence[str] | None = None) -> GainInterval:
    """Percentile interval of the corpus-CER gain, resampling clips with replacement.

    Each list has one entry per clip: edit counts of each system and reference length in characters.
    Clips are resampled as pairs, so what both systems find hard cancels out (Bisani & Ney, 2004).
    With ``speakers`` (one label per clip), a speaker's clips are resampled together: clips of one
    voice are not independent, and a set of 11 clips by one speaker and 6 by six others holds 7
    draws of a voice, not 17 (a cluster bootstrap; the interval widens where one speaker dominates).
    """
    cand, champ, lens = (np.asarray(x, dtype=np.float64) for x in (candidate_errors, champion_errors, reference_lens))
    if not (len(cand) == len(champ) == len(lens)) or not len(lens):
        raise ValueError(f"need the same non-zero number of clips, got {len(cand)}, {len(champ)}, {len(lens)}")
    if speakers is not None:
        if len(speakers) != len(lens):
            raise ValueError(f"need one speaker per clip, got {len(speakers)} for {len(lens)} clips")
        _, unit = np.unique(np.asarray(speakers), return_inverse=True)
        cand, champ, lens = (np.bincount(unit, weights=x) for x in (cand, champ, lens))  # (speakers,)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(lens), size=(samples, len(lens)))  # (samples, units)
    gains = (champ[idx].sum(1) - cand[idx].sum(1)) / lens[idx].sum(1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    return GainInterval(float((champ.sum() - cand.sum()) / lens.sum()), float(low), float(high), confidence, samples,
                        len(lens))
