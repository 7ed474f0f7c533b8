"""The calibration job: held-out pairs, errors in network units, one calibration per setting, the CLI."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile
import torch

import napari_cvdm as nc
from napari_cvdm._runtime import Cancelled, CancelToken, drive
from napari_cvdm.cli import main
from napari_cvdm.evaluation.calibrate import (
    SamplerSetting,
    iter_calibrate,
    network_units_error,
    simulated_calibration_pairs,
    with_calibrations,
)
from napari_cvdm.evaluation.quality import TEST_SEED_SR, held_out_rngs
from napari_cvdm.inference.reconstruct import Reconstruction
from napari_cvdm.model.files import load_model_file
from napari_cvdm.model.metadata import psf_fwhm_px
from napari_cvdm.physics import SRSimulation, simulate_sr_pair
from napari_cvdm.physics.ranges import fresnel_factor
from napari_cvdm.tasks import input_scale, normalize_target
from napari_cvdm.training.presets import simulate_pairs
from tests.conftest import save_tiny_models, tiny_model


def _result(mean: np.ndarray, variance: np.ndarray) -> Reconstruction:
    return Reconstruction(mean, variance, np.ones_like(mean), None, 4, 2, "u", None)


def test_simulated_calibration_pairs_are_neither_training_nor_bench_pairs():
    held_out = simulated_calibration_pairs("super-resolution", 1)
    pairs, about, widths = held_out.pairs, held_out.about, held_out.psf_fwhm_px
    wf = pairs[0][0]
    bench_wf = simulate_sr_pair(SRSimulation(structure="microtubules"), 128, held_out_rngs(TEST_SEED_SR, 1)[0])[0]
    train_wf = simulate_pairs("sr", 1, 128, 0)[0][0]
    assert wf.shape == (128, 128) and pairs[0][1].shape == (256, 256)
    assert not np.allclose(wf, bench_wf) and not np.allclose(wf, train_wf)
    assert "seeds 20001+" in about and widths is None
    phase = simulated_calibration_pairs("phase", 2)
    phase_pairs, about = phase.pairs, phase.about
    assert phase_pairs[0][0].shape == (2, 256, 256) and "cell()" not in about


def test_errors_are_in_network_units():
    model = tiny_model("sr")
    image = np.random.default_rng(0).uniform(100, 200, (8, 8))
    truth = np.random.default_rng(1).uniform(0, 5, (16, 16))
    out = input_scale(image, model.info)
    perfect = out.offset + out.scale * normalize_target(truth, model.info)  # what a perfect model returns
    variance, err = network_units_error(
        _result(perfect + out.scale * 0.1, np.full_like(truth, 4.0)), image, truth, model.info
    )
    np.testing.assert_allclose(err, 0.1, atol=1e-5)  # normalize_target is float32
    np.testing.assert_allclose(variance, 4.0 / out.scale**2)


def test_phase_errors_ignore_the_undetermined_constant_offset():
    model = tiny_model("phase")
    truth = np.random.default_rng(2).normal(size=(16, 16))
    _, err = network_units_error(_result(truth + 5.0, np.ones_like(truth)), np.ones((2, 16, 16)), truth, model.info)
    np.testing.assert_allclose(err, 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="output grid"):
        network_units_error(_result(truth, np.ones_like(truth)), np.ones((2, 16, 16)), truth[:8], model.info)


def _tiny_pairs(n: int = 2, size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [(rng.uniform(100, 200, (size, size)), rng.uniform(0, 1, (2 * size, 2 * size))) for _ in range(n)]


def test_one_calibration_per_setting_and_the_model_is_left_alone():
    model = tiny_model("sr")
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    job = iter_calibrate(model, _tiny_pairs(), [SamplerSetting(steps=1), SamplerSetting(steps=2)], n_samples=2)
    calibrations = drive(job)
    assert [(c.method, c.steps, c.n_samples, c.n_images) for c in calibrations] == [
        ("gamma", 1, 2, 2),
        ("gamma", 2, 2, 2),
    ]
    assert all(torch.equal(before[k], v) for k, v in model.network.state_dict().items())
    assert model.info.calibrations == []
    calibrated = with_calibrations(model.info, calibrations)
    again = with_calibrations(calibrated, calibrations[:1])
    assert [c.steps for c in again.calibrations] == [1, 2]  # replaced, not duplicated
    result = nc.reconstruct(model.__class__(model.network, calibrated, "t"), _tiny_pairs(1)[0][0], 2, steps=2)
    assert result.calibrated_std is not None


def test_calibration_can_be_cancelled():
    token = CancelToken()
    calls = []

    def on_event(event):
        calls.append(event)
        if len(calls) == 3:
            token.cancel()

    job = iter_calibrate(tiny_model("sr"), _tiny_pairs(), [SamplerSetting(steps=2)], n_samples=2)
    with pytest.raises(Cancelled):
        drive(job, on_event, cancel=token)
    assert len(calls) == 3


AT_TINY_PIXEL = {"imagej": True, "resolution": (1 / 0.0626, 1 / 0.0626), "metadata": {"unit": "um"}}


def _pair_folders(tmp_path, pairs):
    """Folders of input and target TIFFs with matching names, as a user gives validation pairs: the inputs state
    the tiny models' pixel size (62.6 nm) as ImageJ TIFFs."""
    inputs, targets = tmp_path / "in", tmp_path / "tg"
    inputs.mkdir()
    targets.mkdir()
    for k, (image, truth) in enumerate(pairs):
        tifffile.imwrite(inputs / f"p{k}.tif", image.astype(np.float32), **AT_TINY_PIXEL)
        tifffile.imwrite(targets / f"p{k}.tif", truth.astype(np.float32))
    return inputs, targets


