"""Classical baselines: FFT-TIE and US-TIE phase retrieval; bicubic and Richardson–Lucy for SR.

Phase (Goodman convention, see :mod:`.propagation`): the TIE −k ∂I/∂z = ∇·(I∇φ), k = 2πn/λ, with the
two-shot stack [I(−d), I(+d)]: ∂I/∂z ≈ (I(+d) − I(−d))/(2d) and I₀ ≈ (I(+d) + I(−d))/2.  Inputs in
intensity units (any scale), lengths in µm; phases returned in rad with their mean removed.

The regularised inverse Laplacian is ∇⁻²_α f = F⁻¹{C·F{f} / (C² + α)} with C = −4π²(u² + v²) in
cycles/pixel (so α is dimensionless, relative to the squared pixel-unit Laplacian; scaled by Δx²
to µm), computed on the 2×2 mirror-extended image (even extension ≡ Neumann boundaries / DCT).

SR: both baselines return an image on the SIM grid (``factor`` × finer) in the same per-WF-pixel-area
units as the simulator's SIM target (see :mod:`.simulate`).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from .optics import incoherent_otf, widefield_cutoff
from .propagation import two_shot
from .settings import SRSimulation

__all__ = ["DEFAULT_TIE_ALPHA", "DEFAULT_US_TIE_ALPHA", "bicubic_upsample", "richardson_lucy", "tie_fft", "us_tie"]

#: Default Tikhonov α for :func:`tie_fft` and :func:`us_tie` (chosen on the simulator, see docs).
DEFAULT_TIE_ALPHA = 1e-7
DEFAULT_US_TIE_ALPHA = 1e-7


def _mirror(f: np.ndarray) -> np.ndarray:
    """2H × 2W even extension [f, fliplr f; flipud f, rot180 f]."""
    top = np.concatenate([f, f[:, ::-1]], axis=1)
    return np.concatenate([top, top[::-1]], axis=0)


class _Laplace:
    """Spectral derivatives on the mirror-extended grid of an (H, W) image with pixel Δx (µm)."""

    def __init__(self, shape: tuple[int, int], pixel_um: float, alpha: float) -> None:
        self.shape = shape
        self.dx = pixel_um
        v = np.fft.fftfreq(2 * shape[0])[:, None]
        u = np.fft.fftfreq(2 * shape[1])[None, :]
        c = -4.0 * np.pi**2 * (u**2 + v**2)  # pixel units
        self.inv = pixel_um**2 * c / (c**2 + alpha)  # µm² (0 at DC)
        self.ku = 2j * np.pi * u / pixel_um
        self.kv = 2j * np.pi * v / pixel_um

    def inv_laplacian(self, f: np.ndarray) -> np.ndarray:
        h, w = self.shape
        return np.real(sfft.ifft2(sfft.fft2(_mirror(f)) * self.inv))[:h, :w]

    def tie_nonuniform(self, rhs: np.ndarray, intensity: np.ndarray) -> np.ndarray:
        """Solve ∇·(I∇φ) = rhs: ψ = ∇⁻²rhs, ∇φ = ∇ψ/I, φ = ∇⁻²(∇·∇φ)."""
        h, w = self.shape
        spec = sfft.fft2(_mirror(rhs)) * self.inv
        gx = np.real(sfft.ifft2(spec * self.ku))
        gy = np.real(sfft.ifft2(spec * self.kv))
        i_m = _mirror(np.maximum(intensity, 0.01 * float(intensity.max())))
        div = sfft.fft2(gx / i_m) * self.ku + sfft.fft2(gy / i_m) * self.kv
        return np.real(sfft.ifft2(div * self.inv))[:h, :w]


def _split(stack: np.ndarray, defocus_um: float) -> tuple[np.ndarray, np.ndarray]:
    stack = np.asarray(stack, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[0] != 2:
        raise ValueError(f"stack must be (2, H, W) = [I(−d), I(+d)], got shape {stack.shape}")
    if defocus_um <= 0:
        raise ValueError(f"defocus_um (half-distance d between the planes) must be > 0, got {defocus_um}")
    return (stack[1] - stack[0]) / (2 * defocus_um), 0.5 * (stack[0] + stack[1])


def tie_fft(
    stack: np.ndarray,
    defocus_um: float,
    wavelength_um: float,
    pixel_um: float,
    alpha: float = DEFAULT_TIE_ALPHA,
    n_medium: float = 1.0,
    uniform_intensity: bool = False,
) -> np.ndarray:
    """FFT-based TIE with Tikhonov regularisation and mirror (Neumann) padding.

    Args:
        stack: (2, H, W) [I(−d), I(+d)], intensity units (scale-free).
        defocus_um: d in µm (planes at −d and +d).
        wavelength_um, pixel_um: λ and pixel size in µm; ``n_medium`` the medium index.
        alpha: dimensionless Tikhonov parameter (see module docstring).
        uniform_intensity: use φ = ∇⁻²(−k∂I/∂z)/I₀ (one Poisson solve) instead of the full
            non-uniform-intensity solution.

    Returns:
        (H, W) float64 phase in rad, mean removed.
    """
    didz, i0 = _split(stack, defocus_um)
    k = 2.0 * np.pi * n_medium / wavelength_um
    lap = _Laplace(i0.shape, pixel_um, alpha)
    rhs = -k * didz
    phase = lap.inv_laplacian(rhs) / float(i0.mean()) if uniform_intensity else lap.tie_nonuniform(rhs, i0)
    return phase - phase.mean()


def us_tie(
    stack: np.ndarray,
    defocus_um: float,
    wavelength_um: float,
    pixel_um: float,
    alpha: float = DEFAULT_US_TIE_ALPHA,
    iterations: int = 50,
    n_medium: float = 1.0,
    tol: float = 1e-3,
    amplitude: str = "mean",
    return_info: bool = False,
):
    """Universal-solution TIE (Zhang, Chen, Sun, Tian & Zuo, Opt. Lett. 45:3649, 2020).

    φ⁰ = 0, r⁰ = ∂I/∂z (measured).  Each iteration adds Δφ = ∇⁻²_α(−k·r)/max I₀ (the "MAX" solver),
    simulates the pair from √I₀·exp(iφ) by angular-spectrum propagation to ±d and sets
    r = ∂I/∂z_meas − ∂I/∂z_est.  It stops after ``iterations``, when max|r| < tol·max|∂I/∂z_meas|,
    or when max|r| grows by more than 5 % in one iteration; the iterate with the smallest max|r| is
    returned (the residual can also creep up slowly).  This corrects both the non-uniform-intensity
    and the finite-difference (large d / strong phase) errors of plain TIE.

    ``amplitude``: the in-focus amplitude of the forward model — ``"mean"``: √((I₋ + I₊)/2) (general
    objects), ``"uniform"``: √mean(I) everywhere (pure-phase objects; no in-focus image needed).

    Returns the (H, W) phase in rad (mean removed), and with ``return_info`` also
    ``{"iterations": n, "residual": [max|r| per iteration], "best_residual": float}``.
    """
    didz, i0 = _split(stack, defocus_um)
    k = 2.0 * np.pi * n_medium / wavelength_um
    lap = _Laplace(i0.shape, pixel_um, alpha)
    if amplitude == "uniform":
        amp = np.full_like(i0, np.sqrt(max(float(i0.mean()), 0.0)))
    elif amplitude == "mean":
        amp = np.sqrt(np.clip(i0, 0.0, None))
    else:
        raise ValueError(f"amplitude must be 'uniform' or 'mean', got {amplitude!r}")
    i_max = float(i0.max())
    target = float(np.abs(didz).max())
    phase = np.zeros_like(i0)
    best, best_r = phase, np.inf
    residual = didz
    history: list[float] = []
    prev = np.inf
    for _ in range(iterations):
        phase = phase + lap.inv_laplacian(-k * residual) / i_max
        est = two_shot(amp * np.exp(1j * phase), defocus_um, wavelength_um, pixel_um, n_medium)
        residual = didz - (est[1] - est[0]) / (2 * defocus_um)
        rmax = float(np.abs(residual).max())
        history.append(rmax)
        if rmax < best_r:
            best, best_r = phase, rmax
        if rmax < tol * target or rmax > 1.05 * prev:
            break
        prev = rmax
    best = best - best.mean()
    if return_info:
        return best, {"iterations": len(history), "residual": history, "best_residual": best_r}
    return best


def bicubic_upsample(wf: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic interpolation onto the ``factor``× finer grid (pixel-area aligned, values kept)."""
    from skimage.transform import resize

    wf = np.asarray(wf, dtype=np.float64)
    shape = (wf.shape[0] * factor, wf.shape[1] * factor)
    return resize(wf, shape, order=3, mode="reflect", anti_aliasing=False, preserve_range=True)


