"""WIRE (Gabor-wavelet activation) MLP: the WinFWI representation."""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfwi.models._common import check_shape, float_dtype, grid_coords, torch_linear_init, uniform_init

Array = jax.Array


class Gabor(nn.Module):
    """WIRE MLP (Saragadam et al. 2023) on the normalised grid coordinates (WinFWI).

    Two activation forms:

    * ``complex=True`` (default, the WIRE reference form): a complex Gabor wavelet
      ``psi(z) = exp(i omega0 z - |s0 z|^2)`` applied to complex pre-activations
      ``z = W h + b``; the first layer has real weights (real coordinates in), later
      layers and the output layer complex weights; the output is the real part of the
      last (linear) layer. Complex numbers are stored as pairs of real leaves
      (``kernel_re``/``kernel_im``, ``bias_re``/``bias_im``) so that the params
      pytree is real and ``optax``/``jvp``/``vjp`` work unchanged. The imaginary
      part of the output bias has no effect on the output and is omitted.
    * ``complex=False``: the real Gabor wavelet ``cos(omega0 z) exp(-(s0 z)^2)``
      of a single real pre-activation per unit.

    Width follows the WIRE code: the hidden width is ``int(width / sqrt(2))``
    (141 for width 200) in the complex form, so that a complex unit (two reals)
    costs about as much as a real one; the real form uses ``width`` as is.
    ``depth`` counts the activated layers (4 = first layer + 3 hidden), followed
    by one linear output layer. Initialisation: PyTorch ``nn.Linear`` default,
    ``U(-1/sqrt(in), 1/sqrt(in))`` for weights and biases (real and imaginary parts
    drawn independently), except for the output layer: zero bias and weights
    ``U(-a/sqrt(in), a/sqrt(in))`` with ``a = out_init_scale`` (0.1). With WIRE's
    plain init (a = 1) the initial output has std ~0.23 (231 m/s at the CR scale
    S = 1000 m/s, a mean offset of ~46 m/s), which would swamp the initial model;
    a = 0.1 brings it to the SIREN's level (~20 m/s).

    Parameter count at the published settings (width 200, depth 4): 60,631
    *complex-counted* numbers (PyTorch ``numel`` of a ``cfloat`` network: the
    published 60.63K), i.e. 120,838 real scalars; use
    ``count_params(p, complex_as_one=True)`` to get the published convention.

    Attributes:
      shape: grid shape (1, 2 or 3 dims).
      width, depth, omega0, s0, complex: see above (paper: 200, 4, 5, 5).
      dtype: float dtype (default float32, float64 under x64).

    ``apply(params)`` -> dimensionless array of ``shape``.
    """
    shape: tuple[int, ...]
    width: int = 200
    depth: int = 4
    omega0: float = 5.0
    s0: float = 5.0
    complex: bool = True
    out_init_scale: float = 0.1
    dtype: Any = None

    def _param(self, name, fan_in, shape, dt, zero=False, gain=1.0):
        if zero:
            init = nn.initializers.zeros
        else:
            init = uniform_init(gain / math.sqrt(fan_in))
        return self.param(name, init, shape, dt)

    @nn.compact
    def __call__(self) -> Array:
        shape = check_shape(self.shape, owner="Gabor")
        if self.depth < 1:
            raise ValueError(f"Gabor: depth={self.depth} must be >= 1")
        dt = float_dtype(self.dtype)
        x = jnp.asarray(grid_coords(shape, dt))
        w0, s0 = self.omega0, self.s0
        if not self.complex:
            h = x
            for k in range(self.depth):
                fan_in = h.shape[-1]
                z = nn.Dense(self.width, kernel_init=torch_linear_init(fan_in),
                             bias_init=torch_linear_init(fan_in), dtype=dt, param_dtype=dt,
                             name=f"gabor_{k}")(h)
                h = jnp.cos(w0 * z) * jnp.exp(-(s0 * z) ** 2)
            fan_in = h.shape[-1]
            y = nn.Dense(1, kernel_init=uniform_init(self.out_init_scale / math.sqrt(fan_in)),
                         bias_init=nn.initializers.zeros,
                         dtype=dt, param_dtype=dt, name="linear_out")(h)
            return y.reshape(shape)

        hidden = int(self.width / math.sqrt(2.0))
        # first layer: real weights, real pre-activation a, complex output
        fan_in = x.shape[-1]
        W = self._param("gabor_0_kernel", fan_in, (fan_in, hidden), dt)
        b = self._param("gabor_0_bias", fan_in, (hidden,), dt)
        a = x @ W + b
        env = jnp.exp(-(s0 * a) ** 2)
        hr, hi = env * jnp.cos(w0 * a), env * jnp.sin(w0 * a)
        for k in range(1, self.depth):
            fan_in = hidden
            Wr = self._param(f"gabor_{k}_kernel_re", fan_in, (hidden, hidden), dt)
            Wi = self._param(f"gabor_{k}_kernel_im", fan_in, (hidden, hidden), dt)
            br = self._param(f"gabor_{k}_bias_re", fan_in, (hidden,), dt)
            bi = self._param(f"gabor_{k}_bias_im", fan_in, (hidden,), dt)
            a = hr @ Wr - hi @ Wi + br          # real part of the pre-activation
            c = hr @ Wi + hi @ Wr + bi          # imaginary part
            # exp(i w0 (a + i c) - s0^2 (a^2 + c^2))
            env = jnp.exp(-w0 * c - s0 ** 2 * (a * a + c * c))
            hr, hi = env * jnp.cos(w0 * a), env * jnp.sin(w0 * a)
        a = self.out_init_scale
        Wr = self._param("linear_out_kernel_re", hidden, (hidden, 1), dt, gain=a)
        Wi = self._param("linear_out_kernel_im", hidden, (hidden, 1), dt, gain=a)
        br = self._param("linear_out_bias_re", hidden, (1,), dt, zero=True)
        y = hr @ Wr - hi @ Wi + br
        return y.reshape(shape)
