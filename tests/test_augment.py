"""Telephone augmentation of training clips: a share of the wideband clips, one codec each, the same every time."""

from __future__ import annotations

from collections import Counter

import numpy as np
from conftest import manifest_row, write_tone

from zhasr.data.audio import load_16k
from zhasr.data.augment import chosen_codec, every_channel, telephone_augmented


def test_a_hash_picks_the_share_and_the_codec_of_each_clip():
    codecs = ["mulaw", "alaw", "amr-nb"]
    picks = [chosen_codec(f"{i:064x}", codecs, 0.5) for i in range(3000)]
    counts = Counter(picks)
    assert abs(counts[None] / 3000 - 0.5) < 0.03  # half the clips stay as they are
    assert all(abs(counts[c] / 3000 - 0.5 / 3) < 0.03 for c in codecs)  # the rest spread over the codecs
    assert picks == [chosen_codec(f"{i:064x}", codecs, 0.5) for i in range(3000)]  # the same every epoch and round
    assert chosen_codec("ab" * 32, codecs, 0.0) is None and chosen_codec("ab" * 32, [], 1.0) is None


def test_wideband_clips_go_through_their_codec_once_and_narrowband_ones_stay(tmp_path):
    dataset, out = tmp_path / "dataset", tmp_path / "augmented"
    rows = []
    for i in range(6):
        write_tone(dataset / f"{i}.wav", 1.0, freq=200 + 40 * i)
        rows.append(manifest_row(id=f"c{i}", audio=f"{i}.wav", audio_sha256=f"{i:064x}", band="wideband"))
    rows.append(manifest_row(id="phone", audio="0.wav", audio_sha256="f" * 64, band="telephone"))
    augmented = telephone_augmented(rows, dataset, out, ["alaw", "amr-nb"], fraction=1.0)
    assert [r.id for r in augmented] == [r.id for r in rows] and augmented[-1] is rows[-1]
    for original, row in zip(rows[:-1], augmented):
        assert row.band == "telephone" and row.codec in ("alaw", "amr-nb")
        heard = load_16k(dataset / row.audio)  # an absolute path: the dataset folder does not change it
        spectrum = np.abs(np.fft.rfft(heard)) ** 2
        assert spectrum[np.fft.rfftfreq(len(heard), 1 / 16000) > 4200].sum() < 0.01 * spectrum.sum()  # 8-kHz band
        assert len(heard) == len(load_16k(dataset / original.audio))
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 6 and telephone_augmented(rows, dataset, out, ["alaw", "amr-nb"], 1.0) == augmented
    twins = telephone_augmented(rows, dataset, out, ["alaw", "amr-nb"], 1.0, twins=True)
    assert twins == [r for original, heard in zip(rows[:-1], augmented) for r in (original, heard)] + [rows[-1]]


def test_every_channel_keeps_each_wideband_clip_and_adds_it_through_every_codec(tmp_path):
    dataset, out = tmp_path / "dataset", tmp_path / "augmented"
    write_tone(dataset / "a.wav", 1.0)
    rows = [manifest_row(id="a", audio_sha256="a" * 64, band="wideband", text_norm="你好"),
            manifest_row(id="phone", audio="a.wav", audio_sha256="b" * 64, band="telephone", text_norm="喂")]
    heard = every_channel(rows, dataset, out, ["mulaw", "amr-nb-lossy"])
    assert [(r.id, r.codec) for r in heard] == [("a", None), ("a", "mulaw"), ("a", "amr-nb-lossy"),
                                                          ("phone", None)]
    assert heard[0] is rows[0] and {r.text_norm for r in heard[:3]} == {"你好"}  # the text goes with the audio
    assert sorted(p.name for p in out.iterdir()) == [f"{'a' * 64}.amr-nb-lossy.wav", f"{'a' * 64}.mulaw.wav"]
