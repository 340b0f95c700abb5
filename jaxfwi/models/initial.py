"""Initial-model builders (METHODS.md section 4/5: smooth, linear, constant; FAD-FWI's
smoothed 1-D profile and perturbed initial models).

All functions take/return velocities in m/s with depth as the first axis and
return ``jnp`` arrays of the default float dtype (float32; float64 under x64).
They are plain (not jitted) preprocessing helpers and validate their inputs.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from jaxfwi.models._common import check_shape, float_dtype


def _as_model(v: Any, name: str, fn: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim not in (1, 2, 3):
        raise ValueError(f"{fn}: {name} has shape {arr.shape}; expected [nz], [nz, nx] or "
                         "[nz, ny, nx]")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{fn}: {name} contains NaN or inf")
    return arr


def _out(arr: np.ndarray):
    return jnp.asarray(arr, dtype=float_dtype())


def smooth(v_true: Any, sigma: float | Sequence[float]):
    """Gaussian-smoothed model (the papers' "smooth" initial model).

    Args:
      v_true: velocity [nz, nx] (or 1-/3-D), m/s.
      sigma: Gaussian standard deviation in grid points (scalar or one per axis);
        0 returns the model unchanged. Edges use mode 'nearest'.
    Returns:
      array of ``v_true.shape``, m/s.
    """
    arr = _as_model(v_true, "v_true", "smooth")
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (arr.ndim,))
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError(f"smooth: sigma={sigma!r} must be >= 0 (grid points)")
    from scipy import ndimage  # noqa: PLC0415  (imported on use: ~0.2 s at every `import jaxfwi` otherwise)

    return _out(ndimage.gaussian_filter(arr, sigma=tuple(s), mode="nearest"))


def linear(shape: Sequence[int], v_top: float, v_bottom: float):
    """Velocity increasing linearly with depth (the papers' "linear" initial model).

    Args:
      shape: grid shape, depth first.
      v_top: velocity at the first depth row (m/s).
      v_bottom: velocity at the last depth row (m/s).
    Returns:
      array of ``shape``, constant along the horizontal axes, m/s.
    """
    shape = check_shape(shape, owner="linear")
    if not (v_top > 0 and v_bottom > 0):
        raise ValueError(f"linear: v_top={v_top!r}, v_bottom={v_bottom!r} must be > 0 m/s")
    prof = np.linspace(float(v_top), float(v_bottom), shape[0])
    return _out(np.broadcast_to(prof.reshape((-1,) + (1,) * (len(shape) - 1)), shape))


def constant(shape: Sequence[int], value: float):
    """Constant velocity model (the papers' "constant" initial model), m/s."""
    shape = check_shape(shape, owner="constant")
    if not value > 0:
        raise ValueError(f"constant: value={value!r} must be > 0 m/s")
    return _out(np.full(shape, float(value)))


def smoothed_profile(v_true: Any, sigma: float):
    """1-D depth profile of the model, smoothed and broadcast (FAD-FWI's initial model).

    The horizontal mean of ``v_true`` at each depth is smoothed with a Gaussian of
    ``sigma`` grid points (mode 'nearest') and repeated along the horizontal axes.
    Returns an array of ``v_true.shape``, m/s.
    """
    arr = _as_model(v_true, "v_true", "smoothed_profile")
    if not sigma >= 0:
        raise ValueError(f"smoothed_profile: sigma={sigma!r} must be >= 0 (grid points)")
    prof = arr.reshape(arr.shape[0], -1).mean(axis=1)
    if sigma > 0:
        from scipy import ndimage  # noqa: PLC0415

        prof = ndimage.gaussian_filter1d(prof, float(sigma), mode="nearest")
    return _out(np.broadcast_to(prof.reshape((-1,) + (1,) * (arr.ndim - 1)), arr.shape))


def perturb(v: Any, percent: float):
    """Scale a model by ``1 + percent / 100`` (FAD-FWI's -30 % .. +30 % tests), m/s."""
    arr = _as_model(v, "v", "perturb")
    if not percent > -100:
        raise ValueError(f"perturb: percent={percent!r} must be > -100")
    return _out(arr * (1.0 + float(percent) / 100.0))
