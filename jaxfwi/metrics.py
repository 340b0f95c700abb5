"""Velocity-model quality metrics (MSE, MAE, SSIM, PSNR).

Inputs are velocity models in **m/s**, ``[nz, nx]`` (or ``[nz, ny, nx]``), the
estimate ``v`` and the reference ``v_true`` of the same shape.

Units, following METHODS.md: CR-FWI reports MSE / MAE / SSIM with velocity in
**km/s** (the default ``units="km/s"`` here divides by 1000 before squaring);
FAD-FWI reports MSE in (m/s)^2 and ``PSNR = 10 log10((max(v_true) - min(v_true))**2 / MSE)``,
a ratio that is the same in any unit. SSIM is unit-free.

All metrics are ``jax.numpy`` code (jittable, differentiable in ``v``) except
:func:`all_metrics`, which returns Python floats for reports.
"""
from __future__ import annotations

import functools
import math

import jax

import jax.numpy as jnp
import numpy as np

__all__ = ["mse", "mae", "relative_error", "ssim", "psnr", "all_metrics"]

_UNIT_SCALE = {"km/s": 1e-3, "m/s": 1.0}


def _pair(name, v, v_true):
    v = jnp.asarray(v)
    v_true = jnp.asarray(v_true)
    if v.shape != v_true.shape:
        raise ValueError(
            f"{name}: v has shape {v.shape} but v_true has shape {v_true.shape}; compare models on the same grid "
            "(see jaxfwi.datasets.resample)."
        )
    dtype = jnp.result_type(v.dtype, v_true.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float32
    return v.astype(dtype), v_true.astype(dtype)


def _scale(name, units):
    if units not in _UNIT_SCALE:
        raise ValueError(f"{name}: units={units!r}; use 'km/s' (the papers' convention) or 'm/s'. Inputs are m/s.")
    return _UNIT_SCALE[units]


@functools.partial(jax.jit, static_argnames=("units",))
def mse(v, v_true, units: str = "km/s"):
    """Mean squared error ``mean((v - v_true)**2)``.

    Args:
      v, v_true: velocity models in m/s, same shape.
      units: unit the error is expressed in: ``"km/s"`` (CR-FWI tables, result in
        (km/s)^2) or ``"m/s"`` (FAD-FWI tables, (m/s)^2).

    Returns:
      scalar.
    """
    v, v_true = _pair("mse", v, v_true)
    s = _scale("mse", units)
    return jnp.mean(jnp.square((v - v_true) * s))


@functools.partial(jax.jit, static_argnames=("units",))
def mae(v, v_true, units: str = "km/s"):
    """Mean absolute error ``mean(|v - v_true|)`` in ``units`` (inputs in m/s)."""
    v, v_true = _pair("mae", v, v_true)
    s = _scale("mae", units)
    return jnp.mean(jnp.abs((v - v_true) * s))


@jax.jit
def relative_error(v, v_true):
    """Relative L2 error ``||v - v_true|| / ||v_true||`` (unit-free)."""
    v, v_true = _pair("relative_error", v, v_true)
    return jnp.linalg.norm((v - v_true).ravel()) / jnp.linalg.norm(v_true.ravel())


def _gaussian_window(win_size: int, sigma: float) -> np.ndarray:
    x = np.arange(win_size) - (win_size - 1) / 2.0
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _valid_filter(x, g, batch_axes: int = 0):
    """Separable 'valid' correlation of ``x`` with the 1-D window ``g`` along every axis
    (except the first ``batch_axes``)."""
    w = len(g)
    for ax in range(batch_axes, x.ndim):
        n = x.shape[ax] - w + 1
        acc = 0.0
        for i in range(w):
            sl = [slice(None)] * x.ndim
            sl[ax] = slice(i, i + n)
            acc = acc + float(g[i]) * x[tuple(sl)]
        x = acc
    return x


@functools.partial(jax.jit, static_argnames=("win_size", "sigma", "k1", "k2"))
def ssim(v, v_true, data_range=None, win_size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03):
    """Structural similarity index (Wang et al. 2004), Gaussian window.

    The standard definition: local means, variances and covariance weighted by
    an ``win_size``-point Gaussian window (``sigma = 1.5``), constants
    ``C1 = (k1 L)**2``, ``C2 = (k2 L)**2`` with ``L = data_range``, averaged over
    the positions where the window fits entirely inside the model (a border of
    ``(win_size - 1) // 2`` cells is left out). This is what
    ``skimage.metrics.structural_similarity(v, v_true, data_range=L,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` computes.

    Args:
      v, v_true: models, same shape (2-D or 3-D), each dimension ``>= win_size``;
        any consistent unit (SSIM is unit-free when ``data_range`` is in the
        same unit).
      data_range: ``L``; default ``max(v_true) - min(v_true)``.
      win_size: odd window length (11).
      sigma: Gaussian standard deviation in cells (1.5).
      k1, k2: the SSIM constants.

    Returns:
      scalar in ``[-1, 1]``; 1 iff ``v == v_true``.
    """
    v, v_true = _pair("ssim", v, v_true)
    if win_size % 2 != 1 or win_size < 3:
        raise ValueError(f"ssim: win_size={win_size} must be an odd integer >= 3 (default 11).")
    if any(n < win_size for n in v.shape):
        raise ValueError(
            f"ssim: model shape {v.shape} is smaller than the window win_size={win_size} in some dimension; "
            "use a smaller win_size (odd) or a larger model."
        )
    if data_range is None:
        data_range = jnp.max(v_true) - jnp.min(v_true)
    L = jnp.asarray(data_range, v.dtype)
    c1 = (k1 * L) ** 2
    c2 = (k2 * L) ** 2
    g = _gaussian_window(win_size, sigma)
    # Shift both images by one constant before forming second moments: the
    # variances are shift-invariant and this avoids float32 cancellation in
    # E[x^2] - E[x]^2 for velocities of ~1e3 m/s. The luminance term uses the
    # unshifted means.
    c = jnp.mean(v_true)
    x = v - c
    y = v_true - c
    mx, my, exx, eyy, exy = _valid_filter(jnp.stack([x, y, x * x, y * y, x * y]), g, batch_axes=1)
    sxx = exx - mx * mx
    syy = eyy - my * my
    sxy = exy - mx * my
    mu_x = mx + c
    mu_y = my + c
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return jnp.mean(s)


@jax.jit
def psnr(v, v_true):
    """Peak signal-to-noise ratio as FAD-FWI defines it, in dB.

    ``PSNR = 10 log10((max(v_true) - min(v_true))**2 / MSE)``, MSE in the same
    unit as the range (so the value is unit-free). Infinite for ``v == v_true``.
    """
    v, v_true = _pair("psnr", v, v_true)
    rng = jnp.max(v_true) - jnp.min(v_true)
    return 10.0 * jnp.log10(jnp.square(rng) / jnp.mean(jnp.square(v - v_true)))


def all_metrics(v, v_true, units: str = "km/s") -> dict:
    """All metrics as Python floats: ``{"mse", "mae", "ssim", "psnr", "rel_err"}``.

    ``mse``/``mae`` in ``units`` (inputs in m/s; default km/s as CR-FWI),
    ``ssim`` with the true model's range, ``psnr`` in dB (FAD-FWI), ``rel_err``
    the relative L2 error.
    """
    v, v_true = _pair("all_metrics", v, v_true)
    _scale("all_metrics", units)
    vals = _all_metrics(v, v_true, units)
    return {k: float(x) for k, x in vals.items()}


@functools.partial(jax.jit, static_argnames=("units",))
def _all_metrics(v, v_true, units):
    out = {
        "mse": mse(v, v_true, units),
        "mae": mae(v, v_true, units),
        "psnr": psnr(v, v_true),
        "rel_err": relative_error(v, v_true),
    }
    out["ssim"] = ssim(v, v_true) if all(n >= 11 for n in v.shape) else jnp.asarray(math.nan, v.dtype)
    return out
