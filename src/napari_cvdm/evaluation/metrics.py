"""Image-quality metrics: MAE, PSNR, SSIM, MS-SSIM, decorrelation and FRC resolution (NumPy in, float out).

Normalisation convention (``normalize`` argument of the pairwise metrics):

- ``"none"`` (default): values used as they are (e.g. phase in rad).  ``data_range`` defaults to
  ``target.max() − target.min()``; pass it explicitly to compare across images (CVDM's phase
  metrics use a fixed range, e.g. 3.5 rad).
- ``"minmax"``: prediction and target are *each* min–max scaled to [0, 1] and ``data_range = 1`` —
  DL-SR/BioSR's ``prctile_norm(x, 0, 100)`` before PSNR/SSIM; makes intensity units irrelevant.
- ``"percentile"``: each image mapped by its own 0.1/99.9 percentiles to ~[0, 1] (not clipped),
  ``data_range = 1``; robust to a few hot pixels.

Argument order is always ``(prediction, target)``; 2-D arrays only.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy.ndimage import correlate1d

__all__ = [
    "MS_SSIM_WEIGHTS",
    "decorrelation_analysis",
    "decorrelation_resolution",
    "frc_resolution",
    "mae",
    "ms_ssim",
    "normalize_image",
    "psnr",
    "ssim",
]

Normalize = Literal["none", "minmax", "percentile"]
#: Wang, Simoncelli & Bovik (2003) weights for the 5 scales (finest first).
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def normalize_image(image: np.ndarray, mode: Normalize = "minmax") -> np.ndarray:
    """Per-image normalisation used by the metrics (see module docstring); float64 out."""
    x = np.asarray(image, dtype=np.float64)
    if mode == "none":
        return x
    if mode == "minmax":
        lo, hi = float(x.min()), float(x.max())
    elif mode == "percentile":
        lo, hi = (float(v) for v in np.percentile(x, (0.1, 99.9)))
    else:
        raise ValueError(f"normalize must be 'none', 'minmax' or 'percentile', got {mode!r}")
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _prepare(pred, target, normalize: Normalize, data_range: float | None):
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"need two 2-D images of the same shape, got {p.shape} and {t.shape}")
    p, t = normalize_image(p, normalize), normalize_image(t, normalize)
    if data_range is None:
        data_range = 1.0 if normalize != "none" else float(t.max() - t.min())
    if data_range <= 0:
        raise ValueError("data_range is 0 (constant target); pass data_range explicitly")
    return p, t, float(data_range)


def mae(pred: np.ndarray, target: np.ndarray, *, normalize: Normalize = "none") -> float:
    """Mean absolute error, in the units of the (normalised) images."""
    p, t, _ = _prepare(pred, target, normalize, 1.0)
    return float(np.mean(np.abs(p - t)))


def psnr(
    pred: np.ndarray, target: np.ndarray, *, data_range: float | None = None, normalize: Normalize = "none"
) -> float:
    """Peak signal-to-noise ratio in dB, 10·log10(data_range² / MSE)."""
    p, t, rng = _prepare(pred, target, normalize, data_range)
    mse = float(np.mean((p - t) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(rng**2 / mse)


def calibration_ratio(error: np.ndarray, variance: np.ndarray) -> float:
    """mean(err²) / mean(var) of an N-sample mean: ≈ 1 + 1/N when the sample spread is calibrated, above that when
    the samples are overconfident, below when they are too spread out (error and variance in the same units)."""
    return float(np.mean(np.square(error)) / max(float(np.mean(variance)), 1e-20))


def predictive_scale(variance: np.ndarray, n_samples: int) -> np.ndarray:
    """Standard deviation of (truth − N-sample mean) when the N samples and the truth are draws of one law:
    √(var·(1 + 1/N)), with ``variance`` the unbiased sample variance."""
    return np.sqrt(np.asarray(variance, np.float64) * (1 + 1 / n_samples))


def interval_coverage(
    error: np.ndarray, variance: np.ndarray, n_samples: int, levels: tuple[float, ...] = (0.5, 0.9, 0.95)
) -> dict[float, float]:
    """Fraction of pixels whose truth lies inside the central interval of each level around the N-sample mean.

    The interval is mean ± t_{N−1, (1+level)/2} · √(var·(1 + 1/N)): for samples and truth drawn from one Gaussian
    law it covers exactly ``level`` (Student's t, since the variance is estimated from the N samples), so a coverage
    below the level means overconfident samples.  ``error`` = mean − truth, in the units of √variance.
    """
    from scipy.stats import t as student_t

    if n_samples < 2:
        raise ValueError("interval coverage needs at least 2 samples per pixel (a variance)")
    z = np.abs(np.asarray(error, np.float64)) / np.maximum(predictive_scale(variance, n_samples), 1e-30)
    return {level: float(np.mean(z <= student_t.ppf(0.5 + level / 2, n_samples - 1))) for level in levels}


def reliability(
    error: np.ndarray, variance: np.ndarray, n_samples: int, bins: int = 10
) -> list[tuple[float, float, float, int]]:
    """Reliability diagram rows over equal-count bins of the predicted spread: (RMV, RMSE, mean |err|, pixels).

    RMV is the root mean predictive variance var·(1 + 1/N) of a bin and RMSE the root mean squared error there;
    a calibrated model has RMSE ≈ RMV in every bin (and mean |err| ≈ √(2/π)·RMV for Gaussian errors).
    """
    err = np.asarray(error, np.float64).ravel()
    pvar = (predictive_scale(variance, n_samples) ** 2).ravel()
    order = np.argsort(pvar, kind="stable")
    rows = []
    for chunk in np.array_split(order, min(bins, max(len(order), 1))):
        if len(chunk):
            e = err[chunk]
            rmv, rmse = float(np.sqrt(pvar[chunk].mean())), float(np.sqrt(np.mean(e**2)))
            rows.append((rmv, rmse, float(np.abs(e).mean()), len(chunk)))
    return rows


def expected_normalized_calibration_error(
    error: np.ndarray, variance: np.ndarray, n_samples: int, bins: int = 10
) -> float:
    """ENCE (Levi et al. 2019): the mean over spread bins of |RMV − RMSE| / RMV; 0.5 when the errors are 1.5× (or
    0.5×) the predicted spread in every bin.

    With few samples per pixel the bins are bins of a *noisy* variance estimate, which regresses to the mean: even
    samples of the true law give RMSE > RMV in the lowest bins, so ENCE is ≈ 0.56 at N = 4, 0.22 at N = 8, 0.10 at
    N = 16 and 0.03 at N = 64 for calibrated draws (tests/evaluation/test_metrics.py) — compare with that floor.
    """
    rows = reliability(error, variance, n_samples, bins)
    return float(np.mean([abs(rmv - rmse) / max(rmv, 1e-30) for rmv, rmse, _, _ in rows]))


def std_calibration_ratio(error: np.ndarray, std: np.ndarray) -> float:
    """mean(err²) / mean(σ²) for a predicted error std σ (a calibrated std, not a sample spread): 1 when calibrated."""
    return float(np.mean(np.square(error)) / max(float(np.mean(np.square(std))), 1e-20))


def half_width_coverage(error: np.ndarray, half_width: np.ndarray) -> float:
    """Share of pixels whose truth lies inside mean ± ``half_width`` (|err| ≤ half width, err = mean − truth)."""
    return float(np.mean(np.abs(np.asarray(error, np.float64)) <= np.asarray(half_width, np.float64)))


def std_reliability(error: np.ndarray, std: np.ndarray, bins: int = 10) -> list[tuple[float, float, float, int]]:
    """Reliability diagram rows over equal-count bins of a predicted error std σ: (RMS σ, RMSE, mean |err|, pixels).

    As :func:`reliability`, but σ already is the std of the error (a calibrated std), so no 1 + 1/N factor.
    """
    err = np.asarray(error, np.float64).ravel()
    var = np.square(np.asarray(std, np.float64)).ravel()
    order = np.argsort(var, kind="stable")
    rows = []
    for chunk in np.array_split(order, min(bins, max(len(order), 1))):
        if len(chunk):
            e = err[chunk]
            rows.append(
                (float(np.sqrt(var[chunk].mean())), float(np.sqrt(np.mean(e**2))), float(np.abs(e).mean()), len(chunk))
            )
    return rows


def std_ence(error: np.ndarray, std: np.ndarray, bins: int = 10) -> float:
    """ENCE over equal-count bins of a predicted error std σ: mean of |RMS σ − RMSE| / RMS σ (0: calibrated)."""
    rows = std_reliability(error, std, bins)
    return float(np.mean([abs(rms - rmse) / max(rms, 1e-30) for rms, rmse, _, _ in rows]))


def _gauss_window(win_size: int, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(win_size) - (win_size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    h = len(g) // 2
    y = correlate1d(correlate1d(x, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    return y[h : x.shape[0] - h, h : x.shape[1] - h]


def _ssim_cs(x: np.ndarray, y: np.ndarray, g: np.ndarray, data_range: float, k=(0.01, 0.03)):
    """Mean SSIM and mean contrast-structure term (Gaussian window, 'valid' region, population stats)."""
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mu_x**2
    syy = _filter_valid(y * y, g) - mu_y**2
    sxy = _filter_valid(x * y, g) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def ssim(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float | None = None,
    normalize: Normalize = "none",
    win_size: int = 11,
) -> float:
    """SSIM (Wang et al. 2004): Gaussian window σ = 1.5 of ``win_size`` taps, K = (0.01, 0.03),
    mean over the valid region; equals skimage's ``gaussian_weights=True, use_sample_covariance=False``.
    The window shrinks to the largest odd size ≤ the smaller image side for tiny images."""
    p, t, rng = _prepare(pred, target, normalize, data_range)
    win = min(win_size, min(p.shape) - (1 - min(p.shape) % 2))
    if win < 3:
        raise ValueError(f"images of shape {p.shape} are too small for SSIM")
    return _ssim_cs(p, t, _gauss_window(win), rng)[0]


def _ms_ssim_window(side: int, levels: int) -> int:
    """pytorch-msssim's rule: largest odd win ≤ 11 with side > (win − 1)·2^(levels − 1)."""
    win = 11
    while win >= 3 and side <= (win - 1) * 2 ** (levels - 1):
        win -= 2
    if win < 3:
        raise ValueError(f"images with a side of {side} px are too small for {levels}-scale MS-SSIM")
    return win


def ms_ssim(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float | None = None,
    normalize: Normalize = "none",
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
    win_size: int | None = None,
) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003), as pytorch-msssim computes it.

    5 scales with the 2003 weights, Gaussian window σ = 1.5, K = (0.01, 0.03), 2×2 average pooling
    between scales (an odd last row/column is dropped); the contrast-structure terms of scales 1–4 and
    the full SSIM of scale 5 are clipped at 0 (ReLU) and combined as Π csᵢ^wᵢ · ssim₅^w₅.

    Window size: 11 when the smaller side exceeds (11 − 1)·16 = 160 px; otherwise the largest odd
    size with side > (win − 1)·16 (pytorch-msssim's assertion), e.g. 7 for 128² images and 3 for
    64²; below 33 px it raises.  Pass ``win_size`` to force a size.
    """
    p, t, rng = _prepare(pred, target, normalize, data_range)
    levels = len(weights)
    win = win_size or _ms_ssim_window(min(p.shape), levels)
    g = _gauss_window(win)
    vals = []
    for level in range(levels):
        s, cs = _ssim_cs(p, t, g, rng)
        vals.append(max(cs, 0.0) if level < levels - 1 else max(s, 0.0))
        if level < levels - 1:
            h, w = (p.shape[0] // 2) * 2, (p.shape[1] // 2) * 2
            p = p[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            t = t[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return float(np.prod(np.asarray(vals) ** np.asarray(weights)))


# ---------------------------------------------------------------- decorrelation analysis
def _apodize(im: np.ndarray, n: int) -> np.ndarray:
    """Cosine edge taper over ``n`` pixels towards the image mean (ImDecorr's apodImRect)."""
    masks = []
    for size in im.shape:
        edge = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float64)
        masks.append(np.where(edge < n, 0.5 - 0.5 * np.cos(np.pi * (edge + 0.5) / n), 1.0))
    mask = np.outer(*masks)
    mean = float(im.mean())
    return (im - mean) * mask + mean


def _local_max(d: np.ndarray) -> tuple[int, float]:
    """Index and height of the last significant local maximum of d(r) (ImDecorr's getDcorrLocalMax)."""
    d = np.asarray(d, dtype=np.float64)
    while len(d) > 1:
        ind = int(np.argmax(d))
        if ind == len(d) - 1:
            d = d[:-1]
        elif ind == 0 or d[ind] - d[ind:].min() >= 5e-4:
            return ind, float(d[ind])
        else:
            d = d[:-1]
    return 0, float(d[0])


def decorrelation_analysis(
    image: np.ndarray, *, n_radii: int = 50, n_filters: int = 10, apodization_px: int = 20
) -> dict[str, float]:
    """Descloux et al. (2019) decorrelation analysis.

    Returns ``kc`` (highest reliable cutoff, normalised so 1 = Nyquist), ``A0`` (peak height of the
    unfiltered curve, an SNR proxy) and ``kc0`` (cutoff of the unfiltered curve).  ``kc`` is 0 when
    no peak reaches the 0.05 height threshold.

    Algorithm: crop to odd sizes, apodise the edges, I(k) = FFT, Iₙ = I/|I| inside |k| ≤ 1;
    d(r) = Σ_{|k|<r} Re(I·Iₙ*) / √(Σ|I|² · Σ_{|k|<r}|Iₙ|²).  Peaks of d(r) for the raw image and for
    ``n_filters`` Gaussian high-passed spectra I·(1 − exp(−2g²|k|²)), g log-spaced from 2/r₀ to 0.15,
    then a second pass with g and r refined around the highest peak; kc = max peak position.
    """
    im = np.asarray(image, dtype=np.float64)
    if im.ndim != 2 or min(im.shape) < 16:
        raise ValueError(f"need a 2-D image of at least 16×16 pixels, got shape {im.shape}")
    im = im[: im.shape[0] - (1 - im.shape[0] % 2), : im.shape[1] - (1 - im.shape[1] % 2)]
    if float(np.ptp(im)) <= 1e-12 * max(float(np.abs(im).max()), 1e-300):
        return {"kc": 0.0, "A0": 0.0, "kc0": 0.0}  # flat image: no structure to measure
    im = _apodize(im, min(apodization_px, min(im.shape) // 4))
    yy, xx = np.meshgrid(np.linspace(-1, 1, im.shape[0]), np.linspace(-1, 1, im.shape[1]), indexing="ij")
    R = np.hypot(yy, xx)
    inside = R < 1
    Rv = R[inside]
    order = np.argsort(Rv, kind="stable")
    Rs = Rv[order]
    mag = np.abs(np.fft.fftshift(np.fft.fft2(im)))[inside][order]
    nonzero = (mag > 0).astype(np.float64)  # |Iₙ|² is 1 where I ≠ 0
    cum_n = np.cumsum(nonzero)

    def curve(weight: np.ndarray, radii: np.ndarray) -> np.ndarray:
        amp = mag * weight  # Re(I_filtered · Iₙ*) = |I|·weight
        c = math.sqrt(float(np.sum(amp**2)))
        cum = np.cumsum(amp)
        idx = np.searchsorted(Rs, radii, side="left")  # count of |k| < r
        num = np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)
        den = c * np.sqrt(np.where(idx > 0, cum_n[np.maximum(idx - 1, 0)], 0.0))
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)

    r = np.linspace(0.0, 1.0, n_radii)
    d0 = curve(np.ones_like(mag), r)
    i0, a0 = _local_max(d0)
    kc0 = float(r[i0])
    g_max = 2.0 / kc0 if kc0 > 0 else max(im.shape) / 2.0
    g = np.concatenate([[im.shape[0] / 4.0], np.exp(np.linspace(np.log(g_max), np.log(0.15), n_filters))])
    kcs, amps = [kc0], [a0]
    for refine in range(2):
        pass_kc = []
        for gh in g:
            i, a = _local_max(curve(1.0 - np.exp(-2.0 * gh * gh * Rs**2), r))
            pass_kc.append(float(r[i]))
            kcs.append(float(r[i]))
            amps.append(a)
        if refine == 0:  # refine g and r around the highest peak (ImDecorr's indexing)
            cand = [kc0, *pass_kc]
            pos = len(cand) - 1 - int(np.argmax(cand[::-1]))  # last maximum; 0 = unfiltered
            j = pos - 1
            if pos == 0:
                g1, g2 = float(im.shape[0]), g[0]
            elif j >= len(g) - 2:
                g1, g2 = g[j - 1], g[j]
            else:
                g1, g2 = g[j], g[j + 1]
            g = np.exp(np.linspace(np.log(g1), np.log(g2), n_filters))
            r = np.linspace(max(cand[pos] - (r[1] - r[0]), 0.0), min(cand[pos] + 0.4, 1.0), n_radii)
    kc_arr, a_arr = np.asarray(kcs), np.asarray(amps)
    valid = a_arr >= 0.05
    kc = float(kc_arr[valid].max()) if valid.any() else 0.0
    return {"kc": kc, "A0": float(a0), "kc0": kc0}


def decorrelation_resolution(image: np.ndarray, pixel_nm: float, **kwargs) -> float:
    """Image resolution in nm by decorrelation analysis: 2·pixel_nm / kc (kc normalised to Nyquist).

    Returns ``nan`` when no reliable peak is found (e.g. pure noise or a flat image).
    Keyword arguments go to :func:`decorrelation_analysis`.
    """
    kc = decorrelation_analysis(image, **kwargs)["kc"]
    return 2.0 * pixel_nm / kc if kc > 0 else math.nan


def frc_resolution(pred: np.ndarray, truth: np.ndarray, pixel_nm: float, threshold: float = 1 / 7) -> float:
    """Resolution in nm of what ``pred`` gets *right*: the Fourier ring correlation with the ground truth.

    FRC(k) = Re Σ_ring P·T* / √(Σ_ring |P|² · Σ_ring |T|²) over rings one frequency bin wide (both images
    mean-removed and edge-apodised, curve smoothed over 3 rings); the resolution is pixel_nm / k at the first
    crossing below ``threshold`` (1/7, van Heel & Schatz 2005), k in cycles per pixel.  Unlike decorrelation
    analysis (a single image), noise that a method amplifies does not correlate with the truth, so it cannot
    make the resolution look better.  Returns 2·pixel_nm (Nyquist) when the curve never drops below the threshold.
    """
    p, t, _ = _prepare(pred, truth, "none", 1.0)
    n = min(p.shape)
    p, t = p[:n, :n], t[:n, :n]  # square, so that rings are circles in cycles per pixel
    apod = min(20, n // 8)
    fp = np.fft.fft2(_apodize(p, apod) - p.mean())
    ft = np.fft.fft2(_apodize(t, apod) - t.mean())
    freq = np.fft.fftfreq(n)
    ring = np.rint(np.hypot(*np.meshgrid(freq, freq, indexing="ij")) * n).astype(int).ravel()
    rings = n // 2 + 1  # up to Nyquist
    keep = ring < rings

    def ring_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(ring[keep], weights=values.ravel()[keep], minlength=rings)

    cross = ring_sum(np.real(fp * np.conj(ft)))
    power = np.sqrt(ring_sum(np.abs(fp) ** 2) * ring_sum(np.abs(ft) ** 2))
    frc = np.where(power > 0, cross / np.where(power > 0, power, 1.0), 0.0)
    frc = np.convolve(np.pad(frc, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    below = np.nonzero(frc[1:] < threshold)[0]
    if below.size == 0:
        return 2.0 * pixel_nm
    k = int(below[0]) + 1  # first ring below the threshold; interpolate between rings k − 1 and k
    f0, f1 = frc[k - 1], frc[k]
    ring_at = k - 1 + (f0 - threshold) / (f0 - f1) if f0 > f1 else float(k)
    return pixel_nm * n / max(ring_at, 1e-9)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; NaN (undefined) when either is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)
