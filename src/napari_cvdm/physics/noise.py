"""Camera noise from one image: the gain, offset and read noise of an SR camera, the additive ξ of a defocus pair.

* :func:`estimate_camera_noise` fits the variance–mean line var = (x − offset)/g + σ_r² of a raw camera image
  (Poisson photo-electrons, g e⁻ per image unit, Gaussian read noise σ_r in image units).  The noise variance of
  each block comes from one of two places:

  - ``cutoff_cycles_per_px`` given (a widefield image, whose optics pass nothing above the incoherent cutoff
    2·NA·p/λ cycles per pixel): the image's power *above* the cutoff, which only noise reaches.  White noise keeps
    the share κ of its power there, so a block's variance is its out-of-band mean square / κ, blind to structure
    however bright.  The image's borders, where the FFT's edge handling leaks structure into that band, are left
    out.  On simulated widefield images (``physics.simulate_sr_pair``, 20–3000 photons per frame, 24 images per
    cell) the photons per frame come out at 0.98–1.04× the truth (median), 80 % of 256² images within 0.85–1.06×
    and of 128² images within 0.86–1.23× (``python benchmarks/noise_estimate.py``).
  - no cutoff: neighbouring-pixel differences var(xᵢ − xᵢ₊₁)/2 of 8×8 blocks, the 20th variance percentile of each
    brightness bin (χ²-bias corrected) taken as the flat blocks.  Blind to smooth structure only: fine structure
    (a widefield image of filaments) raises the variance with the brightness and biases the gain low.

  One image cannot separate the camera offset from the read noise: with ``offset=None`` (unknown) the offset is
  taken as the image's dark level (the 1st percentile after a 2-px blur: offset plus the faint background), the
  photons are counted above it, and the read noise is not separable from it (NaN).

* :func:`estimate_phase_noise`: the simulator adds N(ξ, ξ) to both planes of a pair in units of the illumination
  (mean intensity 1 for a pure phase object), so ξ = σ/(mean − σ) in any intensity units.  σ comes from the finest
  diagonal Haar coefficients of (I(−d) + I(+d))/√2 (the sum cancels the first-order defocus contrast; the diagonal
  coefficients cancel linear gradients), the 20th percentile of 16×16-pixel blocks, χ²-bias corrected.  Exact on
  images with flat regions; fine structure everywhere (a dense photo) makes it an upper bound.

NumPy / SciPy only.  Estimates use at most the central ``MAX_SIDE`` × ``MAX_SIDE`` pixels, so they take
milliseconds on any image.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .optics import foreground_mean
from .settings import SRSimulation

__all__ = [
    "CameraNoise",
    "NoiseEstimateError",
    "PhaseNoise",
    "estimate_camera_noise",
    "estimate_phase_noise",
    "header_noise",
    "sr_cutoff_cycles_per_px",
]

BLOCK = 8
BAND_BLOCK = 16  # blocks of the out-of-band estimate (more pixels each: its block variances are unbiased)
BINS = 12
FLAT_QUANTILE = 0.2
MAX_SIDE = 512
MIN_SIDE = 32
BAND_MARGIN = 1.15  # the out-of-band region starts this far above the cutoff (PSF tails, pixel integration)
BAND_RAMP = 0.05  # cycles per pixel of the raised-cosine edge of the out-of-band mask
MIN_BAND = 0.05  # at least this share of white-noise power must lie above the cutoff
EDGE = 8  # px at the borders left out of the out-of-band estimate: the even extension's kinks leak there
MAX_PHOTONS = 1e7  # photo-electrons per pixel: above the full well of any summed raw camera frames
MIN_PER_BIN = 5  # blocks a brightness bin needs for its quantile
_SIM = SRSimulation()
N_FRAMES = _SIM.n_raw_frames  # raw frames the bundled SR training inputs sum (BioSR's widefield)
GAIN_E_PER_ADU = _SIM.gain_photons_per_count  # the headers' read noise is in ADU at this gain
MAX_GAIN_ERROR = 1 / 3  # an SR fit whose gain is less certain than this gives no estimate


class NoiseEstimateError(ValueError):
    """The image gives no usable noise estimate (too small, constant, processed), with the reason."""


@dataclass(frozen=True)
class CameraNoise:
    """The noise of the user's camera as the simulators take it, and how well the fit holds."""

    gain_e_per_unit: float  # photo-electrons per image unit (1 for photo-electron images)
    offset: float  # image units
    read_noise_units: float  # σ in image units (of the image as given: summed frames if it is a sum); NaN: unknown
    foreground_photons: float  # mean foreground signal in photo-electrons
    relative_noise: float  # phase: σ/mean of the flat blocks
    n_blocks: int
    r2: float
    note: str
    gain_rel_error: float = math.nan  # 1-σ relative error of the gain, from the fit
    read_noise_error: float = math.nan  # 1-σ error of read_noise_units (image units)
    offset_source: str = "given"  # "given" or "dark level" (offset unknown)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PhaseNoise:
    """The additive noise of a defocus pair in the simulator's units: N(ξ, ξ) on an illumination of 1."""

    xi: float  # σ relative to the illumination (the simulator's ξ)
    sigma_units: float  # σ in the image's units
    mean_units: float  # mean intensity of the pair, offset subtracted
    n_blocks: int
    note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sr_cutoff_cycles_per_px(numerical_aperture: float, wavelength_um: float, pixel_um: float) -> float:
    """The widefield incoherent cutoff 2·NA/λ in cycles per input pixel (Nyquist is 0.5)."""
    return 2.0 * numerical_aperture * pixel_um / wavelength_um


