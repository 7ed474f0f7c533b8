"""Widget controls come from the settings models: the same defaults, limits and descriptions as the CLI and YAML."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from napari_cvdm.settings import ReconstructSettings, TrainSettings
from napari_cvdm.tasks import InputError

pytestmark = pytest.mark.gui

TRAIN_LABELS = {
    "steps": "Steps",
    "batch_size": "Batch",
    "patch_size": "Patch",
    "learning_rate": "Learning rate",
    "warmup_steps": "Warm-up (0 = auto)",
    "val_fraction": "Validation",
    "alpha": "α",
    "ema_decay": "EMA decay",
    "lr_decay": "Rate decay",
    "augment": "augment",
    "seed": "Seed",
    "device": "Device",
    "checkpoint_every": "Checkpoint every",
}


def _form(model, labels, **options):
    from napari_cvdm._widgets.settings_form import SettingsForm

    return SettingsForm(model, labels, **options)


def test_a_fresh_form_holds_the_settings_defaults(qtbot):
    form = _form(TrainSettings, TRAIN_LABELS, choices={"device": ["auto", "cpu"]}, spin_fractions=("val_fraction",))
    assert TrainSettings(**form.values()) == TrainSettings()
    assert form.values() == {name: getattr(TrainSettings(), name) for name in TRAIN_LABELS}


def test_controls_take_the_fields_limits_and_descriptions(qtbot):
    form = _form(TrainSettings, TRAIN_LABELS, choices={"device": ["auto", "cpu"]}, steps={"patch_size": 8})
    assert (form["steps"].min, form["patch_size"].min, form["patch_size"].step) == (1, 8, 8)  # ge=1, ge=8
    assert form["warmup_steps"].min == 0  # int | None: 0 stands for None
    assert list(form["lr_decay"].choices) == ["constant", "cosine"]  # the Literal's values
    assert form["alpha"].tooltip == TrainSettings.model_fields["alpha"].description
    assert "(0:" in form["warmup_steps"].tooltip and "None" not in form["warmup_steps"].tooltip


def test_zero_stands_for_auto_in_optional_fields(qtbot):
    labels = {"tile_size": "Tile size (0 = auto)", "batch_size": "Batch (0 = auto)", "steps": "Steps"}
    form = _form(ReconstructSettings, labels, steps={"tile_size": 16})
    assert form.values() == {"tile_size": None, "batch_size": None, "steps": None}
    form["tile_size"].value, form["steps"].value = 64, 30
    assert ReconstructSettings(**form.values()).tile_size == 64
    assert form["steps"].max == 2000  # le=2000 of the field
    form["tile_size"].value = 4  # below the field's ge=8: the settings model refuses and names the field
    with pytest.raises(ValidationError, match="tile_size"):
        ReconstructSettings(**form.values())


def test_a_number_field_refuses_text_and_names_the_control(qtbot):
    form = _form(TrainSettings, {"learning_rate": "Learning rate"})
    form["learning_rate"].value = "fast"
    with pytest.raises(InputError, match="Learning rate must be a number like 1e-4, not 'fast'"):
        form.values()
    form["learning_rate"].value = "2"  # a number, but above the field's le=1
    with pytest.raises(ValidationError, match="learning_rate"):
        TrainSettings(**form.values())


def test_the_finetune_widget_starts_from_the_training_defaults(make_napari_viewer, model_files):
    """What the widget trains with, untouched, is what `napari-cvdm train` and a YAML job default to."""
    from napari_cvdm._widgets import FineTuneWidget

    widget = FineTuneWidget(make_napari_viewer())
    assert widget.settings() == TrainSettings()


def test_the_reconstruct_widget_passes_auto_as_none(make_widget, model_files):
    _viewer, widget = make_widget()
    entry = widget.picker.entry()
    settings = widget.settings(entry)
    assert settings.tile_size is None and settings.batch_size is None and settings.steps is None
    assert settings.n_samples == ReconstructSettings().n_samples
    widget.steps.value = entry.info.sampler.steps + 1
    assert widget.settings(entry).steps == entry.info.sampler.steps + 1


def test_an_optional_length_is_none_when_empty_and_keeps_its_unit(qtbot):
    from napari_cvdm.settings import PairOptics

    form = _form(
        PairOptics, {"pixel_size_um": "Pixel size (µm)", "numerical_aperture": "NA", "camera_offset": "Offset"}
    )
    assert PairOptics(**form.values()) == PairOptics()  # empty fields: None, not "not a number"
    form["pixel_size_um"].value, form["numerical_aperture"].value = "108nm", "1.45"
    optics = PairOptics(**form.values())
    assert (optics.pixel_size_um, optics.numerical_aperture) == (pytest.approx(0.108), 1.45)
    form["pixel_size_um"].value = "big"
    with pytest.raises(ValidationError, match="pixel_size_um 'big' is not a length"):
        PairOptics(**form.values())
    form["camera_offset"].value = "dark"  # a required number: refused by the form, naming the control
    with pytest.raises(InputError, match="Offset must be a number"):
        form.values()
