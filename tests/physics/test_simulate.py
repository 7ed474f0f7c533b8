"""Simulated pairs and dataset files."""

import json

import numpy as np
import pytest
import tifffile

from napari_cvdm.evaluation.metrics import decorrelation_resolution
from napari_cvdm.physics import (
    PHOTO_NAMES,
    PhaseSimulation,
    SRSimulation,
    load_photo,
    read_manifest,
    simulate_phase_pair,
    simulate_sr_pair,
    write_dataset,
)


def test_sr_pair_shapes_units_and_determinism():
    s = SRSimulation(structure="microtubules")
    wf, sim, info = simulate_sr_pair(s, 48, np.random.default_rng(0))
    wf2, sim2, _ = simulate_sr_pair(s, 48, np.random.default_rng(0))
    assert wf.shape == (48, 48) and sim.shape == (96, 96)
    assert wf.dtype == np.float32 and sim.dtype == np.float32
    np.testing.assert_array_equal(wf, wf2)
    np.testing.assert_array_equal(sim, sim2)
    assert info["structure"] == "microtubules"
    assert 15 <= info["photons_per_frame"] <= 600
    # same units per WF-pixel area: the means agree up to noise
    assert sim.mean() == pytest.approx(wf.mean(), rel=0.05)
    assert sim.min() >= 0


def test_widefield_is_blurrier_than_sim():
    s = SRSimulation(structure="microtubules", photons=(400, 400))
    wf, sim, _ = simulate_sr_pair(s, 64, np.random.default_rng(1))
    res_wf = decorrelation_resolution(wf, 62.6)
    res_sim = decorrelation_resolution(sim, 31.3)
    assert res_wf > 1.5 * res_sim
    assert 150 < res_wf < 320 and 70 < res_sim < 160  # λ/2NA = 198 nm; SIM support ≈ 93 nm


def test_sr_noise_follows_the_photon_level():
    """Same object at 15 and 600 photons/frame: the difference has Poisson–Gaussian variance."""
    lo = SRSimulation(structure="er", photons=(15, 15))
    hi = lo.model_copy(update={"photons": (600, 600)})
    wf_lo, sim_lo, _ = simulate_sr_pair(lo, 64, np.random.default_rng(2))
    wf_hi, sim_hi, _ = simulate_sr_pair(hi, 64, np.random.default_rng(2))
    np.testing.assert_allclose(sim_hi / 40, sim_lo, rtol=1e-4)  # identical object, scaled
    read_var = 9 * (10 * 0.6026) ** 2
    diff = wf_lo.astype(np.float64) - wf_hi / 40.0
    expected = (wf_hi / 40.0 + read_var) + (wf_hi + read_var) / 40.0**2
    z = diff / np.sqrt(expected)
    assert z.mean() == pytest.approx(0.0, abs=0.05)
    assert z.var() == pytest.approx(1.0, abs=0.08)


def test_phase_pair_shapes_range_and_determinism():
    s = PhaseSimulation(noise_max=0.0)
    for source in ("photos", "cells"):
        st, ph, info = simulate_phase_pair(s.model_copy(update={"source": source}), 64, np.random.default_rng(3))
        st2, ph2, _ = simulate_phase_pair(s.model_copy(update={"source": source}), 64, np.random.default_rng(3))
        assert st.shape == (2, 64, 64) and ph.shape == (64, 64)
        assert st.dtype == np.float32 and ph.dtype == np.float32
        np.testing.assert_array_equal(st, st2)
        np.testing.assert_array_equal(ph, ph2)
        assert info["source"] == source and info["noise_xi"] == 0.0
        assert ph.min() >= 0 and ph.max() <= 3.5 + 1e-5
        assert st.min() >= 0
        assert st.mean() == pytest.approx(1.0, abs=0.05)  # unit illumination, pure phase


def test_phase_photos_span_the_maximum_phase():
    _, ph, info = simulate_phase_pair(PhaseSimulation(source="photos"), 64, np.random.default_rng(4))
    assert ph.min() == 0 and ph.max() == pytest.approx(3.5, rel=1e-6)
    assert info["photo"] in PHOTO_NAMES