def _central(image: np.ndarray, side: int = MAX_SIDE) -> np.ndarray:
    """At most the central ``side`` × ``side`` pixels of the last two axes, as float64."""
    arr = np.asarray(image, dtype=np.float64)
    h, w = arr.shape[-2:]
    r, c = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return arr[..., r : r + min(h, side), c : c + min(w, side)]


def _checked_plane(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim < 2 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise NoiseEstimateError(f"needs a real 2-D image, got shape {arr.shape} of {arr.dtype}")
    arr = _central(arr.reshape(-1, *arr.shape[-2:])[0])
    if min(arr.shape) < MIN_SIDE:
        raise NoiseEstimateError(
            f"the image is {arr.shape[0]}×{arr.shape[1]} px; the noise fit needs at least {MIN_SIDE}×{MIN_SIDE}"
        )
    if not np.all(np.isfinite(arr)):
        raise NoiseEstimateError("the image holds NaN or infinite values")
    if np.ptp(arr) == 0:
        raise NoiseEstimateError("the image is constant: it shows no noise")
    return arr


def _blocks(image: np.ndarray, block: int) -> np.ndarray:
    """(n_blocks, block²) non-overlapping blocks, row-major."""
    h, w = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    tiles = image[:h, :w].reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3)
    return tiles.reshape(-1, block * block)


