"""Model regularisers: ``f(v) -> scalar`` on a velocity model ``v[nz, nx]``.

Finite differences are taken between neighbouring cells (``v[i+1] - v[i]``,
in m/s per cell); no grid spacing enters, so the weights ``alpha`` absorb the
units. All functions are ``jax.numpy`` code: jittable and differentiable.
Use them by adding to a misfit, e.g.::

    a = tv_weight_schedule(epoch)          # ADFWI-TV: 2e-9 * 0.9 ** (epoch // 20)
    loss = l2(d_syn, d_obs) + total_variation(v, a, a)
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["total_variation", "tv_weight_schedule", "tikhonov"]


def _check_model(name, v):
    v = jnp.asarray(v)
    if v.ndim != 2:
        raise ValueError(f"{name}: v has shape {v.shape}; expected a 2-D velocity model [nz, nx].")
    if v.shape[0] < 2 or v.shape[1] < 2:
        raise ValueError(f"{name}: v has shape {v.shape}; need at least 2 cells along z and x.")
    if not jnp.issubdtype(v.dtype, jnp.floating):
        v = v.astype(jnp.float32)
    return v


@functools.partial(jax.jit, static_argnames=("isotropic",))
def total_variation(v, alpha_z=1.0, alpha_x=1.0, eps: float = 1e-6, isotropic: bool = True):
    """Smoothed total variation of a 2-D model with separate z / x weights.

    Isotropic form (default)::

        TV(v) = sum_{i,j} sqrt(alpha_x * Dx[i,j]**2 + alpha_z * Dz[i,j]**2 + eps)

    with forward differences ``Dz = v[i+1, j] - v[i, j]``, ``Dx = v[i, j+1] - v[i, j]``
    on the common ``[nz-1, nx-1]`` cells. ``eps > 0`` smooths the kink at zero
    gradient, so the TV gradient is finite for constant models.

    Anisotropic form (``isotropic=False``), as ADFWI's first-order TV::

        TV(v) = sum alpha_x * sqrt(Dx**2 + eps) + sum alpha_z * sqrt(Dz**2 + eps)

    (each over its full difference array). In the isotropic form the weights
    sit inside the square root (they scale like ``alpha**0.5``); in the
    anisotropic form they multiply linearly.

    Args:
      v: ``[nz, nx]`` velocity, m/s.
      alpha_z, alpha_x: non-negative weights of the vertical / horizontal
        differences (scalars; may be traced, e.g. from :func:`tv_weight_schedule`).
      eps: smoothing constant, (m/s)^2.
      isotropic: which form (see above).

    Returns:
      scalar.
    """
    v = _check_model("total_variation", v)
    dz = v[1:, :] - v[:-1, :]
    dx = v[:, 1:] - v[:, :-1]
    az = jnp.asarray(alpha_z, v.dtype)
    ax = jnp.asarray(alpha_x, v.dtype)
    if isotropic:
        return jnp.sum(jnp.sqrt(ax * jnp.square(dx[:-1, :]) + az * jnp.square(dz[:, :-1]) + eps))
    return ax * jnp.sum(jnp.sqrt(jnp.square(dx) + eps)) + az * jnp.sum(jnp.sqrt(jnp.square(dz) + eps))


@functools.partial(jax.jit, static_argnames=("step_size",))
def tv_weight_schedule(epoch, alpha0: float = 2e-9, step_size: int = 20, gamma: float = 0.9):
    """Step-decayed TV weight ``alpha0 * gamma ** (epoch // step_size)``.

    CR-FWI's ADFWI-TV setting: ``alpha_x = alpha_z = 2e-9``, decayed by
    ``gamma = 0.9`` every ``step_size = 20`` epochs (a StepLR schedule on the
    regularisation weight).

    Args:
      epoch: 0-based epoch (int or traced integer scalar).
      alpha0: initial weight.
      step_size: epochs between decays (positive int).
      gamma: decay factor per step, in ``(0, 1]``.

    Returns:
      the weight (a jnp scalar); pass it as ``alpha_z`` and ``alpha_x``.
    """
    if not isinstance(step_size, jax.core.Tracer) and int(step_size) < 1:
        raise ValueError(f"tv_weight_schedule: step_size={step_size!r} must be a positive number of epochs.")
    n = jnp.floor_divide(jnp.asarray(epoch, jnp.int32), step_size)
    return alpha0 * jnp.power(jnp.asarray(gamma, jnp.float32), n.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=("order",))
def tikhonov(v, order: int = 1, alpha=1.0):
    """Tikhonov (quadratic smoothness) penalty ``0.5 * alpha * ||D_order v||^2``.

    - ``order=0``: ``D`` is the identity (damping of the model itself).
    - ``order=1``: first differences along z and along x (gradient energy).
    - ``order=2``: second differences along z and along x
      (``v[i+1] - 2 v[i] + v[i-1]``; curvature energy).

    Args:
      v: ``[nz, nx]`` velocity, m/s (to regularise a *perturbation*, pass
        ``v - v0``).
      order: 0, 1 or 2.
      alpha: non-negative weight (scalar, may be traced).

    Returns:
      scalar, ``alpha * (m/s)^2``.
    """
    v = _check_model("tikhonov", v)
    a = jnp.asarray(alpha, v.dtype)
    if order == 0:
        return 0.5 * a * jnp.sum(jnp.square(v))
    if order == 1:
        dz = v[1:, :] - v[:-1, :]
        dx = v[:, 1:] - v[:, :-1]
    elif order == 2:
        if v.shape[0] < 3 or v.shape[1] < 3:
            raise ValueError(f"tikhonov: order=2 needs at least 3 cells along z and x; v has shape {v.shape}.")
        dz = v[2:, :] - 2.0 * v[1:-1, :] + v[:-2, :]
        dx = v[:, 2:] - 2.0 * v[:, 1:-1] + v[:, :-2]
    else:
        raise ValueError(f"tikhonov: order={order!r} is not supported; use 0, 1 or 2.")
    return 0.5 * a * (jnp.sum(jnp.square(dz)) + jnp.sum(jnp.square(dx)))
