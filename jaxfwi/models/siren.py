"""SIREN: MLP with sine activations (IFWI), Sitzmann et al. 2020 initialisation."""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfwi.models._common import check_shape, float_dtype, grid_coords, torch_linear_init, uniform_init

Array = jax.Array


class SirenNet(nn.Module):
    """Sine-activated MLP acting on points: ``[P, d_in] -> [P, out]``.

    Layer ``k`` (``k = 0 .. n_sine-1``) computes ``sin(omega0 * (W_k h + b_k))``.
    Initialisation (SIREN paper): first layer ``W ~ U(-1/in, 1/in)``, later sine
    layers ``W ~ U(-sqrt(6/in)/omega0, +sqrt(6/in)/omega0)``; biases as PyTorch's
    ``nn.Linear`` default ``U(-1/sqrt(in), 1/sqrt(in))`` (what the SIREN reference
    code uses). If ``out`` is not None a linear layer follows, weights
    ``U(-sqrt(6/in)/omega0, +...)`` (SIREN's "outermost linear") and a zero
    bias (so that a denormalised model starts near ``m0``).

    Attributes:
      width: hidden width.
      n_sine: number of sine layers (>= 1).
      out: output features of the final linear layer, or None for no linear layer
        (then the output is the last sine layer, ``width`` features).
      omega0: frequency factor.
    """
    width: int = 128
    n_sine: int = 4
    out: Any = 1
    omega0: float = 30.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.n_sine < 1:
            raise ValueError(f"SirenNet: n_sine={self.n_sine} must be >= 1")
        dt = float_dtype(self.dtype)
        h = x.astype(dt)
        for k in range(self.n_sine):
            fan_in = h.shape[-1]
            bound = 1.0 / fan_in if k == 0 else math.sqrt(6.0 / fan_in) / self.omega0
            h = nn.Dense(self.width, kernel_init=uniform_init(bound),
                         bias_init=torch_linear_init(fan_in), dtype=dt, param_dtype=dt,
                         name=f"sine_{k}")(h)
            h = jnp.sin(self.omega0 * h)
        if self.out is not None:
            fan_in = h.shape[-1]
            h = nn.Dense(int(self.out), kernel_init=uniform_init(math.sqrt(6.0 / fan_in) / self.omega0),
                         bias_init=nn.initializers.zeros, dtype=dt, param_dtype=dt,
                         name="linear_out")(h)
        return h


class Siren(nn.Module):
    """IFWI representation: a SIREN evaluated on the normalised grid coordinates.

    ``F(x) = W_out h_depth + b_out``, ``h_k = sin(omega0 (W_k h_{k-1} + b_k))``,
    ``h_0 = x in [-1, 1]^d``. Paper settings (CR-FWI): width 128, depth 4, omega0 30;
    ``depth`` counts the sine layers (4 sine layers + 1 linear output layer gives
    the published 50.05K parameters at 188 x 500, i.e. independent of the grid).

    Attributes:
      shape: grid shape (1, 2 or 3 dims).
      width, depth, omega0: see above.
      dtype: float dtype (default float32, float64 under x64).

    ``apply(params)`` -> dimensionless array of ``shape`` (O(0.03) at init).
    """
    shape: tuple[int, ...]
    width: int = 128
    depth: int = 4
    omega0: float = 30.0
    dtype: Any = None

    @nn.compact
    def __call__(self) -> Array:
        shape = check_shape(self.shape, owner="Siren")
        dt = float_dtype(self.dtype)
        x = jnp.asarray(grid_coords(shape, dt))
        y = SirenNet(width=self.width, n_sine=self.depth, out=1, omega0=self.omega0, dtype=dt, name="net")(x)
        return y.reshape(shape)
