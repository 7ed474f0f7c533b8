"""Qt-free pieces of the widget: output placement maths, error advice, batch defaults (no viewer needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cvdm.model import ModelMetadata
from napari_cvdm.tasks import InputError, make_condition


def test_output_pixel_centres_sit_where_the_core_resamples():
    """Bicubic up-sampling of a ramp equal to the world x coordinate must reproduce the output pixel centres."""
    from napari_cvdm._widgets.inputs import output_geometry

    p, t = 0.1, 3.0
    x_world = t + p * np.arange(24, dtype=np.float64)
    image = np.tile(x_world, (24, 1)).astype(np.float32)
    info = ModelMetadata(task="super-resolution", scale_factor=2)
    cond, scale = make_condition(image, info)
    upsampled = cond[0, 0].double().numpy() * scale.scale + scale.offset
    geometry = output_geometry((p, p), (0.0, t), scale_factor=2)
    centres = geometry.translate[1] + geometry.scale[1] * np.arange(48)
    diff = (upsampled[10] - centres)[4:-4]  # edges clamp
    # PyTorch's bicubic (a = −0.75) wobbles ±0.05 output px around a ramp; on average it is exactly on the centres.
    # A wrong convention (e.g. no half-pixel shift) would be off by q/2 = 0.025 everywhere.
    assert abs(diff.mean()) < 1e-4
    assert np.abs(diff).max() < 0.1 * p / 2
    assert geometry.scale == (p / 2, p / 2)
    np.testing.assert_allclose(geometry.translate, (-p / 4, t - p / 4))


def test_geometry_keeps_leading_axes_and_drops_the_plane_axis():
    from napari_cvdm._widgets.inputs import output_geometry

    g = output_geometry((2.0, 1.0, 0.2, 0.2), (5.0, 0.0, 1.0, 1.0), scale_factor=1, drop_axis=-3)
    assert g.scale == (2.0, 0.2, 0.2) and g.translate == (5.0, 1.0, 1.0)
    s = g.with_sample_axis()
    assert s.scale == (1.0, 2.0, 0.2, 0.2) and s.translate == (0.0, 5.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "tile size"),
        (RuntimeError("MPS backend out of memory"), "tile size"),
        (InputError("the image is constant"), "the image is constant"),
        (KeyError("boom"), "CVDM reconstruction failed: KeyError"),
    ],
)
def test_error_messages_give_advice(exc, expected):
    from napari_cvdm._widgets.workers import error_message

    assert expected in error_message(exc)


def test_oom_advice_mentions_the_current_tile():
    from napari_cvdm._widgets.workers import error_message
    from napari_cvdm.settings import ReconstructSettings

    msg = error_message(torch.OutOfMemoryError("out of memory"), ReconstructSettings(tile_size=512))
    assert "smaller tile size than 512" in msg
