"""Convolutional PML (C-PML) profiles for the second-order wave equation.

Pasalic & McGarry (2010): along each absorbing axis the second derivative is
replaced by ``d/dx (du/dx + psi) + zeta`` with memory variables

    psi[n]  = b psi[n-1]  + a du/dx[n]
    zeta[n] = b zeta[n-1] + a (d2u/dx2[n] + dpsi/dx[n])

where ``b = exp(-(d + alpha) dt)``, ``a = d / (d + alpha) (b - 1)``, the damping
``d(s) = d0 s^2`` with ``d0 = -3 v_max ln(R) / (2 L)`` and the frequency shift
``alpha(s) = pi f_ref (1 - s)``; ``s`` in (0, 1] is the depth into the layer.
"""
from __future__ import annotations

import jax.numpy as jnp


def cpml_coefficients(width: int, dx: float, dt: float, max_vel, freq, reflection: float = 1e-3, dtype=None):
    """C-PML coefficients of one absorbing layer.

    Args:
      width: number of cells in the layer (static, > 0).
      dx: cell size along the absorbing axis, m.
      dt: time step, s.
      max_vel: largest velocity, m/s (may be traced).
      freq: reference frequency of the frequency shift, Hz (may be traced).
      reflection: theoretical normal-incidence reflection coefficient R.

    Returns:
      ``(a, b)``, each ``[width]``, ordered from the outer edge (index 0) to the
      cell next to the model (index ``width - 1``); reverse them for a layer on the
      high side of an axis.
    """
    dtype = dtype or jnp.result_type(float)
    length = width * dx
    s = (width - jnp.arange(width, dtype=dtype)) / width  # 1 at the edge, 1/width next to the model
    d0 = -3.0 * max_vel * jnp.log(reflection) / (2.0 * length)
    d = d0 * s**2
    alpha = jnp.pi * freq * (1.0 - s)
    b = jnp.exp(-(d + alpha) * dt)
    a = jnp.where(d + alpha > 0, d / (d + alpha) * (b - 1.0), 0.0)
    return a.astype(dtype), b.astype(dtype)
