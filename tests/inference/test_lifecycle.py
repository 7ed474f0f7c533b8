"""What a run does to its surroundings: conditions built plane by plane (cancel lands before the next one), the
caller's model left as it was, and multi-channel samples in physical units."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import napari_cvdm as nc
from napari_cvdm._runtime import Progress
from napari_cvdm.model import CVDM, CVDMConfig, ModelMetadata, TrainedModel
from napari_cvdm.settings import ReconstructSettings
from tests.conftest import TINY, TINY_INFO, tiny_network

recon = importlib.import_module("napari_cvdm.inference.run")  # where each plane's condition is built


@pytest.fixture
def tie_phase_model() -> TrainedModel:
    """A phase model conditioned on US-TIE, whose conditions are the slow part of a stack."""
    info = ModelMetadata(**TINY_INFO["phase"], condition_on_tie=True, tie_method="us-tie")
    return TrainedModel(network=tiny_network(cond_channels=3), info=info, source="tiny-phase-tie")


@pytest.fixture
def conditions(monkeypatch) -> list[int]:
    built: list[int] = []
    real = recon.plane_condition

    def counting(image, info):
        built.append(1)
        return real(image, info)

    monkeypatch.setattr(recon, "plane_condition", counting)
    return built


def test_cancel_at_the_first_event_of_a_20_plane_stack_builds_no_condition(tie_phase_model, conditions):
    stack = np.random.default_rng(0).uniform(0.8, 1.2, (20, 2, 64, 64))
    token = nc.CancelToken()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        token.cancel()

    with pytest.raises(nc.Cancelled):
        nc.reconstruct(tie_phase_model, stack, n_samples=1, steps=2, progress=progress, cancel=token)
    assert seen == [(0, 20 * 2)]  # the total is known before any condition
    assert conditions == []  # the first event comes before the first plane's condition


def test_each_plane_is_conditioned_when_its_turn_comes(tie_phase_model, conditions):
    stack = np.random.default_rng(1).uniform(0.8, 1.2, (3, 2, 32, 32))
    gen = nc.iter_reconstruct(tie_phase_model, stack, ReconstructSettings(n_samples=1, steps=2, device="cpu"))
    built_at = {}
    try:
        while True:
            event = next(gen)
            if isinstance(event, Progress) and event.stage.endswith("condition"):
                built_at[event.stage] = len(conditions)
    except StopIteration as stop:
        result = stop.value
    assert built_at == {f"plane {k}/3: condition": k - 1 for k in (1, 2, 3)}
    assert result.mean.shape == (3, 32, 32)


def test_cancel_between_planes_builds_no_further_condition(tie_phase_model, conditions):
    stack = np.random.default_rng(2).uniform(0.8, 1.2, (20, 2, 32, 32))
    gen = nc.iter_reconstruct(tie_phase_model, stack, ReconstructSettings(n_samples=1, steps=1, device="cpu"))
    for event in gen:
        if isinstance(event, Progress) and event.stage == "plane 2/20: condition":
            break
    gen.close()
    assert conditions == [1]


def _state(network: torch.nn.Module) -> dict:
    return {
        "tensors": {
            name: (t.device, t.dtype, t.stride(), t.data_ptr(), t.requires_grad, t.detach().clone())
            for name, t in [*network.named_parameters(), *network.named_buffers()]
        },
        "modes": {name: m.training for name, m in network.named_modules()},
        "grad": network.denoiser.unet.stem.weight.grad.clone(),
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"]
    assert torch.equal(before["grad"], after["grad"])
    for name, (device, dtype, stride, ptr, grad, value) in before["tensors"].items():
        now = after["tensors"][name]
        assert (device, dtype, stride, ptr, grad) == now[:5], name
        assert torch.equal(value, now[5]), name


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))],
)
def test_reconstruct_leaves_the_model_as_it_was(tiny_sr_model, device):
    """Device, memory layout, train/eval mode of every module, gradients and weights — and the run itself still
    uses the fast layout (channels_last on the CPU) in eval mode."""
    net = tiny_sr_model.network.train()
    net.schedule.eval()  # mixed modes must come back as they were
    net.denoiser.unet.stem.weight.grad = torch.ones_like(net.denoiser.unet.stem.weight)
    used = []
    net.denoiser.unet.stem.register_forward_pre_hook(
        lambda module, args: used.append(
            (module.weight.device.type, module.training, module.weight.is_contiguous(memory_format=torch.channels_last))
        )
    )
    before = _state(net)
    image = np.random.default_rng(0).uniform(50, 150, (16, 16))
    nc.reconstruct(tiny_sr_model, image, n_samples=2, steps=2, device=device, tile_size=16)
    _assert_same(before, _state(net))
    assert used and set(used) == {(device, False, device == "cpu")}


def test_the_run_copy_has_the_layout_module_to_gives():
    """Every 4-D tensor strided as Module.to(memory_format=channels_last) strides it, also the ambiguous ones
    (1×1 kernels, one input channel) that .contiguous() would leave as they are and oneDNN runs slower."""
    import copy

    from napari_cvdm._runtime.device import inference_copy

    net = tiny_network(residual=True)
    reference = copy.deepcopy(net).to(memory_format=torch.channels_last)
    twin = inference_copy(net, torch.device("cpu"))
    want = {n: t.stride() for n, t in [*reference.named_parameters(), *reference.named_buffers()]}
    got = {n: t.stride() for n, t in [*twin.named_parameters(), *twin.named_buffers()]}
    assert got == want
    assert any(t.ndim == 4 and t.shape[-1] == 1 for t in twin.parameters())  # the ambiguous case is present
    assert not any(p.requires_grad for p in twin.parameters()) and not twin.training


def test_a_run_stopped_half_way_leaves_the_model_as_it_was(tiny_sr_model):
    net = tiny_sr_model.network.train()
    net.denoiser.unet.stem.weight.grad = torch.zeros_like(net.denoiser.unet.stem.weight)
    before = _state(net)
    gen = nc.iter_reconstruct(
        tiny_sr_model,
        np.random.default_rng(0).uniform(0, 1, (16, 16)),
        ReconstructSettings(n_samples=1, steps=5, device="cpu"),
    )
    for event in gen:
        if getattr(event, "done", 0) >= 2:
            break
    _assert_same(before, _state(net))  # also while the run is suspended
    gen.close()
    _assert_same(before, _state(net))


def _two_channel_model() -> TrainedModel:
    torch.manual_seed(0)
    net = CVDM(CVDMConfig(cond_channels=1, out_channels=2, **TINY))
    info = ModelMetadata(task="generic", normalization={"low_percentile": 0.0, "high_percentile": 100.0})
    return TrainedModel(network=net, info=info)


@pytest.mark.parametrize("tiles", [None, 16])
def test_multi_channel_samples_are_in_physical_units(tiles):
    """The samples of a 2-channel model are mapped to the input's units like the mean (offset 100, scale 200
    here), not returned as raw weighted sums; without tiles their mean and variance are the returned ones."""
    image = np.random.default_rng(3).uniform(100, 300, (24, 24))
    image[0, 0], image[0, 1] = 100.0, 300.0
    model = _two_channel_model()
    result = nc.reconstruct(model, image, n_samples=4, steps=2, keep_samples=True, tile_size=tiles)
    assert result.mean.shape == result.variance.shape == (2, 24, 24)
    assert result.samples.shape == (4, 2, 24, 24)
    if tiles is None:
        np.testing.assert_allclose(result.samples.mean(0), result.mean, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(result.samples.var(0, ddof=1), result.variance, rtol=1e-3, atol=1e-2)
    else:  # pixels a single tile covers (the image corners) are that tile's own samples
        corner = (slice(None), slice(0, 8), slice(0, 8))
        np.testing.assert_allclose(result.samples.mean(0)[corner], result.mean[corner], rtol=1e-4, atol=1e-3)
    assert abs(float(np.median(result.samples)) - float(np.median(result.mean))) < 3 * float(result.std.mean())


def test_multi_channel_stacks_keep_the_sample_axis_first():
    frames = np.random.default_rng(4).uniform(0, 1, (3, 16, 16))
    result = nc.reconstruct(_two_channel_model(), frames, n_samples=2, steps=1, keep_samples=True)
    assert result.mean.shape == (3, 2, 16, 16)
    assert result.samples.shape == (2, 3, 2, 16, 16)
