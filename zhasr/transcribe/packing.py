"""Full windows: consecutive speech pieces of one track share one 30-s encoder pass.

Whisper's encoder reads 30 s whatever it is given: a 3-s turn alone in a window pays for 30. Pieces of
one track (one channel of one input) follow each other in a window with their pauses, a pause longer
than ``pack_gap_s`` shortened to it, while the window holds at most ``pack_window_s`` (the rest of the 30 s
stays padding: a window filled to the end loses its last utterance). The window is decoded once and its
text goes back to the pieces by time, so segments stay one per piece (one per turn in split mode) with
their own times and words.

Window times are seconds from the window's first sample; a piece's times are seconds from its own start.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from zhasr.data.audio import TARGET_RATE
from zhasr.transcribe.records import Word
from zhasr.transcribe.vad import Piece

# A timed unit (a word, or a runtime's own timestamped segment) that covers this much of two pieces
# cannot be given to either: the window's text cannot be placed.
_AMBIGUOUS_S = 0.5


@dataclass(frozen=True)
class Window:
    """Pieces decoded in one encoder pass: ``pieces[i]`` starts at sample ``offsets[i]`` of the window."""

    pieces: tuple[int, ...]  # indices into the plan's pieces, in time order
    offsets: tuple[int, ...]  # samples (16 kHz) from the window's start
    length: int  # samples in the window

    @classmethod
    def single(cls, k: int, piece: Piece) -> Window:
        return cls((k,), (0,), piece.end - piece.start)

    @property
    def seconds(self) -> float:
        return self.length / TARGET_RATE


def pack(pieces: Sequence[Piece], max_s: float, gap_s: float, enabled: bool = True,
         key: Callable[[Piece], object] = lambda p: (p.source, p.channel)) -> list[Window]:
    """Windows over ``pieces`` (each at most ``max_s`` long): consecutive pieces of one ``key`` (a track)
    together while they fit, pauses over ``gap_s`` shortened to it; one window a piece when not ``enabled``.
    A piece longer than ``max_s`` (up to ``transcribe.max_piece_s``) has a window of its own."""
    if not enabled:
        return [Window.single(k, p) for k, p in enumerate(pieces)]
    limit, gap_max = int(max_s * TARGET_RATE), int(gap_s * TARGET_RATE)
    tracks: dict[object, list[int]] = {}
    for k in sorted(range(len(pieces)), key=lambda k: (pieces[k].source, pieces[k].channel, pieces[k].start)):
        tracks.setdefault(key(pieces[k]), []).append(k)
    windows = []
    for order in tracks.values():
        members, offsets, end = [order[0]], [0], _length(pieces[order[0]])
        for k in order[1:]:
            gap = _gap(pieces[members[-1]], pieces[k], gap_max)
            if end + gap + _length(pieces[k]) <= limit:
                members.append(k)
                offsets.append(end + gap)
                end += gap + _length(pieces[k])
                continue
            windows.append(Window(tuple(members), tuple(offsets), end))
            members, offsets, end = [k], [0], _length(pieces[k])
        windows.append(Window(tuple(members), tuple(offsets), end))
    return windows


def _length(piece: Piece) -> int:
    return piece.end - piece.start


def _same_track(a: Piece, b: Piece) -> bool:
    return (a.source, a.channel) == (b.source, b.channel)


def _gap(before: Piece, after: Piece, gap_max: int) -> int:
    """Samples of pause kept between two pieces in a window: as long as it was, at most ``gap_max``;
    ``gap_max`` of silence between pieces of different inputs."""
    if not _same_track(before, after):
        return gap_max
    return max(0, min(after.start - before.end, gap_max))


def window_audio(window: Window, pieces: Sequence[Piece], samples_of: Callable[[Piece], np.ndarray]) -> np.ndarray:
    """(window.length,) float32: the pieces' audio with the pauses between them, a shortened pause made of
    its first and last halves. ``samples_of(piece)``: the (n,) 16 kHz samples of the piece's track."""
    out = np.zeros(window.length, dtype=np.float32)
    members = [pieces[k] for k in window.pieces]
    for i, (piece, offset) in enumerate(zip(members, window.offsets)):
        track, end = samples_of(piece), offset + _length(piece)
        out[offset:end] = track[piece.start : piece.end]
        if i + 1 == len(members) or not _same_track(piece, members[i + 1]):
            continue
        following, next_offset = members[i + 1], window.offsets[i + 1]
        head = (next_offset - end) // 2
        tail = next_offset - end - head
        out[end : end + head] = track[piece.end : piece.end + head]
        out[next_offset - tail : next_offset] = track[following.start - tail : following.start]
    return out


