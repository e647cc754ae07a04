"""Evaluation's shared lower encoder: a model with the same lower layers reads the windows another model
computed and still gets its own encoder's output; a model whose lower layers differ, or a broken entry,
is computed afresh, never handed stored states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from zhasr.model.shared_encoder import SharedLowerEncoder

SHARED = 1  # of the tiny model's 2 encoder layers


def changed_copy(model_dir, out_dir, encoder_part: str):
    """The model with one part of its encoder (``"layers.1"``, ``"conv1"``) and a decoder layer moved,
    saved to ``out_dir``."""
    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    with torch.no_grad():
        for module in (model.model.encoder.get_submodule(encoder_part), model.model.decoder.layers[0]):
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(out_dir)
    return out_dir


def own_encoder(model_dir, features: np.ndarray) -> np.ndarray:
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        return model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()


@pytest.fixture(scope="module")
def features(tiny_model_dir):
    mels = WhisperForConditionalGeneration.from_pretrained(tiny_model_dir).config.num_mel_bins
    return np.random.default_rng(0).uniform(-1.0, 1.0, (2, mels, 3000)).astype(np.float32)


def test_a_model_sharing_the_lower_layers_reads_them_and_gets_its_own_output(tiny_model_dir, features, tmp_path):
    torch.manual_seed(0)
    tuned = changed_copy(tiny_model_dir, tmp_path / "tuned", f"layers.{SHARED}")  # upper layer and decoder moved
    base = SharedLowerEncoder(tiny_model_dir, SHARED, tmp_path / "store")
    base_out = base(features)
    assert (base.hits, base.misses) == (0, 2)

    shared = SharedLowerEncoder(tuned, SHARED, tmp_path / "store")
    tuned_out = shared(features)
    assert shared.folder == base.folder and (shared.hits, shared.misses) == (2, 0)
    assert tuned_out.shape == (2, 1500, 64) and tuned_out.dtype == np.float32
    # Its own encoder's output, up to the float16 the lower states are kept in; not the base model's.
    np.testing.assert_allclose(tuned_out, own_encoder(tuned, features), atol=2e-2)
    np.testing.assert_allclose(base_out, own_encoder(tiny_model_dir, features), atol=2e-2)
    assert np.abs(tuned_out - base_out).max() > 0.2


def test_other_lower_layers_or_a_broken_entry_are_computed_again(tiny_model_dir, features, tmp_path):
    torch.manual_seed(1)
    store = tmp_path / "store"
    first = SharedLowerEncoder(tiny_model_dir, SHARED, store)
    expected = first(features)

    for part in ("layers.0", "conv1", "conv2"):  # a shared layer, or what runs before the layers
        other = SharedLowerEncoder(changed_copy(tiny_model_dir, tmp_path / part, part), SHARED, store)
        other(features)
        assert other.folder != first.folder and (other.hits, other.misses) == (0, 2), part

    entries = sorted(first.folder.glob("*.npy"))
    entries[0].write_bytes(b"not an array")
    np.save(entries[1], np.zeros((3, 64), np.float16))  # an array of the wrong shape
    again = SharedLowerEncoder(tiny_model_dir, SHARED, store)
    np.testing.assert_array_equal(again(features), expected)
    assert (again.hits, again.misses) == (0, 2)
    rewritten = SharedLowerEncoder(tiny_model_dir, SHARED, store)
    np.testing.assert_array_equal(rewritten(features), expected)
    assert (rewritten.hits, rewritten.misses) == (2, 0)


def test_more_shared_layers_than_the_encoder_has_is_an_error(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="3 shared encoder layers; the encoder has 2"):
        SharedLowerEncoder(tiny_model_dir, 3, tmp_path)
