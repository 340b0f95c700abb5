"""U-Net on a fixed Gaussian-random-field latent (FAD-FWI, deep-image-prior style)."""
from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxfwi.models._common import check_shape, float_dtype
from jaxfwi.models.grf import matern_spectrum_np

Array = jax.Array


@functools.lru_cache(maxsize=32)
def fixed_latent(shape: tuple[int, ...], seed: int, smoothness: float,
                 length_scale: Optional[float]) -> np.ndarray:
    """The fixed GRF latent of a given shape and seed, as a float64 numpy constant.

    White noise from ``numpy.random.default_rng(seed)`` filtered by the Matérn
    spectrum (same construction as :func:`~jaxfwi.models.matern_grf`), computed
    in numpy once and cached, so that inside ``jit`` it is a compile-time
    constant, not a traced computation or a parameter.
    """
    noise = np.random.default_rng(seed).standard_normal(shape)
    p = matern_spectrum_np(shape, smoothness, length_scale)
    z = np.ascontiguousarray(np.fft.ifftn(np.fft.fftn(noise) * np.sqrt(p)).real)
    z.setflags(write=False)  # cached and shared: read-only, so no caller can change another run's latent
    return z


NORMS = ("none", "instance")


class _ConvBlock(nn.Module):
    """Two 3^d convolutions, each followed by (optional instance normalisation and)
    LeakyReLU(0.2). ``[1, *S, C] -> [1, *S, f]``."""
    features: int
    ndim: int
    dtype: Any
    norm: str = "none"

    @nn.compact
    def __call__(self, x):
        k = (3,) * self.ndim
        for i in range(2):
            x = nn.Conv(self.features, k, padding="SAME", dtype=self.dtype,
                        param_dtype=self.dtype, name=f"conv_{i}")(x)
            if self.norm == "instance":
                x = nn.InstanceNorm(dtype=self.dtype, param_dtype=self.dtype, name=f"norm_{i}")(x)
            x = nn.leaky_relu(x, 0.2)
        return x


class UNet(nn.Module):
    """FAD-FWI: encoder-decoder CNN with skip connections fed a FIXED GRF latent.

    Input: one channel, a Matérn Gaussian random field of the model's size
    (smoothness 3.0, the construction of :func:`~jaxfwi.models.matern_grf`) drawn
    from ``numpy.random.default_rng(latent_seed)``. The latent is NOT a parameter: it is regenerated
    deterministically from the ``latent_seed`` attribute (a cached compile-time
    constant), so ``params`` holds only trainable weights and optax cannot touch it.
    Multi-seed runs (``vmap`` over init keys) therefore share the latent and differ
    in the network weights; give a different ``latent_seed`` for a different latent.

    Architecture, for ``features = (f_0, ..., f_K)``: encoder blocks at ``f_0..f_{K-1}``
    each followed by 2x average pooling, a bottleneck block at ``f_K``, decoder
    stages of (2x transposed conv to ``f_k``, concatenation with the skip, block at
    ``f_k``), and a **linear** 1x1 convolution to one channel (no output
    activation/scaling). A block is two 3x3 convs, each followed by instance normalisation
    (``norm``) and LeakyReLU(0.2). Inputs whose size is not divisible by ``2**K`` are edge-padded and the output is cropped
    back to ``shape``. Works for 1-, 2- and 3-D shapes.

    Attributes:
      shape: grid shape.
      features: channel widths per level ((32, 64, 128)).
      latent_seed, smoothness, length_scale: the fixed GRF latent
        (length scale in grid points, default ``0.1 * max(shape)``).
      norm: ``"instance"`` (default): normalise every convolution's output over space per
        channel, as deep-image-prior U-Nets do, so the output does not grow with the scale of
        the inner weights; ``"none"``: plain convolutions. In our FAD-FWI runs at the paper's
        Adam lr 0.01 the plain U-Net diverged within a few updates and the normalised one
        trained (benchmarks/results/README.md).
      dtype: float dtype (default float32, float64 under x64).

    ``apply(params)`` -> array of ``shape``. Used with scale S = 1 m/s (FAD-FWI's
    "no output scaling"), the output is the velocity update in m/s.
    """
    shape: tuple[int, ...]
    features: tuple[int, ...] = (32, 64, 128)
    latent_seed: int = 0
    smoothness: float = 3.0
    length_scale: Optional[float] = None
    norm: str = "instance"
    dtype: Any = None

    @nn.compact
    def __call__(self) -> Array:
        shape = check_shape(self.shape, owner="UNet")
        feats = tuple(int(f) for f in self.features)
        if len(feats) < 1:
            raise ValueError("UNet: features must name at least one level")
        if self.norm not in NORMS:
            raise ValueError(f"UNet: norm={self.norm!r}; use one of {NORMS}")
        dt = float_dtype(self.dtype)
        d = len(shape)
        K = len(feats) - 1
        m = 2 ** K
        z = jnp.asarray(fixed_latent(shape, int(self.latent_seed), float(self.smoothness),
                                     None if self.length_scale is None else float(self.length_scale)), dt)
        pad = [(0, (-n) % m) for n in shape]
        x = jnp.pad(z, pad, mode="edge")[None, ..., None]             # [1, *S, 1]
        skips = []
        for k in range(K):
            x = _ConvBlock(feats[k], d, dt, self.norm, name=f"enc_{k}")(x)
            skips.append(x)
            x = nn.avg_pool(x, (2,) * d, strides=(2,) * d)
        x = _ConvBlock(feats[K], d, dt, self.norm, name="bottleneck")(x)
        for k in reversed(range(K)):
            x = nn.ConvTranspose(feats[k], (2,) * d, strides=(2,) * d, dtype=dt,
                                 param_dtype=dt, name=f"up_{k}")(x)
            x = jnp.concatenate([x, skips[k]], axis=-1)
            x = _ConvBlock(feats[k], d, dt, self.norm, name=f"dec_{k}")(x)
        x = nn.Conv(1, (1,) * d, dtype=dt, param_dtype=dt, name="out")(x)
        crop = tuple(slice(0, n) for n in shape)
        return x[0, ..., 0][crop]
