"""Model files: bit-exact round trip, clear errors for files that are not ours, atomic writes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from napari_cvdm.model import ModelFileError, ModelMetadata, load_model_file, save_model, sha256_of
from napari_cvdm.model import files as files_module
from tests.conftest import tiny_network


@pytest.fixture
def info() -> ModelMetadata:
    return ModelMetadata(task="super-resolution", scale_factor=2, input_pixel_um=0.0626, wavelength_um=0.515)


def test_save_load_round_trip_is_bit_exact(tmp_path, info):
    net = tiny_network(residual=True, seed=4)
    torch.nn.init.normal_(net.denoiser.unet.head.weight)
    path = save_model(tmp_path / "m.cvdm", net, info)
    loaded = load_model_file(path)
    original, restored = net.state_dict(), loaded.network.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    assert loaded.network.config == net.config
    assert loaded.info == info
    x, z, g = torch.randn(1, 1, 16, 16), torch.randn(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    net.eval()
    assert torch.equal(net.predict_noise(z, x, g), loaded.network.predict_noise(z, x, g))
    assert loaded.sha256 == sha256_of(path)


def test_metadata_carries_the_physics(tmp_path, info):
    loaded = load_model_file(save_model(tmp_path / "m.cvdm", tiny_network(residual=True), info))
    meta = loaded.metadata
    assert meta["task"] == "super-resolution"
    assert meta["scale_factor"] == 2
    assert meta["input_pixel_um"] == 0.0626 and meta["output_pixel_um"] == pytest.approx(0.0313)
    assert meta["wavelength_um"] == 0.515
    assert meta["normalization"]["input"] == "percentile"
    assert meta["format_version"] == files_module.FORMAT_VERSION
    assert meta["architecture"]["residual_channel"] == 0


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        load_model_file(tmp_path / "nope.cvdm")


def test_a_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "photo.cvdm"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    with pytest.raises(ModelFileError, match="is not a napari-cvdm model file"):
        load_model_file(path)


def test_a_safetensors_file_that_is_not_ours(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not a napari-cvdm model"):
        load_model_file(path)


def _rewrite_header(src, dst, **changes):
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as fh:
        header = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    header.update(changes)
    save_file(tensors, str(dst), metadata=header)


def test_a_newer_format_asks_for_an_upgrade(tmp_path, info):
    src = save_model(tmp_path / "m.cvdm", tiny_network(residual=True), info)
    _rewrite_header(src, tmp_path / "new.cvdm", format_version="99")
    with pytest.raises(ModelFileError, match="newer than this napari-cvdm reads.*Upgrade"):
        load_model_file(tmp_path / "new.cvdm")


def test_a_damaged_header_is_reported(tmp_path, info):
    src = save_model(tmp_path / "m.cvdm", tiny_network(residual=True), info)
    _rewrite_header(src, tmp_path / "bad.cvdm", config=json.dumps({"cond_channels": "many"}))
    with pytest.raises(ModelFileError, match="header is damaged"):
        load_model_file(tmp_path / "bad.cvdm")


def test_weights_that_do_not_fit_the_architecture(tmp_path, info):
    src = save_model(tmp_path / "m.cvdm", tiny_network(residual=True), info)
    other = tiny_network(cond_channels=2).config.model_dump_json()
    _rewrite_header(src, tmp_path / "mismatch.cvdm", config=other)
    with pytest.raises(ModelFileError, match="do not fit the architecture"):
        load_model_file(tmp_path / "mismatch.cvdm")


def test_interrupted_write_leaves_the_old_file_intact(tmp_path, info, monkeypatch):
    path = save_model(tmp_path / "m.cvdm", tiny_network(residual=True, seed=1), info)
    before = sha256_of(path)

    def crash(*args, **kwargs):
        with open(args[1], "wb") as fh:
            fh.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(files_module, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model(path, tiny_network(residual=True, seed=2), info)
    assert sha256_of(path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.cvdm"]


def test_a_header_without_the_time_parameterisation_reads_as_a_separate_tau(tmp_path, info):
    """Files written before the exact schedule have a τ network and no such field: they load as they were."""
    net = tiny_network(residual=True, time="separate")
    path = save_model(tmp_path / "old.cvdm", net, info)
    with files_module.safe_open(str(path), framework="pt") as fh:
        header, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    config = json.loads(header["config"])
    del config["time_parameterisation"]
    save_file(tensors, str(path), metadata={**header, "config": json.dumps(config)})
    loaded = load_model_file(path)
    assert loaded.network.config.time_parameterisation == "separate"
    assert loaded.network.schedule.tau is not None
    lam = torch.rand(1, 1, 4, 4) + 0.5
    torch.testing.assert_close(loaded.network.schedule.integrated_beta(lam), lam * net.schedule.tau.integral())


def test_new_files_use_the_exact_schedule_and_carry_no_tau_network(tmp_path, info):
    loaded = load_model_file(save_model(tmp_path / "new.cvdm", tiny_network(residual=True), info))
    assert loaded.network.config.time_parameterisation == "exact"
    assert not any(key.startswith("schedule.tau.") for key in loaded.network.state_dict())


@pytest.mark.parametrize("name", ["cvdm-sr-widefield", "cvdm-phase-twoshot"])
def test_the_bundled_models_keep_their_separate_tau(name):
    from napari_cvdm import load_model

    assert load_model(name).network.config.time_parameterisation == "separate"