def test_cli_calibrates_on_the_users_validation_pairs(tmp_path, capsys):
    paths = save_tiny_models(tmp_path)
    inputs, targets = _pair_folders(tmp_path, _tiny_pairs())
    out = tmp_path / "cal.cvdm"
    args = ["calibrate", "--model", str(paths["tiny-sr"]), "-o", str(out), "--steps", "2", "--n-samples", "2"]
    assert main([*args, "--inputs", str(inputs), "--targets", str(targets), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "2 steps, 2 samples" in printed and "90 % interval = mean ±" in printed
    calibration = load_model_file(out).info.calibrations[0]
    assert calibration.steps == 2 and calibration.data.startswith("2 validation pairs from")
    assert main([*args, "--inputs", str(inputs), "--targets", str(targets), "-q"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--inputs", str(inputs), "--overwrite"]) == 2
    assert "give both --inputs and --targets" in capsys.readouterr().err


def test_cli_keeps_the_measured_reconstructions_when_the_fit_fails(tmp_path, capsys, monkeypatch):
    import napari_cvdm.evaluation.calibrate as job

    paths = save_tiny_models(tmp_path)
    inputs, targets = _pair_folders(tmp_path, _tiny_pairs())

    def out_of_memory(*args, **kwargs):
        raise MemoryError("the fit ran out of memory")

    monkeypatch.setattr(job, "fit_measured", out_of_memory)
    saved, out = tmp_path / "m.npz", tmp_path / "c.cvdm"
    args = ["calibrate", "--model", str(paths["tiny-sr"]), "-o", str(out), "--steps", "2", "--n-samples", "2",
            "--inputs", str(inputs), "--targets", str(targets), "--save-measurements", str(saved), "-q"]  # fmt: skip
    assert main(args) == 2
    said = capsys.readouterr().err
    assert "ran out of memory fitting the calibration" in said and f"--from-measurements {saved}" in said
    assert not out.exists()  # no half-written model file
    with np.load(saved) as data:
        variances = [k for k in data.files if k.endswith("/variances")]
        assert len(variances) == 1 and data[variances[0]].shape[0] == len(_tiny_pairs())
    monkeypatch.undo()
    refit = ["calibrate", "--model", str(paths["tiny-sr"]), "-o", str(out), "--from-measurements", str(saved), "-q"]
    assert main(refit) == 0 and load_model_file(out).info.calibrations[0].steps == 2


def test_cli_refuses_too_few_pairs_with_the_reason(tmp_path, capsys):
    paths = save_tiny_models(tmp_path)
    inputs, targets = tmp_path / "in", tmp_path / "tg"
    inputs.mkdir()
    targets.mkdir()
    image, truth = _tiny_pairs(1)[0]
    tifffile.imwrite(inputs / "a.tif", image.astype(np.float32), **AT_TINY_PIXEL)
    tifffile.imwrite(targets / "a.tif", truth.astype(np.float32))
    code = main(
        ["calibrate", "--model", str(paths["tiny-sr"]), "-o", str(tmp_path / "c.cvdm"), "--steps", "1",
         "--n-samples", "2", "--inputs", str(inputs), "--targets", str(targets), "-q"]
    )  # fmt: skip
    assert code == 2 and "at least 2 held-out images" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("pairs", "n_samples", "steps", "said"),
    [
        (0, 2, [2], "at least 2 held-out images (one half fits the map, the other measures the intervals); got 0"),
        (2, 1, [2], "at least 2 samples per image (a spread to calibrate); got 1"),
        (2, 2, [2, 0], "steps: Input should be greater than or equal to 1, got 0"),
    ],
)
def test_a_calibration_that_cannot_be_fitted_is_refused_before_any_reconstruction(
    pairs, n_samples, steps, said, monkeypatch
):
    import napari_cvdm.evaluation.calibrate as job
    from napari_cvdm.sampling.calibration import CalibrationError
    from napari_cvdm.tasks import InputError

    reconstructions = []
    monkeypatch.setattr(job, "iter_reconstruct", lambda *a, **k: reconstructions.append(a))
    settings = [SamplerSetting(steps=s) for s in steps]
    calibrate = iter_calibrate(tiny_model("sr"), _tiny_pairs(pairs) if pairs else [], settings, n_samples=n_samples)
    with pytest.raises((CalibrationError, InputError), match=re.escape(said)):
        next(calibrate)
    assert reconstructions == []


def test_cli_calibrates_each_step_count_once(tmp_path, capsys):
    paths = save_tiny_models(tmp_path)
    inputs, targets = _pair_folders(tmp_path, _tiny_pairs())
    out = tmp_path / "cal.cvdm"
    args = ["calibrate", "--model", str(paths["tiny-sr"]), "-o", str(out), "--steps", "2", "1", "2", "--n-samples",
            "2", "--inputs", str(inputs), "--targets", str(targets), "-q", "--no-bins"]  # fmt: skip
    assert main(args) == 0
    assert [c.steps for c in load_model_file(out).info.calibrations] == [1, 2]


def test_random_optics_calibration_pairs_vary_the_optics():
    held_out = simulated_calibration_pairs("super-resolution", 2, optics="random")
    pairs, widths = held_out.pairs, held_out.psf_fwhm_px
    assert pairs[0][0].shape == (128, 128) and pairs[0][1].shape == (256, 256) and "SROpticsRange" in held_out.about
    assert len(widths) == 2 and widths[0] != widths[1] and all(1.0 < w < 6.0 for w in widths)  # FWHM in WF px
    nominal = simulated_calibration_pairs("super-resolution", 2)
    assert not np.allclose(pairs[0][0], nominal.pairs[0][0]) and nominal.psf_fwhm_px is None
    phase = simulated_calibration_pairs("phase", 2, optics="random")
    assert "PhaseOpticsRange" in phase.about and phase.psf_fwhm_px is None and len(phase.stated_optics) == 2
    for (stack, _), told in zip(phase.pairs, phase.stated_optics, strict=True):
        q = fresnel_factor(told["defocus_um"], told["wavelength_um"], told["pixel_size_um"])
        assert stack.shape == (2, 256, 256) and 0.5 <= q <= 2.0
    assert phase.stated_optics[0] != phase.stated_optics[1]
    with pytest.raises(ValueError, match="'nominal' or 'random'"):
        simulated_calibration_pairs("phase", 2, optics="wide")


def test_each_phase_pair_s_reconstruction_is_told_its_own_set_up(monkeypatch):
    import napari_cvdm.evaluation.calibrate as calibrate

    told, real = [], calibrate.iter_reconstruct

    def spy(model, image, settings):
        told.append((settings.defocus_um, settings.wavelength_um, settings.pixel_size_um))
        return real(model, image, settings)

    monkeypatch.setattr(calibrate, "iter_reconstruct", spy)
    pairs = _noisy_phase_pairs(4, 96)
    stated = [{"defocus_um": 1.0 + k, "wavelength_um": 0.5, "pixel_size_um": 0.2} for k in range(4)]
    drive(iter_calibrate(tiny_model("phase"), pairs, [SamplerSetting(steps=1)], n_samples=2, stated_optics=stated))
    assert told == [(1.0 + k, 0.5, 0.2) for k in range(4)]
    with pytest.raises(ValueError, match="3 stated optics for 4 pairs"):
        drive(iter_calibrate(tiny_model("phase"), pairs, [SamplerSetting(steps=1)], stated_optics=stated[:3]))


def _noisy_phase_pairs(n: int = 8, size: int = 96) -> list[tuple[np.ndarray, np.ndarray]]:
    """Flat two-shot pairs whose additive noise σ (so their estimated ξ) rises from 0.01 to 0.2."""
    rng = np.random.default_rng(4)
    return [
        (1.0 + sigma * rng.normal(size=(2, size, size)), rng.normal(size=(size, size)))
        for sigma in np.linspace(0.01, 0.2, n)
    ]


def test_phase_calibration_adds_one_calibration_per_bin_of_the_estimated_noise(monkeypatch):
    from napari_cvdm.evaluation import calibrate
    from napari_cvdm.sampling import calibration_bins

    monkeypatch.setattr(calibration_bins, "BIN_MIN_GAIN", -1.0)  # every bin the rules allow (the count's choice:
    monkeypatch.setattr(calibrate, "feature_candidates_for", lambda task: ())  # the spread only: blends and the
    model = tiny_model("phase")  # count's choice are tests/sampling/test_calibration.py's
    pairs = _noisy_phase_pairs(16)
    measured: list = []
    calibrations = drive(iter_calibrate(model, pairs, [SamplerSetting(steps=1)], n_samples=2, measurements=measured))
    pooled, *bins = calibrations
    # in a half of 8, 3 bins would hold 2–3 images (halves of 9216 < 10 000 pixels): 2 bins of 8
    assert pooled.noise_xi is None and [c.n_images for c in calibrations] == [16, 8, 8]
    assert bins[0].noise_xi[0] < 0.02 and bins[0].noise_xi[1] == bins[1].noise_xi[0] and bins[1].noise_xi[1] > 0.19
    assert len(measured) == 1 and len(measured[0]["errors"]) == 16 and measured[0]["noise_xi"][0] < 0.02
    merged = with_calibrations(model.info, calibrations).calibrations
    assert [c.noise_xi for c in merged] == [None, bins[0].noise_xi, bins[1].noise_xi]
    assert len(with_calibrations(model.info.model_copy(update={"calibrations": merged}), [pooled]).calibrations) == 1
    only = drive(iter_calibrate(model, pairs, [SamplerSetting(steps=1)], n_samples=2, by_condition=False))
    assert [c.noise_xi for c in only] == [None]


def test_sr_pairs_of_many_microscopes_are_calibrated_per_psf_width_and_refitted_from_saved_measurements(
    tmp_path, monkeypatch
):
    from napari_cvdm.evaluation import calibrate
    from napari_cvdm.sampling import calibration_bins

    monkeypatch.setattr(calibration_bins, "BIN_MIN_GAIN", -1.0)  # every bin the rules allow
    monkeypatch.setattr(calibrate, "feature_candidates_for", lambda task: ())  # blends: tests/sampling
    model = tiny_model("sr", wavelength_um=0.515, numerical_aperture=1.3)
    pairs = _tiny_pairs(8, 64)
    own = psf_fwhm_px(0.515, 1.3, model.info.input_pixel_um)
    widths = [own * f for f in (0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.4, 1.6)]
    measured: list = []
    cals = drive(
        iter_calibrate(model, pairs, [SamplerSetting(steps=1)], n_samples=2, measurements=measured, psf_fwhm_px=widths)
    )
    pooled, *bins = cals
    assert pooled.psf_factor is None and len(bins) >= 2 and all(c.noise_xi is None for c in cals)
    assert bins[0].psf_factor[0] == pytest.approx(0.6) and bins[-1].psf_factor[1] == pytest.approx(1.6)
    assert measured[0]["psf_factor"] == pytest.approx([0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.4, 1.6])
    with pytest.raises(ValueError, match="3 PSF widths for 8 pairs"):
        drive(iter_calibrate(model, pairs, [SamplerSetting(steps=1)], n_samples=2, psf_fwhm_px=widths[:3]))
    from napari_cvdm.cli.calibrate import load_measurements, save_measurements

    path = tmp_path / "m.npz"
    save_measurements(path, measured, "tiny pairs", model.info.name)
    loaded, about = load_measurements(path, model.info.name)
    assert about == "tiny pairs" and loaded[0]["psf_factor"] == pytest.approx(measured[0]["psf_factor"])
    from napari_cvdm.evaluation.calibrate import fit_measured

    assert [c.psf_factor for c in fit_measured(loaded[0], about, task=model.info.task)] == [c.psf_factor for c in cals]
    with pytest.raises(ValueError, match="measured with the model"):
        load_measurements(path, "another-model")
    code = main(["calibrate", "--model", "cvdm-sr-widefield", "--from-measurements", str(path), "-o",
                 str(tmp_path / "x.cvdm")])  # fmt: skip
    assert code == 2 and not (tmp_path / "x.cvdm").exists()  # refused in one line, nothing written


def test_pairs_resampled_from_other_set_ups_get_calibrations_for_such_runs_that_leave_the_model_s_own(monkeypatch):
    """Phase pairs at d = 3 µm (λ·d/p² 1.5× the tiny model's, resampled) next to pairs at its own 2 µm: the
    calibration is fitted on the resampled pairs only, tagged with their factor, and added to the model's own
    calibration, which a run at the model's set-up keeps using; a run at d = 3 µm uses the new one."""
    from napari_cvdm.evaluation import calibrate

    monkeypatch.setattr(calibrate, "feature_candidates_for", lambda task: ())
    model = tiny_model("phase")
    own = drive(iter_calibrate(model, _noisy_phase_pairs(4), [SamplerSetting(steps=1)], n_samples=2))
    model = nc.TrainedModel(model.network, with_calibrations(model.info, own))
    pairs = _noisy_phase_pairs(8)
    stated = [{"defocus_um": 3.0 if k % 2 else 2.0, "wavelength_um": 0.521, "pixel_size_um": 0.21} for k in range(8)]
    measured: list = []
    job = iter_calibrate(model, pairs, [SamplerSetting(steps=1)], n_samples=2, stated_optics=stated,
                         measurements=measured)  # fmt: skip
    (setup,) = drive(job)
    assert setup.fresnel_factor == pytest.approx((1.5, 1.5)) and setup.n_images == 4
    assert measured[0]["fresnel_factor"][:2] == [None, pytest.approx(1.5)]
    merged = with_calibrations(model.info, [setup])
    assert [c.fresnel_factor for c in merged.calibrations] == [c.fresnel_factor for c in own] + [setup.fresnel_factor]
    both = nc.TrainedModel(model.network, merged)
    at_3um = nc.reconstruct(both, pairs[1][0], n_samples=2, steps=1, defocus_um=3.0, wavelength_um=0.521,
                            pixel_size_um=0.21)  # fmt: skip
    assert "a set-up resampled from λ·d/p² 1.5–1.5× the model's" in at_3um.calibration
    at_2um = nc.reconstruct(both, pairs[0][0], n_samples=2, steps=1, pixel_size_um=0.21)
    assert "set-up" not in at_2um.calibration
