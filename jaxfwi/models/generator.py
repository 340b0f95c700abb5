"""CNN generator from a fixed latent vector (GNN-FWI / NNFWI baseline, Zhu et al. 2022)."""
from __future__ import annotations

import functools
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxfwi.models._common import check_shape, float_dtype

Array = jax.Array


@functools.lru_cache(maxsize=32)
def _latent_vector(dim: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal(dim)
    z.setflags(write=False)  # cached and shared between runs: read-only
    return z


class Generator(nn.Module):
    """GNN-FWI: ``F = scale * tanh(G(z))`` with ``G`` a small upsampling CNN.

    ``z`` is a fixed standard-normal vector of ``latent_dim`` values drawn from
    ``numpy.random.default_rng(latent_seed)`` (a constant, not a parameter). ``G``: Dense ->
    reshape to a coarse grid of ``ceil(n_i / 2**len(channels))`` points per axis and
    ``channels[0]`` channels -> for each ``c`` in ``channels``: 2x (bi/tri)linear
    upsampling, 3^d conv to ``c`` channels, LeakyReLU(0.2) -> 3^d conv to one
    channel -> crop to ``shape``. The last conv is initialised at 1e-2 x the
    LeCun-normal scale so the output starts near 0 (model near ``m0``).

    How the scale enters: the module multiplies ``tanh`` by ``scale`` itself
    (as Zhu et al.'s "scaling factor"); ``build("gnn-fwi")`` uses a denorm scale
    S = 1 m/s, so ``v = m0 + scale * tanh(G(z))`` with ``scale`` in m/s
    (100 by default; FAD-FWI compares 100, 1000 and none). ``scale=None`` drops the
    tanh and the factor (a linear output).

    Attributes:
      shape: grid shape (1, 2 or 3 dims).
      scale: the scaling factor, or None.
      channels, latent_dim, latent_seed: generator settings.
      dtype: float dtype (default float32, float64 under x64).
    """
    shape: tuple[int, ...]
    scale: Optional[float] = 100.0
    channels: tuple[int, ...] = (64, 32, 16)
    latent_dim: int = 8
    latent_seed: int = 0
    dtype: Any = None

    @nn.compact
    def __call__(self) -> Array:
        shape = check_shape(self.shape, owner="Generator")
        chans = tuple(int(c) for c in self.channels)
        if len(chans) < 1:
            raise ValueError("Generator: channels must name at least one stage")
        dt = float_dtype(self.dtype)
        d = len(shape)
        n_up = len(chans)
        coarse = tuple(max(1, math.ceil(n / 2 ** n_up)) for n in shape)
        z = jnp.asarray(_latent_vector(int(self.latent_dim), int(self.latent_seed)), dt)
        x = nn.Dense(int(np.prod(coarse)) * chans[0], dtype=dt, param_dtype=dt, name="dense")(z)
        x = nn.leaky_relu(x.reshape((1,) + coarse + (chans[0],)), 0.2)
        for k, c in enumerate(chans):
            size = (1,) + tuple(2 * s for s in x.shape[1:-1]) + (x.shape[-1],)
            x = jax.image.resize(x, size, method="linear")
            x = nn.Conv(c, (3,) * d, padding="SAME", dtype=dt, param_dtype=dt, name=f"conv_{k}")(x)
            x = nn.leaky_relu(x, 0.2)
        init = nn.initializers.variance_scaling(1e-4, "fan_in", "truncated_normal")
        x = nn.Conv(1, (3,) * d, padding="SAME", kernel_init=init, dtype=dt, param_dtype=dt,
                    name="out")(x)
        y = x[0, ..., 0][tuple(slice(0, n) for n in shape)]
        if self.scale is None:
            return y
        return self.scale * jnp.tanh(y)
