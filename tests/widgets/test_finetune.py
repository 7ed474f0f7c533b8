"""The fine-tuning widget: layers and folders, counts, refusals, live loss and preview, stop/resume, the picker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_cvdm import load_model
from napari_cvdm._widgets import FineTuneWidget, ReconstructWidget, finetune_job
from napari_cvdm._widgets.finetune_job import (
    PREVIEW_NAMES,
    FineTuneJob,
    Preview,
    PreviewSpec,
    show_preview,
    training_events,
)
from napari_cvdm._widgets.job import WorkerJob
from napari_cvdm._widgets.lossplot import TERM_LABELS
from napari_cvdm._widgets.workers import release_device_memory
from napari_cvdm.training.loop import TrainProgress
from tests.conftest import save_tiny_models, tiny_model, tiny_network
from tests.widgets.conftest import FAST, noisy

pytestmark = pytest.mark.gui


@pytest.fixture
def make_finetune(make_napari_viewer):
    """A viewer with both widgets docked; returns (viewer, fine-tuning widget, reconstruction widget)."""

    def make():
        viewer = make_napari_viewer()
        recon, tune = ReconstructWidget(viewer), FineTuneWidget(viewer)
        viewer.window.add_dock_widget(recon, name="CVDM reconstruction")
        viewer.window.add_dock_widget(tune, name="CVDM fine-tuning")
        return viewer, tune, recon

    return make


def _fast(widget, steps: int = 4, name: str = "tuned") -> None:
    widget.base.value = "tiny-sr"
    widget.patch_size.value = 32
    widget.batch_size.value = 2
    widget.steps.value = steps
    widget.val_fraction.value = 0.25
    widget.device.value = "cpu"
    widget.model_name.value = name


def _wait(qtbot, job, timeout: int = 60_000):
    assert job is not None, "the run was refused"
    qtbot.waitUntil(lambda: not job.running, timeout=timeout)
    return job


def _add_sr_pairs(viewer, n: int = 4, side: int = 32, factor: int = 2, target_n: int | None = None):
    viewer.add_image(noisy((n, side, side)), name="wf", scale=(1.0, 0.0626, 0.0626))
    sim = noisy((target_n or n, factor * side, factor * side), seed=1)
    return viewer.add_image(sim, name="sim", scale=(1.0, 0.0313, 0.0313))


def test_fine_tune_from_layers_with_counts_plot_preview_and_picker(
    make_finetune, model_files, notes, qtbot, monkeypatch
):
    released = []
    monkeypatch.setattr(finetune_job, "release_device_memory", lambda *nets: released.append(nets))
    viewer, widget, recon = make_finetune()
    target = _add_sr_pairs(viewer)
    _fast(widget)
    widget.preview_every.value = 2
    assert widget.input_layer.value.name == "wf" and widget.target_layer.value is target  # guessed from shapes
    assert (
        widget.data_info.value
        == "4 pairs (3 training, 1 validation); 12 training patches of 32² px; pixel 62.6 nm (the input layer)"
    )
    assert "tuned" not in recon.model.choices
    job = _wait(qtbot, widget.train())
    assert job.outcome == "done" and notes["error"] == [], notes
    assert "'tuned' saved to" in notes["info"][-1]
    folder = Path(model_files["tiny-sr"]).parent
    assert (folder / "tuned.cvdm").is_file() and (folder / "tuned.ckpt").is_file()
    assert "tuned" in recon.model.choices  # at once, no layer change needed
    assert widget.run_button.text == "Train" and widget.progress.value == 4
    assert widget.plot.steps == [1, 2, 3, 4] and widget.plot.val_losses
    mean, truth = (viewer.layers[name] for name in PREVIEW_NAMES)
    assert mean.data.shape == truth.data.shape == (32, 32) and np.isfinite(mean.data).all()
    assert mean.metadata["napari_cvdm"]["step"] == 4
    np.testing.assert_allclose(mean.scale, (0.0313, 0.0313))  # drawn over the target image, in µm
    training = load_model(folder / "tuned.cvdm").info.training
    assert training["steps"] == 4 and training["fine_tuned_from"] == "tiny-sr"
    assert training["data"]["description"] == "4 pairs from layers 'wf' / 'sim'"
    assert training["data"]["input_pixel_um"] == pytest.approx(0.0626)
    # one validation pair is too few to recalibrate the uncertainty: the header and the notification say so
    assert training["calibration"].startswith("not recalibrated: 1 validation image(s)")
    assert "Uncertainty: not recalibrated" in notes["info"][-1]
    assert len(released) == 1 and job.model.network in released[0]  # the trained networks are released
    assert job._network is None and widget.status.value.endswith("saved tuned.cvdm")

    def legend() -> list[str]:
        return [text.get_text() for text in widget.plot.axes.get_legend().get_texts()]

    assert not set(TERM_LABELS.values()) & set(legend())
    widget.show_terms.value = True  # the four loss terms are drawn on request
    assert set(TERM_LABELS.values()) <= set(legend()) and "validation" in legend()
    widget._show_progress(TrainProgress(5, 10, {"total": 1.0}, seconds=50.0))  # time remaining: 5 steps × 10 s
    assert widget.status.value.endswith("· 0:50 left") and widget.progress.value == 5


def test_fine_tune_from_folders_counts_pairs_and_reads_pixel_sizes(make_finetune, model_files, notes, qtbot, tmp_path):
    viewer, widget, _ = make_finetune()
    for sub, side, pixel in (("in", 32, 0.0626), ("tg", 64, 0.0313)):
        (tmp_path / sub).mkdir()
        for k in range(3):
            tifffile.imwrite(
                tmp_path / sub / f"cell{k}.tif",
                noisy((side, side), seed=k),
                imagej=True,
                resolution=(1 / pixel, 1 / pixel),
                metadata={"unit": "um"},
            )
    _fast(widget, steps=2, name="from-folders")
    widget.preview_every.value = 0
    widget.source.value = "folders"
    assert not widget.input_dir.native.isHidden() and widget.input_layer.native.isHidden()
    widget.input_dir.value, widget.target_dir.value = tmp_path / "in", tmp_path / "tg"
    assert widget.data_info.value == (
        "3 pairs (2 training, 1 validation); 8 training patches of 32² px; pixel 62.6 nm (the files' metadata)"
    )
    job = _wait(qtbot, widget.train())
    assert job.outcome == "done" and notes["error"] == []
    info = load_model(Path(model_files["tiny-sr"]).parent / "from-folders.cvdm").info
    assert info.training["data"]["input_pixel_um"] == pytest.approx(0.0626)
    assert not any(name in viewer.layers for name in PREVIEW_NAMES)


def test_a_model_fine_tuned_on_108_nm_folders_states_their_optics(make_finetune, model_files, notes, qtbot, tmp_path):
    """The files state 108 nm, the NA and λ are typed: the new model's header states them, so the reconstruction
    widget runs it on 108 nm images of that microscope; the camera offset is subtracted first."""
    from napari_cvdm.inference.optics import plan_optics
    from napari_cvdm.settings import ReconstructSettings

    _, widget, _ = make_finetune()
    for sub, side, pixel in (("in", 32, 0.108), ("tg", 64, 0.054)):
        (tmp_path / sub).mkdir()
        for k in range(3):
            image = noisy((side, side), seed=k) + (100 if sub == "in" else 0)
            meta = {"imagej": True, "resolution": (1 / pixel, 1 / pixel), "metadata": {"unit": "um"}}
            tifffile.imwrite(tmp_path / sub / f"cell{k}.tif", image, **meta)
    _fast(widget, steps=2, name="at-108nm")
    widget.preview_every.value = 0
    widget.source.value = "folders"
    widget.input_dir.value, widget.target_dir.value = tmp_path / "in", tmp_path / "tg"
    assert widget.data_info.value.endswith(
        "; pixel 108.0 nm (the files' metadata): the new model will state it (the base: 62.6 nm)"
    )
    widget.pair_optics["pixel_size_um"].value = "0.108"  # typed: the files are not asked
    assert "pixel" not in widget.data_info.value
    widget.pair_optics["pixel_size_um"].value = ""
    assert widget.pair_optics["defocus_um"].native.isHidden()  # an SR base model: NA, not defocus
    widget.pair_optics["numerical_aperture"].value = "1.45"
    widget.pair_optics["wavelength_um"].value = "600nm"
    widget.pair_optics["camera_offset"].value = "100"
    job = _wait(qtbot, widget.train())
    assert job.outcome == "done" and notes["error"] == [], notes["error"]
    info = load_model(Path(model_files["tiny-sr"]).parent / "at-108nm.cvdm").info
    assert (info.input_pixel_um, info.wavelength_um, info.numerical_aperture) == (pytest.approx(0.108), 0.6, 1.45)
    assert (
        plan_optics(info, ReconstructSettings(pixel_size_um=0.108, wavelength_um=0.6, numerical_aperture=1.45)).action
        == "run"
    )
    assert "camera offset 100 subtracted" in info.training["data"]["description"]
    assert "Optics: the header states your pairs' pixel 108 nm, λ 600 nm, NA 1.45" in notes["info"][-1]
    assert "not stated" not in notes["info"][-1]  # all three typed
    widget.pair_optics["pixel_size_um"].value = "a lot"
    assert widget.train() is None
    assert "pixel_size_um" in notes["error"][-1] and "is not a length" in notes["error"][-1]
    tifffile.imwrite(tmp_path / "in" / "cell2.tif", noisy((32, 32), seed=2))  # one file states no pixel size
    widget.pair_optics["pixel_size_um"].value = ""
    assert widget.data_info.value.startswith("⚠ the input files do not agree on their pixel size")


BAD_INPUTS = ["count-mismatch", "scale-ratio", "too-little", "name-exists", "bad-number", "no-checkpoint"]
BAD_INPUTS += ["phase", "constant-target", "nan-input"]


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda v, w: _add_sr_pairs(v, target_n=3), "holds 4 image(s) but target layer 'sim' holds 3"),
        (lambda v, w: _add_sr_pairs(v, factor=1), "is 1× the input (32×32), but the base model"),
        (lambda v, w: _add_sr_pairs(v, n=1, side=16), "too little data"),
        (lambda v, w: (_add_sr_pairs(v), setattr(w.model_name, "value", "tiny-phase")), "already exists"),
        (lambda v, w: (_add_sr_pairs(v), setattr(w.learning_rate, "value", "fast")), "invalid setting"),
        (lambda v, w: (_add_sr_pairs(v), setattr(w.resume, "value", True)), "no checkpoint of 'tuned'"),
        (lambda v, w: (_add_sr_pairs(v), setattr(w.base, "value", "tiny-phase")), "defocus pairs"),
        (lambda v, w: _add_sr_pairs(v).data.__setitem__(2, 7.0), "pair wf[2]: the target is constant"),
        (lambda v, w: (_add_sr_pairs(v), v.layers["wf"].data.__setitem__((1, 0, 0), np.nan)), "NaN"),
    ],
    ids=BAD_INPUTS,
)
def test_bad_inputs_are_refused_and_change_nothing(make_finetune, model_files, notes, qtbot, setup, match):
    viewer, widget, _ = make_finetune()
    _fast(widget)
    setup(viewer, widget)
    folder = Path(model_files["tiny-sr"]).parent
    before = (sorted(p.name for p in folder.iterdir()), [layer.name for layer in viewer.layers])
    job = widget.train()
    if job is not None:  # what only the pixels show (a constant target, NaN) is found as the worker reads them
        assert _wait(qtbot, job).outcome == "failed"
    assert len(notes["error"]) == 1 and match in notes["error"][0], notes["error"]
    assert (sorted(p.name for p in folder.iterdir()), [layer.name for layer in viewer.layers]) == before
    assert widget.run_button.text == "Train"


def test_stop_saves_a_resumable_model_and_resume_continues(make_finetune, model_files, notes, qtbot):
    viewer, widget, recon = make_finetune()
    _add_sr_pairs(viewer)
    _fast(widget, steps=100_000, name="stopped")
    widget.preview_every.value = 0
    job = widget.train()
    assert widget.run_button.text == "Stop"
    qtbot.waitUntil(lambda: len(widget.plot.steps) >= 3, timeout=30_000)
    widget.run_button.clicked.emit()  # Stop
    _wait(qtbot, job)
    assert job.outcome == "stopped" and notes["error"] == []
    folder = Path(model_files["tiny-sr"]).parent
    steps = load_model(folder / "stopped.cvdm").info.training["steps"]
    assert 3 <= steps < 100_000 and (folder / "stopped.ckpt").is_file()
    assert "stopped" in recon.model.choices and "Stopped at step" in notes["info"][-1]
    widget.resume.value = True
    widget.steps.value = steps + 2
    job = _wait(qtbot, widget.train())
    assert job.outcome == "done" and notes["error"] == [], notes["error"]
    training = load_model(folder / "stopped.cvdm").info.training
    assert training["steps"] == steps + 2 and training["resumed_at_steps"] == [steps]


def test_cosine_decay_is_recorded_and_a_resume_with_other_steps_is_refused(make_finetune, model_files, notes, qtbot):
    viewer, widget, _ = make_finetune()
    _add_sr_pairs(viewer)
    _fast(widget, steps=3, name="decayed")
    widget.preview_every.value = 0
    widget.lr_decay.value = "cosine"
    assert _wait(qtbot, widget.train()).outcome == "done" and notes["error"] == []
    model = Path(model_files["tiny-sr"]).parent / "decayed.cvdm"
    assert load_model(model).info.training["settings"]["lr_decay"] == "cosine"
    saved = model.read_bytes()
    widget.resume.value, widget.steps.value = True, 5  # a cosine decay ends at the last step: steps are fixed
    assert widget.train() is None  # refused before anything starts
    assert len(notes["error"]) == 1 and "steps: checkpoint 3, now 5" in notes["error"][0], notes["error"]
    assert model.read_bytes() == saved


def test_phase_pairs_from_a_stack_layer(make_finetune, model_files, notes, qtbot):
    viewer, widget, _ = make_finetune()
    viewer.add_image(noisy((3, 2, 32, 32), low=0.8, high=1.2), name="defocus pairs")
    viewer.add_image(noisy((3, 32, 32), seed=2, low=-1, high=1), name="phase")
    widget.base.value = "tiny-phase"
    assert widget.input_layer.value.name == "defocus pairs" and widget.target_layer.value.name == "phase"
    widget.patch_size.value, widget.batch_size.value, widget.steps.value = 32, 2, 2
    widget.preview_every.value = 1
    assert widget.data_info.value.startswith("3 pairs (2 training, 1 validation)")
    job = _wait(qtbot, widget.train())
    assert job.outcome == "done" and notes["error"] == [], notes["error"]
    assert viewer.layers[PREVIEW_NAMES[0]].data.shape == (32, 32)
    assert load_model(Path(model_files["tiny-phase"]).parent / "tiny-phase-finetuned.cvdm").task == "phase"


def test_phase_pairs_from_folders_of_separate_defocus_planes(make_finetune, model_files, notes, qtbot, tmp_path):
    """The I(+d) folder shows for a phase model reading folders only; with it the input folder holds I(−d)."""
    _, widget, _ = make_finetune()
    for sub, low, high in (("minus", 0.8, 1.2), ("plus", 0.8, 1.2), ("phase", -1, 1)):
        (tmp_path / sub).mkdir()
        for k in range(3):
            tifffile.imwrite(tmp_path / sub / f"c{k}.tif", noisy((32, 32), seed=k, low=low, high=high))
    widget.base.value = "tiny-sr"
    widget.source.value = "folders"
    assert widget.plus_dir.native.isHidden()  # an SR base: no I(+d) folder
    widget.base.value = "tiny-phase"
    assert not widget.plus_dir.native.isHidden()
    widget.patch_size.value, widget.batch_size.value, widget.steps.value = 32, 2, 2
    widget.preview_every.value = 0
    widget.input_dir.value, widget.target_dir.value = tmp_path / "minus", tmp_path / "phase"
    assert "input (32, 32)" in widget.data_info.value and "pick the I(+d) folder" in widget.data_info.value
    widget.plus_dir.value = tmp_path / "plus"
    assert widget.data_info.value.startswith("3 pairs (2 training, 1 validation)"), widget.data_info.value
    (tmp_path / "plus" / "c2.tif").unlink()
    widget.update_counts()
    assert "Missing there: ['c2']" in widget.data_info.value
    tifffile.imwrite(tmp_path / "plus" / "c2.tif", noisy((32, 32), seed=2, low=0.8, high=1.2))
    job = _wait(qtbot, widget.train())
    assert job.outcome == "done" and notes["error"] == [], notes["error"]
    assert load_model(Path(model_files["tiny-phase"]).parent / "tiny-phase-finetuned.cvdm").task == "phase"


def test_a_stop_before_the_first_step_saves_nothing_and_says_so(make_finetune, model_files, notes, qtbot, monkeypatch):
    def start_stopped(job: FineTuneJob) -> None:  # Stop pressed before the worker reached its first step
        job.stop_token.cancel()
        WorkerJob.start(job)

    monkeypatch.setattr(FineTuneJob, "start", start_stopped)
    viewer, widget, recon = make_finetune()
    _add_sr_pairs(viewer)
    _fast(widget, name="never")
    job = _wait(qtbot, widget.train())
    assert job.outcome == "stopped" and notes["error"] == [] and notes["info"] == []
    assert widget.status.value == "stopped before the first step; nothing was saved"
    assert not any(p.stem == "never" for p in Path(model_files["tiny-sr"]).parent.iterdir())
    assert "never" not in recon.model.choices and widget.run_button.text == "Train"


def test_base_model_from_a_file_and_a_bad_file_is_refused(make_finetune, no_models, notes, tmp_path):
    _, widget, _ = make_finetune()
    assert widget.base.choices == () and widget.base_info.value.startswith("no base model")
    bad = tmp_path / "bad.cvdm"
    bad.write_bytes(b"not a model")
    widget.base_file.value = bad
    assert len(notes["error"]) == 1 and "not a napari-cvdm model file" in notes["error"][0]
    assert widget.base.value is None
    files = save_tiny_models(tmp_path / "elsewhere", sampler=FAST)
    widget.base_file.value = files["tiny-sr"]
    assert widget.base.value == str(files["tiny-sr"]) and widget.model_name.value == "tiny-sr-finetuned"
    assert widget.base_info.value.startswith("super-resolution, output 2×")


def test_preview_layers_follow_the_current_run(make_napari_viewer):
    """A second run's previews replace the first run's patch, target and placement (nothing stale stays)."""
    viewer = make_napari_viewer()
    show_preview(viewer, Preview(2, np.zeros((8, 8)), np.zeros((8, 8))), np.ones((8, 8)), (0.5, 0.5), (1.0, 2.0))
    mean = np.linspace(0, 1, 256).reshape(16, 16)
    show_preview(viewer, Preview(4, mean, mean), np.full((16, 16), 3.0), (0.25, 0.25), (5.0, 6.0))
    layer, target = (viewer.layers[name] for name in PREVIEW_NAMES)
    assert len(viewer.layers) == 2 and layer.metadata["napari_cvdm"]["step"] == 4
    np.testing.assert_array_equal(target.data, np.full((16, 16), 3.0))
    np.testing.assert_allclose(layer.translate, (5.0, 6.0))
    np.testing.assert_allclose(target.translate, (5.0, 6.0 + 18 * 0.25))  # beside the patch, 1/8 patch apart
    np.testing.assert_allclose(target.scale, (0.25, 0.25))


def test_releasing_device_memory_empties_the_cuda_cache(monkeypatch):
    import torch

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    network = tiny_network()
    moved = []
    monkeypatch.setattr(network, "to", lambda device: moved.append(device))
    release_device_memory(network, None)
    assert moved == ["cpu"] and emptied == [True]


def test_previews_never_change_the_training(tmp_path):
    """Inference on the network being trained (no EMA: the raw network) leaves its weights bit-identical."""
    import torch

    from napari_cvdm.settings import TrainSettings
    from napari_cvdm.training.data import PairedDataset
    from napari_cvdm.training.loop import iter_train

    def run(every: int | None, out: Path) -> tuple[dict, int]:
        model = tiny_model("sr", sampler=FAST)
        wfs = [noisy((16, 16), seed=k) for k in range(3)]
        data = PairedDataset.from_arrays(wfs, [np.kron(w, np.ones((2, 2), np.float32)) for w in wfs], model.info)
        settings = TrainSettings(steps=4, batch_size=2, patch_size=16, ema_decay=0, val_fraction=0, device="cpu")
        preview = PreviewSpec(wfs[0][:8, :8], model.info, every, "cpu") if every else None
        events = list(training_events(iter_train(model.network, model.info, data, settings, out), preview))
        return model.network.state_dict(), sum(isinstance(e, Preview) for e in events)

    plain, _ = run(None, tmp_path / "plain.cvdm")
    previewed, previews = run(1, tmp_path / "previewed.cvdm")
    assert previews == 4
    assert all(torch.equal(plain[k], previewed[k]) for k in plain)


def test_the_counts_line_reads_each_folder_header_once(tmp_path, monkeypatch):
    """The counts line is redrawn on every change of a control: a folder's TIFF headers are read once, and again
    only for a file that changed."""
    import tifffile as tf

    from napari_cvdm._widgets import finetune_data
    from tests.conftest import tiny_model

    for sub, side in (("in", 32), ("tg", 64)):
        (tmp_path / sub).mkdir()
        for k in range(3):
            tf.imwrite(tmp_path / sub / f"c{k}.tif", noisy((side, side), seed=k))
    opened = []
    real = tf.TiffFile
    monkeypatch.setattr(tf, "TiffFile", lambda path, *a, **k: opened.append(str(path)) or real(path, *a, **k))
    info = tiny_model("sr").info
    for _ in range(3):  # three redraws of the counts line
        finetune_data.folder_shapes(tmp_path / "in", tmp_path / "tg", info)
        finetune_data.counts_text(finetune_data.DataCount(3, 2, 1, 8, 32), info, "", tmp_path / "in")
    assert len(opened) == 6 and len(set(opened)) == 6, opened
    tf.imwrite(tmp_path / "in" / "c0.tif", noisy((32, 32), seed=9), metadata={"note": "rewritten"})
    finetune_data.folder_shapes(tmp_path / "in", tmp_path / "tg", info)
    assert len(opened) == 7 and opened[-1].endswith("c0.tif")