def test_phase_noise_is_n_xi_xi():
    s = PhaseSimulation(source="cells", noise_max=0.2)
    st, _, info = simulate_phase_pair(s, 128, np.random.default_rng(5))
    clean, _, _ = simulate_phase_pair(s.model_copy(update={"noise_max": 0.0}), 128, np.random.default_rng(5))
    xi = info["noise_xi"]
    assert 0 < xi <= 0.2
    diff = st.astype(np.float64) - clean
    assert diff.mean() == pytest.approx(xi, abs=0.01)
    assert diff.std() == pytest.approx(xi, rel=0.05)


def test_skimage_cell_is_never_a_training_source(monkeypatch):
    import skimage.data

    assert "cell" not in PHOTO_NAMES
    with pytest.raises(ValueError, match="reserved for evaluation"):
        load_photo("cell")

    def forbidden():
        raise AssertionError("skimage.data.cell() must not be used for training data")

    monkeypatch.setattr(skimage.data, "cell", forbidden)
    load_photo.cache_clear()
    for name in PHOTO_NAMES:
        assert load_photo(name).ndim == 2
    s = PhaseSimulation(source="photos", noise_max=0.0)
    seen = {simulate_phase_pair(s, 16, np.random.default_rng(k))[2]["photo"] for k in range(60)}
    assert len(seen) > 10


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("task", ["sr", "phase"])
def test_dataset_regeneration_is_bit_exact(tmp_path, task):
    settings = SRSimulation(margin_um=0.5) if task == "sr" else PhaseSimulation()
    a = write_dataset(task, 3, 16, tmp_path / "a", seed=7, settings=settings)
    b = write_dataset(task, 3, 16, tmp_path / "b", seed=7, settings=settings)
    files_a, files_b = _tree_bytes(a), _tree_bytes(b)
    assert sorted(files_a) == sorted(files_b)
    assert {"input/0000.tif", "target/0002.tif", "manifest.json"} <= set(files_a)
    assert files_a == files_b
    # item k does not depend on n
    c = write_dataset(task, 2, 16, tmp_path / "c", seed=7, settings=settings)
    for name in ("input/0000.tif", "input/0001.tif", "target/0001.tif"):
        assert _tree_bytes(c)[name] == files_a[name]
    # a different seed gives different data
    d = write_dataset(task, 1, 16, tmp_path / "d", seed=8, settings=settings)
    assert _tree_bytes(d)["input/0000.tif"] != files_a["input/0000.tif"]
    # the manifest is enough to regenerate
    manifest, restored = read_manifest(a)
    assert restored == settings
    assert (manifest["task"], manifest["n"], manifest["size"], manifest["seed"]) == (task, 3, 16, 7)
    e = write_dataset(manifest["task"], manifest["n"], manifest["size"], tmp_path / "e", manifest["seed"], restored)
    assert _tree_bytes(e) == files_a


def test_dataset_tiffs_carry_pixel_sizes(tmp_path):
    out = write_dataset("sr", 1, 16, tmp_path / "sr", settings=SRSimulation(margin_um=0.5))
    for sub, px, shape in (("input", 0.0626, (16, 16)), ("target", 0.0313, (32, 32))):
        with tifffile.TiffFile(out / sub / "0000.tif") as tif:
            assert tif.imagej_metadata["unit"] == "um"
            num, den = tif.pages[0].tags["XResolution"].value
            assert den / num == pytest.approx(px, rel=1e-5)
            assert tif.asarray().shape == shape
    out = write_dataset("phase", 1, 16, tmp_path / "ph")
    with tifffile.TiffFile(out / "input" / "0000.tif") as tif:
        assert tif.asarray().shape == (2, 16, 16)
        assert tif.imagej_metadata["spacing"] == pytest.approx(4.0)  # planes at −2 and +2 µm
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["items"][0]["file"] == "0000.tif" and "noise_xi" in manifest["items"][0]


def test_write_dataset_guards(tmp_path):
    write_dataset("phase", 1, 16, tmp_path / "x")
    with pytest.raises(FileExistsError):
        write_dataset("phase", 1, 16, tmp_path / "x")
    with pytest.raises(TypeError, match="PhaseSimulation"):
        write_dataset("phase", 1, 16, tmp_path / "y", settings=SRSimulation())
    with pytest.raises(ValueError, match="task"):
        write_dataset("denoise", 1, 16, tmp_path / "z")
