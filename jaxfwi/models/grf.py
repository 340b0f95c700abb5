"""Gaussian random fields with Matérn covariance, sampled spectrally (FFT).

Used as the fixed latent input of FAD-FWI's U-Net (METHODS.md section 2:
"GRF with Matérn covariance, smoothness 3.0").
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxfwi.models._common import check_shape, float_dtype

Array = jax.Array


def matern_spectrum_np(shape: Sequence[int], smoothness: float = 3.0,
                       length_scale: Optional[float] = None) -> np.ndarray:
    """Matérn power spectrum on the FFT frequency grid, normalised to mean 1 (numpy, float64).

    ``P(k) ∝ (2 nu / l^2 + 4 pi^2 |k|^2) ** -(nu + d/2)`` with ``k`` in cycles per
    grid point (``fftfreq``), ``nu = smoothness`` and ``l = length_scale`` in grid
    points (default ``0.1 * max(shape)``). Returns an array of ``shape``.
    """
    shape = check_shape(shape, owner="matern_spectrum")
    if not smoothness > 0:
        raise ValueError(f"matern_spectrum: smoothness={smoothness!r} must be > 0")
    if length_scale is None:
        length_scale = 0.1 * max(shape)
    if not length_scale > 0:
        raise ValueError(f"matern_spectrum: length_scale={length_scale!r} must be > 0 "
                         "(grid points)")
    d = len(shape)
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    k2 = sum(f ** 2 for f in freqs)
    kappa2 = 2.0 * smoothness / length_scale ** 2
    p = (kappa2 + 4.0 * np.pi ** 2 * k2) ** (-(smoothness + d / 2.0))
    return p / np.mean(p)


def matern_spectrum(shape: Sequence[int], smoothness: float = 3.0,
                    length_scale: Optional[float] = None, dtype: Any = None) -> Array:
    """:func:`matern_spectrum_np` as a ``jnp`` array of the given float dtype."""
    return jnp.asarray(matern_spectrum_np(shape, smoothness, length_scale), float_dtype(dtype))


def matern_grf(key: Array, shape: Sequence[int], smoothness: float = 3.0,
               length_scale: Optional[float] = None, dtype: Any = None) -> Array:
    """Sample a zero-mean, unit-variance Gaussian random field with Matérn covariance.

    White noise is filtered in the Fourier domain by ``sqrt(P(k))`` (see
    :func:`matern_spectrum`); because ``P`` is normalised to mean 1 the pointwise
    variance is 1 in expectation (the boundary is periodic).

    Args:
      key: PRNG key.
      shape: field shape (1, 2 or 3 dims), e.g. ``(nz, nx)``.
      smoothness: Matérn smoothness ``nu`` (3.0 as in FAD-FWI); larger is smoother.
      length_scale: correlation length in grid points (default ``0.1 * max(shape)``).
      dtype: float dtype (default: float32, float64 under x64).
    Returns:
      Dimensionless array of ``shape``.
    """
    shape = check_shape(shape, owner="matern_grf")
    dt = float_dtype(dtype)
    p = matern_spectrum(shape, smoothness, length_scale, dt)
    noise = jax.random.normal(key, shape, dt)
    field = jnp.fft.ifftn(jnp.fft.fftn(noise) * jnp.sqrt(p)).real
    return field.astype(dt)
