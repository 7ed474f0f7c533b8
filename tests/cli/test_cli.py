"""The command line: simulate → train → predict end to end, and errors that exit cleanly with a message."""

from __future__ import annotations

import json

import pytest
import tifffile

from napari_cvdm.cli import main


def test_simulate_train_predict_end_to_end(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["simulate", "sr", "--n", "3", "--size", "32", "-o", str(data), "--seed", "1", "-q"]) == 0
    assert json.loads((data / "manifest.json").read_text())["n"] == 3
    model = tmp_path / "m.cvdm"
    config = tmp_path / "job.yaml"
    config.write_text(
        f"task: sr\ninput_dir: {data / 'input'}\ntarget_dir: {data / 'target'}\nwidth: 8\ndepth: 2\n"
        "train:\n  steps: 3\n  batch_size: 2\n  patch_size: 32\n  val_fraction: 0.34\n  val_every: 3\n"
    )
    assert main(["train", "--config", str(config), "-o", str(model), "--steps", "4", "-q"]) == 0
    out = tmp_path / "out.tif"
    image = tifffile.imread(next((data / "input").iterdir()))
    assert (
        main(
            [
                "predict",
                str(next((data / "input").iterdir())),
                "--model",
                str(model),
                "-o",
                str(out),
                "--n-samples",
                "2",
                "--steps",
                "2",
                "--keep-samples",
                "-q",
            ]
        )
        == 0
    )
    result = tifffile.imread(out)
    assert result.shape == (3, 2 * image.shape[0], 2 * image.shape[1])  # mean, variance, β map
    assert (result[1] >= 0).all()
    assert tifffile.imread(tmp_path / "out_samples.ome.tif").shape == (2, 64, 64)
    with tifffile.TiffFile(out) as tif:  # an OME-TIFF: channel names and the physical pixel size
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert [c["Name"] for c in pixels["Channel"]] == ["mean", "sample variance", "beta map"]
    assert "wrote" in capsys.readouterr().out


def test_predict_errors_exit_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    model = tmp_path / "nope.cvdm"
    assert main(["predict", str(bad), "--model", str(model), "-o", str(tmp_path / "o.tif")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["predict", "--model", "no-such-model", "-o", str(tmp_path / "o.tif")]) == 2
    assert "no model named 'no-such-model'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--tile-size", "64", "--tile-overlap", "64"], "--tile-overlap 64 is more than half of the --tile-size 64"),
        (["--tile-size", "64", "--tile-overlap", "40"], "use a --tile-overlap of at most 32"),
        (["--steps", "2001"], "--steps: Input should be less than or equal to 2000"),
        (["--tile-size", "4"], "--tile-size: Input should be greater than or equal to 8"),
        (["--pixel-size", "108"], "--pixel-size: --pixel-size '108' = 108 µm is implausibly large"),  # the flag typed
        (["--na", "13"], "--na: Input should be less than or equal to 1.7"),
    ],
)
def test_predict_refuses_impossible_settings_at_once(tmp_path, capsys, flags, match):
    """Refused before the model is even looked up (this one does not exist) and before anything is written."""
    out = tmp_path / "o.tif"
    assert (
        main(["predict", "--sample", "widefield", "--model", str(tmp_path / "none.cvdm"), "-o", str(out), *flags]) == 2
    )
    err = capsys.readouterr().err
    assert match in err and "invalid setting" in err and "model file not found" not in err
    assert not out.exists()


def test_predict_refuses_a_tile_below_the_network_minimum(tmp_path, capsys):
    from napari_cvdm.model import CVDM, CVDMConfig, ModelMetadata, UNetConfig
    from napari_cvdm.model.files import save_model
    from tests.conftest import TINY, TINY_INFO

    deep = CVDM(CVDMConfig(cond_channels=1, residual_channel=0, **{**TINY, "denoiser": UNetConfig(width=4, depth=5)}))
    path = save_model(tmp_path / "deep.cvdm", deep, ModelMetadata(**TINY_INFO["sr"], name="deep"))
    args = ["predict", "--sample", "widefield", "--model", str(path), "-o", str(tmp_path / "o.tif"), "--tile-size", "8"]
    assert main([*args, "-q"]) == 2
    assert "tile_size 8 is below this model's minimum of 16" in capsys.readouterr().err


