"""Settings validation: physically wrong values give messages that say what to fix."""

import typing

import pytest
from pydantic import ValidationError

from napari_cvdm.physics import PhaseSimulation, SRSimulation


@pytest.mark.parametrize(
    ("model", "kwargs", "match"),
    [
        (SRSimulation, {"na": 1.6}, "smaller than immersion_index"),
        (SRSimulation, {"na": 1.4, "immersion_index": 1.333}, "lower na or raise immersion_index"),
        (SRSimulation, {"wavelength_um": 515}, "looks like nanometres"),
        (SRSimulation, {"wf_pixel_um": -0.06}, "must be > 0"),
        (SRSimulation, {"photons": (600, 15)}, "reversed"),
        (SRSimulation, {"photons": (0, 15)}, "photons must be > 0"),
        (SRSimulation, {"background": (0.1, 1.5)}, "within"),
        (SRSimulation, {"scale_factor": 1}, "undersamples the SIM cutoff"),
        (SRSimulation, {"pattern_spacing_um": 0.1}, "diffraction limit"),
        (SRSimulation, {"structure": "mitochondria"}, "microtubules"),
        (SRSimulation, {"numerical_aperture": 1.2}, "Extra inputs are not permitted"),
        (PhaseSimulation, {"defocus_um": 0}, "half-distance"),
        (PhaseSimulation, {"wavelength_um": 521}, "looks like nanometres"),
        (PhaseSimulation, {"noise_max": -0.1}, "must be ≥ 0"),
        (PhaseSimulation, {"n_medium": 0.9}, "must be ≥ 1"),
        (PhaseSimulation, {"source": "imagenet"}, "photos"),
        (PhaseSimulation, {"min_phase_fraction": 0}, r"\(0, 1\]"),
    ],
)
def test_invalid_settings_explain_the_problem(model, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        model(**kwargs)


def test_defaults_are_the_documented_physics():
    sr = SRSimulation()
    assert (sr.wavelength_um, sr.na, sr.wf_pixel_um, sr.scale_factor) == (0.515, 1.3, 0.0626, 2)
    assert sr.sim_pixel_um == pytest.approx(0.0313)
    assert sr.fine_pixel_um == pytest.approx(0.01565)
    ph = PhaseSimulation()
    assert (ph.wavelength_um, ph.pixel_um, ph.defocus_um, ph.max_phase_rad) == (0.521, 0.21, 2.0, 3.5)


@pytest.mark.parametrize("model", [SRSimulation, PhaseSimulation])
def test_settings_are_flat_and_described(model):
    """Flat fields (scalars, literals, 2-tuples) so the CLI can generate one flag per field."""
    for name, field in model.model_fields.items():
        assert field.description, name
        ann = field.annotation
        origin = typing.get_origin(ann)
        if origin is tuple:
            assert len(typing.get_args(ann)) == 2, name
        else:
            assert ann in (int, float, str, bool) or origin is typing.Literal, name


def test_round_trip_through_json():
    s = SRSimulation(structure="er", photons=(20, 40))
    assert SRSimulation.model_validate(s.model_dump(mode="json")) == s
    p = PhaseSimulation(source="cells", noise_max=0)
    assert PhaseSimulation.model_validate_json(p.model_dump_json()) == p
