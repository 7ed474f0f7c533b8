"""Scalar angular-spectrum propagation and the two-shot defocus pair.

Sign convention (Goodman): a monochromatic field is ``U(x, y)·exp(−iωt)`` and a plane wave travelling
towards +z is ``exp(+ikz)``.  Propagation by ``dz`` multiplies the spectrum by

    H(fx, fy) = exp(+i·2π·dz·√(n²/λ² − fx² − fy²))     for fx² + fy² < n²/λ²,  else 0

(evanescent waves are cut).  Positive ``dz`` is *downstream*, further along the propagation direction.
A converging lens of focal length f > 0 has the phase φ(r) = −k r²/(2f) and focuses downstream, so the
centre of I(+d) is brighter than that of I(−d).  The transport-of-intensity equation then reads
−k ∂I/∂z = ∇·(I ∇φ), with ∂I/∂z ≈ (I(+d) − I(−d)) / (2d) and k = 2πn/λ.

Note: the CVDM authors' code uses the opposite sign in its Fresnel kernel, so their "z = −1 µm"
plane is our +1 µm plane; only the channel order is affected.

Units: lengths (dz, λ, pixel) in µm, fields dimensionless with unit illumination |U|² = 1.
"""

from __future__ import annotations

import numpy as np

__all__ = ["angular_spectrum", "transfer_function", "two_shot"]


def transfer_function(
    shape: tuple[int, int], dz_um: float, wavelength_um: float, pixel_um: float, n_medium: float = 1.0
) -> np.ndarray:
    """Angular-spectrum transfer function H on the FFT grid of ``shape`` (evanescent part = 0)."""
    fy = np.fft.fftfreq(shape[0], d=pixel_um)
    fx = np.fft.fftfreq(shape[1], d=pixel_um)
    arg = (n_medium / wavelength_um) ** 2 - fy[:, None] ** 2 - fx[None, :] ** 2
    prop = arg > 0
    kz = np.sqrt(np.where(prop, arg, 0.0))
    return np.where(prop, np.exp(2j * np.pi * dz_um * kz), 0.0)


def angular_spectrum(
    field: np.ndarray,
    dz_um: float,
    wavelength_um: float,
    pixel_um: float,
    n_medium: float = 1.0,
    pad: bool = True,
) -> np.ndarray:
    """Propagate a complex field by ``dz_um`` (µm, positive = downstream) in a medium of index n.

    ``pad`` reflect-pads the field to twice its size (H/2, W/2 on each side) before the FFT and crops
    back, which suppresses wrap-around from the periodic boundary.  ``dz_um == 0`` returns a copy of
    the input unchanged (no evanescent filtering), so propagation by 0 is exactly the identity.
    """
    field = np.asarray(field)
    if field.ndim != 2:
        raise ValueError(f"field must be 2-D (H, W), got shape {field.shape}")
    if wavelength_um <= 0 or pixel_um <= 0 or n_medium <= 0:
        raise ValueError("wavelength_um, pixel_um and n_medium must all be > 0")
    if dz_um == 0:
        return field.astype(np.complex128, copy=True)
    h, w = field.shape
    if pad:
        ph, pw = h // 2, w // 2
        work = np.pad(field.astype(np.complex128), ((ph, ph), (pw, pw)), mode="reflect")
    else:
        ph = pw = 0
        work = field.astype(np.complex128)
    H = transfer_function(work.shape, dz_um, wavelength_um, pixel_um, n_medium)
    out = np.fft.ifft2(np.fft.fft2(work) * H)
    return out[ph : ph + h, pw : pw + w]


def two_shot(
    field: np.ndarray,
    defocus_um: float,
    wavelength_um: float,
    pixel_um: float,
    n_medium: float = 1.0,
    pad: bool = True,
) -> np.ndarray:
    """Intensities at −d and +d (d = ``defocus_um`` > 0), stacked as (2, H, W): [I(−d), I(+d)].

    Same padding and transfer function as :func:`angular_spectrum` (one shared forward FFT).
    """
    field = np.asarray(field)
    if defocus_um <= 0:
        raise ValueError(f"defocus_um is the half-distance d between the planes and must be > 0, got {defocus_um}")
    h, w = field.shape
    ph, pw = (h // 2, w // 2) if pad else (0, 0)
    work = np.pad(field.astype(np.complex128), ((ph, ph), (pw, pw)), mode="reflect") if pad else field
    spec = np.fft.fft2(work)
    H = transfer_function(work.shape, defocus_um, wavelength_um, pixel_um, n_medium)
    out = np.empty((2, h, w))
    # H(−d) = conj(H(+d)) on the propagating band (both vanish on the evanescent band)
    for i, tf in enumerate((np.conj(H), H)):
        u = np.fft.ifft2(spec * tf)[ph : ph + h, pw : pw + w]
        out[i] = u.real**2 + u.imag**2
    return out