def richardson_lucy(
    wf: np.ndarray,
    factor: int,
    settings: SRSimulation | None = None,
    iterations: int = 20,
    pad_px: int = 16,
) -> np.ndarray:
    """Richardson–Lucy deconvolution of a widefield image onto the ``factor``× finer (SIM) grid.

    Forward model A = (sum-bin by ``factor``) ∘ (convolution with the simulator's widefield PSF,
    ``settings.wavelength_um`` / ``settings.na``, sampled on the fine grid).  Read noise is handled by
    the Snyder shift: data and model get + n_frames·(σ_read·gain)² so the data are ~Poisson.
    The image is reflect-padded by ``pad_px`` WF pixels against wrap-around.  The result is in the
    simulator's target units (per-WF-pixel area), i.e. the fine-grid estimate × factor².
    """
    s = settings or SRSimulation()
    data = np.pad(np.asarray(wf, dtype=np.float64), pad_px, mode="reflect")
    shift = s.n_raw_frames * (s.read_noise_counts * s.gain_photons_per_count) ** 2
    data = np.clip(data + shift, 1e-6, None)
    fine_shape = (data.shape[0] * factor, data.shape[1] * factor)
    otf = incoherent_otf(fine_shape, s.wf_pixel_um / factor, widefield_cutoff(s.wavelength_um, s.na), real=True)

    def conv(x: np.ndarray) -> np.ndarray:
        return sfft.irfft2(sfft.rfft2(x) * otf, s=fine_shape)

    def forward(x: np.ndarray) -> np.ndarray:
        y = conv(x)
        return y.reshape(data.shape[0], factor, data.shape[1], factor).sum(axis=(1, 3)) + shift

    def adjoint(y: np.ndarray) -> np.ndarray:  # symmetric PSF: conv is self-adjoint
        return conv(np.repeat(np.repeat(y, factor, 0), factor, 1))

    x = np.repeat(np.repeat(np.clip(data - shift, 1e-3, None), factor, 0), factor, 1) / factor**2
    for _ in range(iterations):
        x = x * np.clip(adjoint(data / np.maximum(forward(x), 1e-12)), 0.0, None)
    p = pad_px * factor
    return x[p : x.shape[0] - p, p : x.shape[1] - p] * factor**2