def test_a_sample_without_model_takes_its_tasks_model_and_another_tasks_model_is_refused(tmp_path, capsys):
    import argparse

    from napari_cvdm.cli.predict import chosen_model
    from tests.conftest import save_tiny_models

    def model_for(sample, model=None):
        return chosen_model(argparse.Namespace(sample=sample, model=model))

    assert model_for("defocus-pair") == "cvdm-phase-twoshot" and model_for("widefield") == "cvdm-sr-widefield"
    assert model_for(None) == "cvdm-sr-widefield" and model_for("defocus-pair", "mine.cvdm") == "mine.cvdm"
    out = tmp_path / "o.tif"
    tiny_sr = save_tiny_models(tmp_path)["tiny-sr"]
    assert main(["predict", "--sample", "defocus-pair", "--model", str(tiny_sr), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "'defocus-pair' is a two-shot defocus pair (phase)" in err and "--model cvdm-phase-twoshot" in err
    assert not out.exists()
    store = tmp_path / "o.zarr"  # the plane-by-plane path refuses it the same way
    assert main(["predict", "--sample", "defocus-pair", "--model", str(tiny_sr), "-o", str(store), "-q"]) == 2
    assert "'defocus-pair' is a two-shot defocus pair (phase)" in capsys.readouterr().err and not store.exists()


def test_predict_never_writes_over_its_input_or_a_foreign_file(tmp_path, capsys, monkeypatch):
    """Refused before the model is loaded (load_model would fail the test); a result of an earlier run is replaced."""
    import numpy as np

    import napari_cvdm.registry as registry
    from tests.conftest import save_tiny_models

    image = tmp_path / "wf.tif"
    tifffile.imwrite(image, np.random.default_rng(0).poisson(50, (32, 32)).astype(np.uint16))
    before = image.read_bytes()
    notes = tmp_path / "notes.tif"
    notes.write_bytes(b"my own file")
    tiny_sr = str(save_tiny_models(tmp_path)["tiny-sr"])
    run = ["--model", tiny_sr, "--pixel-size", "0.0626", "--n-samples", "2", "--steps", "2", "-q"]
    with monkeypatch.context() as patched:
        patched.setattr(registry, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        for out, extra in [(image, []), (tmp_path / "." / "wf.tif", ["--overwrite"])]:
            assert main(["predict", str(image), "-o", str(out), *run, *extra]) == 2
            assert "that is the input" in capsys.readouterr().err
        assert main(["predict", str(image), "-o", str(notes), *run]) == 2
        err = capsys.readouterr().err
        assert "napari-cvdm did not write it" in err and "add --overwrite to replace it" in err
        assert main(["predict", str(image), "-o", str(notes / "x.tif"), *run]) == 2
        assert "is a file, not a folder" in capsys.readouterr().err
    assert image.read_bytes() == before and notes.read_bytes() == b"my own file"
    out = tmp_path / "o.tif"
    assert main(["predict", str(image), "-o", str(out), *run]) == 0
    first = tifffile.imread(out)
    assert main(["predict", str(image), "-o", str(out), *run, "--seed", "1"]) == 0  # its own output: replaced
    assert not np.array_equal(tifffile.imread(out), first)
    assert main(["predict", str(image), "-o", str(notes), *run, "--overwrite"]) == 0
    assert tifffile.imread(notes).shape[0] == tifffile.imread(out).shape[0]


def test_a_one_tiff_job_larger_than_memory_is_sent_plane_by_plane(tmp_path, capsys, monkeypatch):
    import numpy as np

    import napari_cvdm._runtime.device as device
    from tests.conftest import save_tiny_models

    image = tmp_path / "stack.tif"
    tifffile.imwrite(
        image, np.random.default_rng(0).poisson(50, (3, 32, 32)).astype(np.uint16), photometric="minisblack"
    )
    tiny_sr = str(save_tiny_models(tmp_path)["tiny-sr"])
    # 3 planes of 32² in, 6 channels of 64² out, float32, each held twice: 2 · 4 · (3072 + 6 · 12288) = 614 400 bytes
    monkeypatch.setattr(device, "free_memory_bytes", lambda _device: 600_000)
    run = ["predict", str(image), "--model", tiny_sr, "--pixel-size", "0.0626", "--steps", "2", "-q"]
    assert main([*run, "-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert "needs about 0.0 GiB and 0.0 GiB are available" in err and "-o out.zarr" in err
    monkeypatch.setattr(device, "free_memory_bytes", lambda _device: 620_000)
    assert main([*run, "-o", str(tmp_path / "o.tif"), "--n-samples", "2"]) == 0


def test_an_absent_device_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "o.tif"
    assert main(["predict", "--sample", "widefield", "-o", str(out), "--device", "cuda", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: device 'cuda' was requested but PyTorch sees no CUDA GPU" in err
    assert "Traceback" not in err and not out.exists()
    assert main(["train", "--task", "sr", "--simulate-n", "2", "-o", str(tmp_path / "m.cvdm"), "--device", "cuda"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err


def test_train_refuses_to_replace_an_existing_file_without_overwrite(tmp_path, capsys):
    out = tmp_path / "m.cvdm"
    out.write_bytes(b"a model I keep")
    assert main(["train", "--task", "sr", "--simulate-n", "2", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} exists" in err and "--overwrite" in err and "--resume" in err
    assert out.read_bytes() == b"a model I keep"


def test_train_config_errors_are_explained(tmp_path, capsys):
    assert main(["train", "--task", "sr", "-o", str(tmp_path / "m.cvdm")]) == 2
    assert "either input_dir and target_dir" in capsys.readouterr().err


def test_invalid_settings_of_any_command_are_one_line_naming_the_flag(tmp_path, capsys):
    assert (
        main(["train", "--task", "sr", "--simulate-n", "2", "--learning-rate", "-1", "-o", str(tmp_path / "m.cvdm")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.strip() == "napari-cvdm train: error: invalid setting: --learning-rate: Input should be greater than 0"
    assert main(["simulate", "sr", "--n", "0", "-o", str(tmp_path / "d")]) == 2
    assert "give --n of at least 1 pair" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_calibrate_refuses_targets_off_the_output_grid_before_reconstructing(tmp_path, capsys, monkeypatch):
    import napari_cvdm.evaluation.calibrate as calibrate
    from tests.conftest import save_tiny_models

    data = tmp_path / "data"
    assert main(["simulate", "sr", "--n", "2", "--size", "32", "-o", str(data), "-q"]) == 0
    monkeypatch.setattr(calibrate, "iter_reconstruct", lambda *a, **k: pytest.fail("reconstructed"))
    tiny_sr = str(save_tiny_models(tmp_path)["tiny-sr"])
    args = ["calibrate", "--model", tiny_sr, "--inputs", str(data / "input"), "--targets", str(data / "input")]
    assert main([*args, "-o", str(tmp_path / "c.cvdm"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "pair 1: the target has shape (32, 32) but the reconstruction of its input (32, 32) has (64, 64)" in err


def test_simulate_refuses_to_overwrite(tmp_path, capsys):
    args = ["simulate", "phase", "--n", "1", "--size", "16", "-o", str(tmp_path), "-q"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds a dataset" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--na", "--wavelength-um", "--photons"])
def test_simulate_exposes_physics_flags(flag, capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "sr", "--help"])
    assert flag in capsys.readouterr().out


def test_a_phase_pair_in_two_files_is_read_with_plus(tmp_path, capsys):
    """I(−d) as the input and I(+d) with --plus give the same result as the two stacked in one file."""
    import numpy as np

    from napari_cvdm.physics import PhaseSimulation, simulate_phase_pair
    from tests.conftest import save_tiny_models

    stack = simulate_phase_pair(PhaseSimulation(source="cells"), 32, np.random.default_rng(3))[0].astype(np.float32)
    minus, plus, both = tmp_path / "minus.tif", tmp_path / "plus.tif", tmp_path / "both.tif"
    for path, data in ((minus, stack[0]), (plus, stack[1]), (both, stack)):
        tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.21, 1 / 0.21), metadata={"unit": "um"})
    tiny = str(save_tiny_models(tmp_path)["tiny-phase"])
    run = ["--model", tiny, "--n-samples", "2", "--steps", "2", "-q"]
    assert main(["predict", str(minus), "--plus", str(plus), "-o", str(tmp_path / "a.tif"), *run]) == 0
    assert f"on {minus} + {plus} (2, 32, 32)" in capsys.readouterr().out
    assert main(["predict", str(both), "-o", str(tmp_path / "b.tif"), *run]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif"))
    tifffile.imwrite(tmp_path / "small.tif", stack[1, :16, :16])
    refusals = [
        (["--plus", str(tmp_path / "small.tif")], "has shape (32, 32) but I(+d)"),
        (["--plus", str(tmp_path / "none.tif")], "does not exist"),
        (["--plus", str(plus), "--plane-order", "plus-minus"], "leave --plane-order out"),
        (["--plus", str(plus), "-o", str(tmp_path / "c.zarr")], "stack the two planes into one file"),
        (["--plus", str(plus), "--model", str(tmp_path / "tiny-sr.cvdm")], "but tiny-sr is a super-resolution model"),
    ]
    for extra, match in refusals:
        out = [] if "-o" in extra else ["-o", str(tmp_path / "c.tif")]
        assert main(["predict", str(minus), *run, *extra, *out]) == 2
        assert match in capsys.readouterr().err