def place(window: Window, pieces: Sequence[Piece], units: Sequence[Word]) -> list[tuple[Word, ...]] | None:
    """The window's timed units (words, in window seconds) given to its pieces: one tuple per piece, in the
    window's order, with times in seconds from that piece's start. A unit goes to the piece its middle
    falls in (or the nearest one, in a pause). None when a unit covers ``_AMBIGUOUS_S`` of two pieces:
    then nobody can tell whose text it is."""
    spans = [(o / TARGET_RATE, (o + _length(pieces[k])) / TARGET_RATE) for k, o in zip(window.pieces, window.offsets)]
    out: list[list[Word]] = [[] for _ in spans]
    for unit in units:
        covered = [min(unit.end, e) - max(unit.start, s) for s, e in spans]
        if sum(c >= _AMBIGUOUS_S for c in covered) > 1:
            return None
        middle = (unit.start + unit.end) / 2
        i = min(range(len(spans)), key=lambda j: 0.0 if spans[j][0] <= middle <= spans[j][1]
                else min(abs(middle - spans[j][0]), abs(middle - spans[j][1])))
        start, end = spans[i]
        out[i].append(Word(start=round(min(max(unit.start - start, 0.0), end - start), 3),
                           end=round(min(max(unit.end - start, 0.0), end - start), 3),
                           word=unit.word, probability=unit.probability))
    return [tuple(words) for words in out]


def within_segments(units: Sequence[Word], text: str, segments: Sequence[tuple[float, float, str]]) -> list[Word]:
    """``units`` (a window's aligned words, window seconds, spelling ``text`` in order) with each word's times
    kept inside the timestamped segment (the runtime's ``(start, end, text)``) that holds its first character.

    Alignment gives a pause to the word after it (that word starts where the one before ended), so the
    first word of a piece after a pause of the window has its middle in the pause, often nearer the piece
    before; Whisper's timestamp tokens start its segment after the pause. Units as they are where the
    segments' texts are not found in ``text`` in order (the guard took some of it out)."""
    words_at, segments_at = _offsets(text, [u.word for u in units]), _offsets(text, [t for _, _, t in segments])
    if words_at is None or segments_at is None or not segments:
        return list(units)
    out = []
    for unit, at in zip(units, words_at):
        k = max(0, bisect.bisect_right(segments_at, at) - 1)
        start, end = segments[k][0], max(segments[k][0], segments[k][1])
        first = min(max(unit.start, start), end)
        out.append(dataclasses.replace(unit, start=first, end=min(max(unit.end, first), end)))
    return out


def spelled(text: str, placed: Sequence[Sequence[Word]]) -> list[str] | None:
    """Each piece's share of ``text``, the window's text that ``placed`` (its units given to its pieces, in
    order) spells: from the piece's first unit to its last, written as there (digits not split where a unit
    ends). None when the units are not found in ``text`` in that order."""
    out, at = [], 0
    for units in placed:
        where = _offsets(text[at:], [u.word for u in units])
        if where is None:
            return None
        if not units:
            out.append("")
            continue
        first, at = at + where[0], at + where[-1] + len(units[-1].word)
        out.append(text[first:at].strip())
    return out


def _offsets(text: str, parts: Sequence[str]) -> list[int] | None:
    """The character offset in ``text`` of each of ``parts``, found in order; None when one is not there."""
    out, at = [], 0
    for part in parts:
        found = text.find(part, at)
        if found < 0:
            return None
        out.append(found)
        at = found + len(part)
    return out


def join_words(words: Sequence[Word]) -> str:
    """The text the words spell: Chinese characters run together, a space kept between two Latin words."""
    text = ""
    for w in words:
        if text and text[-1].isascii() and text[-1].isalnum() and w.word[:1].isascii() and w.word[:1].isalnum():
            text += " "
        text += w.word
    return text
