"""Procedural BioSR-like structures."""

import numpy as np
import pytest

from napari_cvdm.physics.structures import STRUCTURES, render_structure


@pytest.mark.parametrize("kind", [*STRUCTURES, "mixed"])
def test_render_is_nonnegative_nonempty_and_deterministic(kind):
    a = render_structure(kind, (160, 128), 0.01565, np.random.default_rng(5))
    b = render_structure(kind, (160, 128), 0.01565, np.random.default_rng(5))
    assert a.shape == (160, 128)
    assert a.min() >= 0 and a.max() == pytest.approx(1.0)
    assert np.count_nonzero(a > 0.05) > 20
    np.testing.assert_array_equal(a, b)


def test_families_differ_in_sparsity():
    rng = np.random.default_rng(0)
    fill = {k: float(np.mean(render_structure(k, (256, 256), 0.01565, rng) > 0.05)) for k in STRUCTURES}
    assert fill["ccps"] < fill["microtubules"]  # sparse puncta vs. a filament network


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown structure"):
        render_structure("mitochondria", (32, 32), 0.01565, np.random.default_rng(0))
