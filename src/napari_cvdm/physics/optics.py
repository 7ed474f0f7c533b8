"""Incoherent imaging optics for widefield and SIM, pixel binning and camera noise.

Units: lengths in µm, spatial frequencies in cycles/µm (µm⁻¹), intensities in photo-electrons
("photons") unless stated.  All OTFs are real, radially symmetric and normalised to OTF(0) = 1, laid
out on the (unshifted) FFT grid of ``numpy.fft``: element ``[0, 0]`` is zero frequency.

Widefield: the diffraction-limited incoherent OTF of a circular pupil,
``OTF(ρ) = (2/π)[acos s − s√(1 − s²)]``, ``s = ρ/ρc``, ``ρc = 2NA/λ_em`` (zero for ``s ≥ 1``).

SIM ground truth: the same OTF shape stretched to the extended SIM support ``ρc + 1/Λ`` (Λ = pattern
line spacing), i.e. a Wiener/apodised 2D-SIM reconstruction with a triangle-like apodisation.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

__all__ = [
    "apply_otf",
    "camera_noise",
    "defocused_incoherent_otf",
    "foreground_mean",
    "frequency_radius",
    "incoherent_otf",
    "otf_to_psf",
    "sim_cutoff",
    "smooth_field",
    "sum_bin",
    "widefield_cutoff",
]


def widefield_cutoff(wavelength_um: float, na: float) -> float:
    """Incoherent cutoff frequency ρc = 2·NA/λ of a widefield objective, in µm⁻¹."""
    return 2.0 * na / wavelength_um


def sim_cutoff(wavelength_um: float, na: float, pattern_spacing_um: float) -> float:
    """Support of linear 2D-SIM, ρc + 1/Λ in µm⁻¹ (Λ = illumination line spacing in µm)."""
    return widefield_cutoff(wavelength_um, na) + 1.0 / pattern_spacing_um


def frequency_radius(shape: tuple[int, int], pixel_um: float, real: bool = False) -> np.ndarray:
    """|f| in µm⁻¹ on the FFT grid of an image of ``shape`` (``real``: the rfft half-plane)."""
    fy = np.fft.fftfreq(shape[0], d=pixel_um)
    fx = np.fft.rfftfreq(shape[1], d=pixel_um) if real else np.fft.fftfreq(shape[1], d=pixel_um)
    return np.hypot(fy[:, None], fx[None, :])


def incoherent_otf(shape: tuple[int, int], pixel_um: float, cutoff_per_um: float, real: bool = False) -> np.ndarray:
    """Diffraction-limited incoherent OTF of a circular pupil with cutoff ``cutoff_per_um`` (µm⁻¹).

    OTF(0) = 1 and OTF = 0 for |f| ≥ cutoff.  ``real=True`` returns the rfft half-plane layout.
    """
    if cutoff_per_um <= 0:
        raise ValueError(f"cutoff_per_um must be > 0, got {cutoff_per_um}")
    rho = frequency_radius(shape, pixel_um, real=real)
    s = np.clip(rho / cutoff_per_um, 0.0, 1.0)
    otf = (2.0 / np.pi) * (np.arccos(s) - s * np.sqrt(1.0 - s * s))
    otf[rho >= cutoff_per_um] = 0.0
    return otf


def defocused_incoherent_otf(
    shape: tuple[int, int], pixel_um: float, cutoff_per_um: float, waves: float, real: bool = False
) -> np.ndarray:
    """The incoherent OTF of a circular pupil ``waves`` out of focus (peak wavefront error W at the pupil's edge):
    the autocorrelation of P(ρ) = exp(2πi·W·(ρ/ρp)²) for ρ ≤ ρp = cutoff/2, computed on the FFT grid; the same
    cutoff as :func:`incoherent_otf` (which it equals at W = 0 to the grid's sampling of the pupil), lower and, from
    about half a wave, sign-changing contrast below it.  ``real=True`` returns the rfft half-plane layout."""
    fy, fx = np.fft.fftfreq(shape[0], d=pixel_um), np.fft.fftfreq(shape[1], d=pixel_um)
    rho = np.hypot(fy[:, None], fx[None, :]) / (cutoff_per_um / 2)
    pupil = np.where(rho <= 1, np.exp(2j * np.pi * waves * rho**2), 0)
    otf = np.real(np.fft.fft2(np.abs(np.fft.ifft2(pupil)) ** 2))
    otf /= otf[0, 0]
    return otf[:, : shape[1] // 2 + 1] if real else otf


def otf_to_psf(otf: np.ndarray) -> np.ndarray:
    """Real-space PSF (centred at ``shape//2``) of a full-plane OTF; sums to OTF(0) (= 1)."""
    psf = np.real(np.fft.ifft2(otf))
    return np.fft.fftshift(psf)


def apply_otf(image: np.ndarray, otf_real: np.ndarray) -> np.ndarray:
    """Periodic convolution of ``image`` with the PSF whose rfft-layout OTF is ``otf_real``."""
    spec = sfft.rfft2(image)
    return sfft.irfft2(spec * otf_real, s=image.shape)


def sum_bin(image: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor × factor`` blocks (camera pixel integration); shape must be divisible by factor."""
    h, w = image.shape
    if h % factor or w % factor:
        raise ValueError(f"image shape {image.shape} is not divisible by the bin factor {factor}")
    return image.reshape(h // factor, factor, w // factor, factor).sum(axis=(1, 3))


def smooth_field(
    shape: tuple[int, int], pixel_um: float, correlation_um: float, rng: np.random.Generator
) -> np.ndarray:
    """Positive, smooth random field with mean 1 (log-normal, Gaussian correlation length in µm)."""
    noise = rng.standard_normal(shape)
    rho2 = frequency_radius(shape, pixel_um, real=True) ** 2
    sigma = correlation_um
    spec = sfft.rfft2(noise) * np.exp(-2.0 * np.pi**2 * sigma**2 * rho2)
    f = sfft.irfft2(spec, s=shape)
    f = (f - f.mean()) / max(float(f.std()), 1e-12)
    out = np.exp(0.3 * f)
    return out / out.mean()


def foreground_mean(image: np.ndarray, sigma_px: float = 5.0, threshold: float = 0.2) -> float:
    """Mean of ``image`` over its foreground, as BioSR's "average photon count" (SSR-SIM recipe).

    Foreground: Gaussian blur (σ = ``sigma_px``), min–max normalise, keep pixels > ``threshold``.
    """
    from scipy.ndimage import gaussian_filter

    blur = gaussian_filter(image.astype(np.float64), sigma_px, mode="reflect")
    lo, hi = float(blur.min()), float(blur.max())
    if hi <= lo:
        return float(image.mean())
    mask = (blur - lo) / (hi - lo) > threshold
    return float(image[mask].mean())


def camera_noise(
    expected_photons: np.ndarray,
    rng: np.random.Generator,
    *,
    read_noise_counts: float = 10.0,
    gain_photons_per_count: float = 0.6026,
    n_frames: int = 1,
    quantize: bool = True,
) -> np.ndarray:
    """Poisson–Gaussian sCMOS noise; returns offset-subtracted photo-electrons.

    ``expected_photons`` is the noise-free photo-electron image summed over ``n_frames`` raw frames.
    Each frame adds Gaussian read noise of ``read_noise_counts`` ADU (σ), so the sum has read noise
    σ = √n_frames · read_noise_counts · gain in photo-electrons.  With ``quantize`` the summed ADU
    are rounded to integers (ADU = photons / gain), adding variance gain²/12.  The camera offset
    (100 ADU per frame in BioSR) is subtracted exactly, so it never clips the signal.

    Mean = expected_photons; variance = expected_photons + n_frames·(σ_read·gain)² (+ gain²/12).
    """
    lam = np.clip(np.asarray(expected_photons, dtype=np.float64), 0.0, None)
    photons = rng.poisson(lam).astype(np.float64)
    read_sigma = np.sqrt(n_frames) * read_noise_counts
    counts = photons / gain_photons_per_count + rng.normal(0.0, read_sigma, size=lam.shape)
    if quantize:
        counts = np.round(counts)
    return counts * gain_photons_per_count
