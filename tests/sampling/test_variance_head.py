"""The learned error variance: moment matching recovers a known σ², starts at the raw spread, checks its inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cvdm.sampling.variance_head import (
    HeadInputs,
    VarianceHead,
    fit_variance_head,
    gaussian_nll,
    predict_std,
)


def _images(n: int, seed: int) -> list[tuple[HeadInputs, np.ndarray]]:
    """Errors whose std is 3× the raw spread on images with condition 1 and 1× with condition 0, and twice as
    large where the input plane is bright: a spread-only map cannot tell these apart."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        plane = (rng.random((1, 32, 32)) > 0.5).astype(np.float32)
        plane = np.repeat(np.repeat(plane[:, ::8, ::8], 8, axis=1), 8, axis=2)  # 8 px blocks
        variance = np.full((32, 32), 0.01, np.float32) * rng.uniform(0.5, 2.0)
        kind = k % 2
        std = np.sqrt(variance) * (3.0 if kind else 1.0) * (1 + plane[0])
        error = (rng.standard_normal((32, 32)) * std).astype(np.float32)
        out.append((HeadInputs(plane, np.zeros((32, 32), np.float32), variance, (float(kind),)), error))
    return out


def _true_std(inputs: HeadInputs) -> np.ndarray:
    return np.sqrt(inputs.variance) * (3.0 if inputs.condition[0] else 1.0) * (1 + inputs.planes[0])


def test_moment_matching_recovers_a_known_error_std():
    torch.manual_seed(0)
    head, history = fit_variance_head(_images(48, 0), _images(8, 1), steps=300, batch=8, lr=1e-2)
    test = _images(8, 2)
    ratios = [np.median(predict_std(head, i) / _true_std(i)) for i, _ in test]
    assert np.allclose(ratios, 1.0, atol=0.2), ratios
    assert min(history["valid"]) < history["valid"][0] - 0.1  # it learned beyond the scaled raw spread


def test_the_head_starts_at_the_raw_spread():
    inputs = _images(1, 3)[0][0]
    head = VarianceHead(inputs.tensor().shape[1], inputs.log_var_channel)
    assert np.allclose(predict_std(head, inputs) ** 2, inputs.variance, rtol=1e-5)


def test_the_nll_is_smallest_at_the_true_variance():
    error = torch.from_numpy(np.random.default_rng(4).standard_normal(200_000).astype(np.float32)) * 0.5
    values = {s2: float(gaussian_nll(torch.full_like(error, np.log(s2)), error)) for s2 in (0.125, 0.25, 0.5)}
    assert min(values, key=values.get) == 0.25


def test_a_head_needs_both_sets_a_real_variance_channel_and_one_grid():
    images = _images(2, 5)
    with pytest.raises(ValueError, match="validation"):
        fit_variance_head(images, [])
    with pytest.raises(ValueError, match="log-variance channel 7"):
        VarianceHead(4, 7)
    with pytest.raises(ValueError, match="onto the output grid"):
        HeadInputs(np.zeros((2, 16, 16)), np.zeros((32, 32)), np.ones((32, 32))).tensor()