def _block_means(image: np.ndarray, block: int) -> np.ndarray:
    """Means of ``block`` × ``block`` windows at a stride of half a block (overlapping by half: four times as many
    windows as tiles, so small images still fill the brightness bins)."""
    from numpy.lib.stride_tricks import sliding_window_view

    windows = sliding_window_view(image, (block, block))[:: block // 2, :: block // 2]
    return windows.mean(axis=(-2, -1)).ravel()


def _out_of_band(image: np.ndarray, cutoff: float) -> tuple[np.ndarray, float]:
    """The part of ``image`` above ``BAND_MARGIN`` × ``cutoff`` cycles/px, and κ: the share of white-noise power it
    keeps.  The image is extended evenly to 2H × 2W (mirrored in both axes), which is periodic and continuous, so the
    FFT sees no wrap-around edge; what the mirror's kinks still leak stays within ``EDGE`` px of the borders."""
    centred = image - image.mean()
    h, w = centred.shape
    extended = np.block([[centred, centred[:, ::-1]], [centred[::-1, :], centred[::-1, ::-1]]])
    fy = np.fft.fftfreq(extended.shape[0])
    fx = np.fft.rfftfreq(extended.shape[1])
    rho = np.hypot(fy[:, None], fx[None, :])
    lo = cutoff * BAND_MARGIN
    mask = np.sin(np.clip((rho - lo) / BAND_RAMP, 0.0, 1.0) * np.pi / 2) ** 2
    high = np.fft.irfft2(np.fft.rfft2(extended) * mask, s=extended.shape)[:h, :w]
    weights = np.full(fx.shape, 2.0)  # the rfft half-plane: inner columns stand for two
    weights[0] = 1.0
    weights[-1] = 1.0  # 2W is even: the Nyquist column stands for itself
    kappa = float((mask**2 * weights[None, :]).sum() / extended.size)
    return high, kappa


def _variance_mean(image: np.ndarray, cutoff: float | None) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Per brightness bin: the median block mean and the block noise variance (image units²)."""
    from scipy import stats

    if cutoff is not None:
        high, kappa = _out_of_band(image, cutoff)
        if kappa < MIN_BAND:
            raise NoiseEstimateError(
                f"the optics pass frequencies up to {cutoff:.2f} cycles per pixel, which leaves {kappa:.0%} of the "
                "spectrum to noise alone (needs ≥ 5 %): the image is sampled too coarsely to see its noise"
            )
        inner = (slice(EDGE, -EDGE), slice(EDGE, -EDGE))
        means = _block_means(image[inner], BAND_BLOCK)
        variances = _block_means(high[inner] ** 2, BAND_BLOCK) / kappa
        quantile, bias = 0.5, 1.0  # the out-of-band variance holds no structure: the median block is unbiased
        how = f"out-of-band power above {cutoff * BAND_MARGIN:.2f} cycles/px ({kappa:.0%} of white noise)"
    else:
        tiles = _blocks(image, BLOCK).reshape(-1, BLOCK, BLOCK)
        diffs = np.diff(tiles, axis=2).reshape(len(tiles), -1)  # within each block: 8 rows of 7 differences
        means, variances = tiles.reshape(len(tiles), -1).mean(axis=1), diffs.var(axis=1, ddof=1) / 2
        dof = diffs.shape[1]
        quantile, bias = FLAT_QUANTILE, stats.chi2.ppf(FLAT_QUANTILE, dof) / dof
        how = f"neighbouring-pixel differences of the flattest {BLOCK}×{BLOCK} blocks"
    bins = int(np.clip(len(means) // MIN_PER_BIN, 3, BINS))  # small images: fewer bins, each still a median
    edges = np.quantile(means, np.linspace(0, 1, bins + 1))
    xs, ys = [], []
    for lo, hi in itertools.pairwise(edges):
        inside = (means >= lo) & (means <= hi)
        if inside.sum() >= MIN_PER_BIN:
            xs.append(float(np.median(means[inside])))
            ys.append(float(np.quantile(variances[inside], quantile)) / bias)
    return np.array(xs), np.array(ys), len(means), how


def estimate_camera_noise(
    image: np.ndarray,
    offset: float | None = 0.0,
    additive: bool = False,
    cutoff_cycles_per_px: float | None = None,
) -> CameraNoise:
    """Gain, read noise and signal level from one raw image (SR: counts or photo-electrons; phase: a defocus
    plane), by a variance–mean fit (see the module text).  ``offset``: the camera offset in image units (0:
    offset-subtracted; None: unknown, see the module text).  ``additive`` (phase): the noise is taken as additive,
    and only its level relative to the mean intensity is measured.  ``cutoff_cycles_per_px``: the optics' cutoff
    (:func:`sr_cutoff_cycles_per_px`), for the out-of-band estimate.  Raises :class:`NoiseEstimateError` when the
    image shows no signal-dependent noise (a processed, denoised or background-subtracted image)."""
    arr = _checked_plane(image)
    x, y, n_blocks, how = _variance_mean(arr, cutoff_cycles_per_px)
    if len(x) < 3 or np.ptp(x) <= 0:
        raise NoiseEstimateError("the image has too little range of brightness for a variance–mean fit")
    if len(x) > 4:
        (slope, intercept), cov = np.polyfit(x, y, 1, cov=True)
    else:  # too few bins for an error estimate
        (slope, intercept), cov = np.polyfit(x, y, 1), np.full((2, 2), np.nan)
    slope_se = math.sqrt(max(cov[0, 0], 0.0))
    fit = slope * x + intercept
    r2 = 1.0 - float(((y - fit) ** 2).sum()) / max(float(((y - y.mean()) ** 2).sum()), 1e-300)
    level = max(float(np.median(y)), 0.0)
    relative = float(math.sqrt(level) / max(abs(float(arr.mean())), 1e-12))
    if additive:
        note = f"flat-block noise σ = {relative:.3g} × the mean intensity ({len(x)} brightness bins)"
        base = 0.0 if offset is None else offset
        return CameraNoise(1.0, base, math.sqrt(level), 0.0, relative, n_blocks, r2, note)
    if slope <= 0:
        raise NoiseEstimateError(
            "the noise does not grow with the signal (variance–mean slope "
            f"{slope:.3g} ± {slope_se:.2g}): the image looks processed (denoised, deconvolved or normalised); "
            "the noise estimate needs a raw camera image"
        )
    gain = 1.0 / slope
    if offset is not None:
        used, source = float(offset), "given"
    else:  # a large read noise hides an offset from the fit: count photons above the darkest 1 %
        from scipy.ndimage import gaussian_filter

        used, source = float(np.percentile(gaussian_filter(arr, 2.0), 1.0)), "dark level"
    read_var = intercept + slope * used
    read = math.sqrt(max(read_var, 0.0)) if source != "dark level" else math.nan
    read_var_se = math.sqrt(max(cov[1, 1] + used**2 * cov[0, 0] + 2 * used * cov[0, 1], 0.0))
    read_se = read_var_se / max(2 * read, math.sqrt(read_var_se), 1e-300) if read == read else math.nan
    signal = np.clip(arr - used, 0, None) * gain
    if foreground_mean(signal) > MAX_PHOTONS:  # the noise is far below any camera's shot noise
        raise NoiseEstimateError(
            f"the image shows almost no noise (it would hold {foreground_mean(signal):.2g} photo-electrons per pixel, "
            "beyond any camera's full well): the image looks processed (denoised, deconvolved or averaged); the "
            "noise estimate needs a raw camera image"
        )
    note = (
        f"variance–mean fit, {how} ({len(x)} brightness bins, R² {r2:.3f}): gain {gain:.3g} e⁻/unit ± "
        f"{slope_se / slope:.0%}, "
        + (
            f"read noise {read:.3g} ± {read_se:.2g} units at offset {used:g}"
            if source != "dark level"
            else f"offset unknown, taken as the dark level {used:.4g} (read noise not separable from it)"
        )
        + (" (read noise clipped at 0: the offset may be too low)" if read_var < 0 and source == "given" else "")
    )
    return CameraNoise(
        gain,
        used,
        read,
        foreground_mean(signal),
        relative,
        n_blocks,
        r2,
        note,
        gain_rel_error=slope_se / slope,
        read_noise_error=read_se,
        offset_source=source,
    )


def estimate_phase_noise(stack: np.ndarray, offset: float = 0.0) -> PhaseNoise:
    """ξ of the additive N(ξ, ξ) noise of a defocus pair ``stack`` ((2, H, W) [I(−d), I(+d)], or one (H, W)
    plane) in any intensity units; ``offset``: the camera offset to subtract (image units).  Raises
    :class:`NoiseEstimateError` for an image that gives no estimate (too small, constant, not finite)."""
    from scipy import stats

    arr = np.asarray(stack)
    if arr.ndim < 2 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise NoiseEstimateError(f"needs a real (2, H, W) pair or (H, W) plane, got shape {arr.shape} of {arr.dtype}")
    planes = arr.reshape(-1, *arr.shape[-2:])[:2]
    checked = [_checked_plane(p) for p in planes]
    plane = checked[0] if len(checked) == 1 else (checked[0] + checked[1]) / math.sqrt(2)
    h, w = (plane.shape[0] // 2) * 2, (plane.shape[1] // 2) * 2
    q = plane[:h, :w]
    diagonal = (q[0::2, 0::2] - q[0::2, 1::2] - q[1::2, 0::2] + q[1::2, 1::2]) / 2  # white noise: same σ, independent
    squares = (_blocks(diagonal, BLOCK) ** 2).mean(axis=1)
    dof = BLOCK * BLOCK
    sigma = math.sqrt(float(np.quantile(squares, FLAT_QUANTILE)) / (stats.chi2.ppf(FLAT_QUANTILE, dof) / dof))
    mean = float(np.mean(checked)) - offset
    if not mean > sigma:
        raise NoiseEstimateError(
            f"the mean intensity {mean:.3g} (offset {offset:g} subtracted) is not above the noise σ {sigma:.3g}: "
            "not a defocus pair in intensity units (a processed or background-subtracted image?)"
        )
    xi = sigma / (mean - sigma)
    note = (
        f"additive noise σ {sigma:.3g} on a mean intensity {mean:.4g} → ξ {xi:.3g} (finest diagonal Haar "
        f"coefficients of the {'plane sum' if len(checked) == 2 else 'plane'}, flattest {2 * BLOCK}×{2 * BLOCK} "
        "blocks; an upper bound where fine structure fills the image)"
    )
    return PhaseNoise(xi, sigma, mean, len(squares), note)


def header_noise(
    task: str,
    plane: np.ndarray,
    offset: float | None,
    *,
    pixel_um: float | None = None,
    wavelength_um: float | None = None,
    numerical_aperture: float | None = None,
    binning: int = 1,
    shown_cutoff: float | None = None,
) -> dict[str, Any]:
    """The noise numbers a model header states (``ValidOptics``), estimated from one input plane, and how:
    ``{"estimate": {...} or None, "note": ...}``.  SR ("super-resolution", an (H, W) plane in raw counts):
    ``photons_per_frame`` (foreground photons of one of the ``N_FRAMES`` summed raw frames, ×b² for b×b binning)
    and, with the ``offset`` known, ``read_noise_counts`` (ADU per frame at ``GAIN_E_PER_ADU``) and its
    ``read_noise_error``; it needs the pixel size (µm), λ (µm) and NA for the noise-only band above the cutoff.
    Phase ((2, H, W)): ``noise_xi``.  ``shown_cutoff``: the cutoff (cycles per pixel) the image itself shows
    (:func:`~napari_cvdm.physics.resolution.estimate_cutoff`); where it lies above the optics', the noise band starts
    above it, so detail the stated optics cannot pass is not taken for noise.  Never raises: a failure is
    ``estimate`` None with its reason."""
    try:
        if task == "phase":
            phase = estimate_phase_noise(plane, offset=offset or 0.0)
            return {"estimate": {"noise_xi": float(phase.xi)}, "note": phase.note}
        if pixel_um is None or wavelength_um is None or numerical_aperture is None:
            return {  # the flat-block fit without the band is biased by fine structure: not used
                "estimate": None,
                "note": "noise not estimated: the pixel size, λ and NA are needed to find the noise-only band "
                "above the optics' cutoff, and the model and the settings do not state them all",
            }
        cutoff = max(sr_cutoff_cycles_per_px(numerical_aperture, wavelength_um, pixel_um), shown_cutoff or 0.0)
        noise = estimate_camera_noise(plane, offset=offset, cutoff_cycles_per_px=cutoff)
    except Exception as err:  # noqa: BLE001 - an estimate is advice, never the reason a job fails
        return {"estimate": None, "note": f"noise not estimated: {err}"}
    if not noise.gain_rel_error <= MAX_GAIN_ERROR:
        return {
            "estimate": None,
            "note": f"noise not estimated: the variance–mean fit is too uncertain (gain ± {noise.gain_rel_error:.0%}); "
            "a processed or nearly uniform image?",
        }
    estimate = {
        "photons_per_frame": float(noise.foreground_photons * binning**2 / N_FRAMES),
        "gain_e_per_unit": float(noise.gain_e_per_unit),
    }
    if noise.offset_source == "given" and math.isfinite(noise.read_noise_units):
        to_adu = noise.gain_e_per_unit * binning / math.sqrt(N_FRAMES) / GAIN_E_PER_ADU
        read = noise.read_noise_units * to_adu  # its error: the fit's, and the gain's that converts it to ADU
        estimate["read_noise_counts"] = float(read)
        estimate["read_noise_error"] = float(math.hypot(noise.read_noise_error * to_adu, read * noise.gain_rel_error))
    return {"estimate": estimate, "note": noise.note}
