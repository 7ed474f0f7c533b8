"""Bundled sample data (files, metadata, napari layers) and the npe2 manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napari_cvdm
from napari_cvdm.sample_data import SAMPLE_DIR, load_sample, sample_names

MANIFEST = Path(napari_cvdm.__file__).parent / "napari.yaml"


@pytest.mark.parametrize(
    ("name", "shape", "pixel_um"),
    [
        ("widefield", (256, 256), 0.0626),
        ("widefield-sim-truth", (512, 512), 0.0313),
        ("defocus-pair", (2, 256, 256), 0.21),
        ("defocus-pair-phase-truth", (256, 256), 0.21),
    ],
)
def test_load_sample(name, shape, pixel_um):
    data, meta = load_sample(name)
    assert data.shape == shape and data.dtype == np.float32 and np.isfinite(data).all()
    assert meta["pixel_um"] == pytest.approx(pixel_um)
    assert meta["partner"] in sample_names() and meta["simulation"]["seed"] >= 0


def test_samples_are_small_and_unknown_names_are_explained():
    assert sum(p.stat().st_size for p in SAMPLE_DIR.glob("*.tif")) < 2_000_000
    with pytest.raises(KeyError, match="widefield"):
        load_sample("nope")


def test_sample_layers_overlay_their_truth():
    from napari_cvdm._sample_data import defocus_pair_sample, widefield_sample

    (wf, wf_kw, kind), (sim, sim_kw, _) = widefield_sample()
    assert wf.shape == (256, 256)
    assert kind == "image" and wf_kw["name"].startswith("widefield (simulated microtubules")
    assert sim_kw["name"] == "SIM ground truth" and sim.shape == (512, 512) and not sim_kw["visible"]
    np.testing.assert_allclose(wf_kw["scale"], (0.0626, 0.0626))
    np.testing.assert_allclose(sim_kw["scale"], (0.0313, 0.0313))
    np.testing.assert_allclose(sim_kw["translate"], (-0.01565, -0.01565))
    (stack, st_kw, _), (phase, ph_kw, _) = defocus_pair_sample()
    assert st_kw["name"] == "I(−d)/I(+d) stack" and stack.shape == (2, 256, 256)
    assert ph_kw["name"] == "phase ground truth (rad)" and phase.shape == (256, 256)
    np.testing.assert_allclose(st_kw["scale"], (1.0, 0.21, 0.21))


def test_manifest_is_valid_and_importable():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(MANIFEST)
    pm.validate_imports()
    assert pm.name == "napari-cvdm"
    assert [w.display_name for w in pm.contributions.widgets] == ["CVDM reconstruction", "CVDM fine-tuning"]
    assert {s.key for s in pm.contributions.sample_data} == {"widefield", "defocus-pair"}


@pytest.mark.gui
def test_open_sample_and_dock_from_the_plugin(make_napari_viewer, model_files):
    """Docked before or after opening the sample, the picker preselects the widefield image, not the truth."""
    from napari_cvdm._widgets import ReconstructWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "CVDM reconstruction")
    viewer.open_sample("napari-cvdm", "widefield")
    assert [layer.name for layer in viewer.layers] == ["widefield (simulated microtubules)", "SIM ground truth"]
    assert widget.image.value is viewer.layers[0] and widget.model.value == "tiny-sr"
    viewer.layers.selection.active = viewer.layers[1]  # even with the hidden truth selected
    assert ReconstructWidget(viewer).image.value is viewer.layers[0]
