"""The NTK-scaled shallow network of CR-FWI eq. (5), for the infinite-width study.

    f(x) = (1 / sqrt(n)) * sum_{j=1..n} a_j * sigma(w_j . x + b_j),   a_j, w_j, b_j ~ N(0, 1)

(NTK parameterisation: every weight is a standard normal, the 1/sqrt(n) sits in the
forward pass, so the representation NTK K_theta converges to a deterministic kernel
as n -> infinity while the output f stays O(1), a Gaussian process.)
``sigma`` is ``tanh`` (default) or ``relu``.

:class:`ShallowNTKVelocity` turns it into a velocity parameterisation with the same
interface as ``jaxfwi.models.build(...)``: ``.init(key) -> params``,
``.velocity(params) -> v [shape]`` with ``v = v_init + scale * f(x)`` on normalised
grid coordinates ``x in [-1, 1]^ndim`` (denormalisation as in CR-FWI).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["NTKShallow", "ShallowNTKVelocity", "grid_coordinates"]

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _activation(name: str):
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation={name!r}: use one of {sorted(_ACTIVATIONS)}.") from None


class NTKShallow(nn.Module):
    """One hidden layer, NTK scaling.  ``x [n_points, d]`` (or ``[n_points]``) -> ``[n_points]``.

    Parameters: ``w [d, width]``, ``b [width]``, ``a [width]``, all N(0, 1).
    """

    width: int
    activation: str = "tanh"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = jnp.asarray(x)
        if x.ndim == 1:
            x = x[:, None]
        init = nn.initializers.normal(stddev=1.0)
        w = self.param("w", init, (x.shape[-1], self.width), self.param_dtype)
        b = self.param("b", init, (self.width,), self.param_dtype)
        a = self.param("a", init, (self.width,), self.param_dtype)
        h = _activation(self.activation)(x @ w + b)
        return (h @ a) / math.sqrt(self.width)


def grid_coordinates(shape, dtype=jnp.float32) -> jax.Array:
    """Normalised coordinates ``[prod(shape), ndim]`` in [-1, 1] (C order, depth first)."""
    axes = [jnp.linspace(-1.0, 1.0, int(s), dtype=dtype) if s > 1 else jnp.zeros((1,), dtype)
            for s in shape]
    mesh = jnp.meshgrid(*axes, indexing="ij")
    return jnp.stack([g.ravel() for g in mesh], axis=-1)


class ShallowNTKVelocity:
    """``v = v_init + scale * f_theta(x)`` with f the NTK-scaled shallow net.

    Args:
      v_init: background velocity (m/s), any shape ([nz], [nz, nx], ...).
      width: hidden width n.
      scale: velocity scale S in m/s (default 100 m/s; CR-FWI's denormalisation of the CR
        methods uses 1000 m/s).  The output at init is a random O(1) field, so S sets how
        far (and how randomly) the initial velocity departs from ``v_init``.
      activation: ``"tanh"`` or ``"relu"``.
      param_dtype: dtype of the weights (default: v_init's floating dtype).
    """

    def __init__(self, v_init, width: int, *, scale: float = 100.0, activation: str = "tanh",
                 param_dtype: Optional[Any] = None):
        self.v_init = jnp.asarray(v_init)
        if not jnp.issubdtype(self.v_init.dtype, jnp.floating):
            self.v_init = self.v_init.astype(jnp.float32)
        self.shape = tuple(self.v_init.shape)
        self.scale = float(scale)
        dt = self.v_init.dtype if param_dtype is None else param_dtype
        self.coords = grid_coordinates(self.shape, self.v_init.dtype)
        self.module = NTKShallow(int(width), activation, dt)

    def init(self, key: jax.Array):
        return self.module.init(key, self.coords)["params"]

    def field(self, params) -> jax.Array:
        """The dimensionless network output f_theta on the grid, ``[*shape]``."""
        return self.module.apply({"params": params}, self.coords).reshape(self.shape)

    def velocity(self, params) -> jax.Array:
        return self.v_init + self.scale * self.field(params)

    __call__ = velocity
