"""Gaussian random fields on a square grid: the random coefficients and sources of the PDE datasets.

Covariance (-Laplacian + tau^2 I)^(-alpha) (the FNO / DiffusionPDE choice, alpha = 2, tau = 3), drawn
spectrally on a periodic box twice the target size and cropped, so samples are not periodic."""
from __future__ import annotations

import numpy as np


def gaussian_random_field(n: int, size: int, rng: np.random.Generator, *, alpha: float = 2.0,
                          tau: float = 3.0) -> np.ndarray:
    """n zero-mean fields (n, size, size) float64 with unit pointwise standard deviation."""
    if n < 1 or size < 4:
        raise ValueError(f"gaussian_random_field needs n >= 1 and size >= 4, got n={n}, size={size}")
    m = 2 * size
    k = np.pi * np.fft.fftfreq(m, d=1.0 / m)  # wavenumbers of the periodic box [0, 2)^2
    amp = (k[:, None] ** 2 + k[None, :] ** 2 + tau**2) ** (-alpha / 2)
    amp[0, 0] = 0.0  # zero mean
    white = rng.standard_normal((n, m, m)) + 1j * rng.standard_normal((n, m, m))
    # Re(ifft2(white * amp)) has pointwise variance sum(amp^2) / m^4
    field = np.fft.ifft2(white * amp, axes=(-2, -1)).real[:, :size, :size]
    return field * m**2 / np.sqrt((amp**2).sum())
