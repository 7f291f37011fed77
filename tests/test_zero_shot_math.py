"""Class embeddings and class probabilities: open_clip's zero-shot recipe, written here in numpy."""

import numpy as np
import torch

from napari_vip.models.clip import class_embedding, class_probabilities


def test_class_embedding_is_the_normalised_mean_of_normalised_prompt_embeddings():
    rng = np.random.default_rng(0)
    prompts = rng.normal(size=(5, 8)) * rng.uniform(0.5, 3.0, size=(5, 1))  # rows of different lengths
    unit = prompts / np.linalg.norm(prompts, axis=1, keepdims=True)
    expected = unit.mean(axis=0) / np.linalg.norm(unit.mean(axis=0))
    got = class_embedding(torch.tensor(prompts, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, prompts.mean(axis=0) / np.linalg.norm(prompts.mean(axis=0)), atol=1e-3)


def test_class_probabilities_are_the_softmax_of_scaled_cosine_similarities():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(3, 8))
    cls = rng.normal(size=(4, 8))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    cls /= np.linalg.norm(cls, axis=1, keepdims=True)
    logits = 100.0 * img @ cls.T
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = class_probabilities(torch.tensor(img), torch.tensor(cls), 100.0)
    assert got.dtype == np.float64 and got.shape == (3, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
