"""Hybrid hash-grid + implicit representations: IG-FWI and LRG-FWI."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfwi.models._common import check_shape, float_dtype, grid_coords
from jaxfwi.models.hashgrid import HashEncoding, relu_mlp
from jaxfwi.models.lowrank import LowRank
from jaxfwi.models.siren import SirenNet

Array = jax.Array


class Hybrid(nn.Module):
    """IG-FWI / LRG-FWI: ``F(x) = MLP([alpha * h(x), (1 - alpha) * I(x)])``.

    * ``h(x)``: the multi-resolution hash encoding (features, not an MLP), as in
      :class:`~jaxfwi.models.HashGrid` (16 levels, base 50, scale 1.05, 2 features).
    * ``branch="siren"`` (IG-FWI): ``I(x)`` is a tiny SIREN feature net, ``siren_depth``
      sine layers of ``siren_width`` units (2 x 128, omega0 30, SIREN init), no
      linear output: 128 features in [-1, 1].
    * ``branch="lowrank"`` (LRG-FWI, 2-D only): ``I(x)`` are per-point low-rank
      features ``(F1(z) C)_j F2(x)_j``, ``j = 1..lr_rank`` (their sum is the LR-FWI
      field), from a :class:`~jaxfwi.models.LowRank` with rank ``lr_rank`` on both
      axes (default 64, to keep the fusion input comparable to IG-FWI), factor nets of
      depth 3 x width 128 (LR-FWI settings). These features are small at init
      (RMS ~6e-4 at 47 x 144), like the hash features: with ``lr_normalize`` (the
      ``lrg-fwi`` preset) they are divided by their global RMS, otherwise the fusion
      MLP's output starts ~1e-5 and the branch hardly trains.
    * fusion MLP: ``n_hidden`` ReLU layers of ``hidden`` units (2 x 64) then linear.
      Its output kernel is initialised at 0.1 x the LeCun-normal scale so that a
      denormalised model starts within ~1 % of ``m0`` (the SIREN features are O(1)).

    Parameter count at 188 x 500 (IG-FWI, defaults): table 185,628 + SIREN 16,896 +
    fusion 14,529; with ``table_size=2**8`` it is 39,617 vs the published 39.34K.

    Attributes:
      shape: grid shape (1, 2 or 3 dims for ``siren``; 2 dims for ``lowrank``).
      alpha: weight of the hash branch (0.5).
      branch: ``"siren"`` or ``"lowrank"``.
      levels, base_resolution, scale, table_size, features: hash encoding.
      siren_width, siren_depth, siren_omega0: SIREN branch.
      lr_rank, lr_width, lr_depth, lr_omega0: low-rank branch.
      lr_normalize: divide the low-rank features by their global RMS (over every point and
        rank feature), so that the fusion sees O(1) features as from the SIREN branch.
      hidden, n_hidden: fusion MLP.
      table_init: half-width of the uniform hash-table initialisation (1e-4).
      dtype: float dtype (default float32, float64 under x64).
    """
    shape: tuple[int, ...]
    alpha: float = 0.5
    branch: str = "siren"
    levels: int = 16
    base_resolution: int = 50
    scale: float = 1.05
    table_size: int = 2 ** 14
    features: int = 2
    siren_width: int = 128
    siren_depth: int = 2
    siren_omega0: float = 30.0
    lr_rank: int = 64
    lr_width: int = 128
    lr_depth: int = 3
    lr_omega0: float = 30.0
    lr_normalize: bool = False
    hidden: int = 64
    n_hidden: int = 2
    dtype: Any = None
    table_init: float = 1e-4

    @nn.compact
    def __call__(self) -> Array:
        shape = check_shape(self.shape, owner="Hybrid")
        if self.branch not in ("siren", "lowrank"):
            raise ValueError(f"Hybrid: branch={self.branch!r}; expected 'siren' (IG-FWI) "
                             "or 'lowrank' (LRG-FWI)")
        if self.branch == "lowrank" and len(shape) != 2:
            raise ValueError(f"Hybrid: branch='lowrank' needs a 2-D shape, got shape={shape}")
        dt = float_dtype(self.dtype)
        x = jnp.asarray(grid_coords(shape, dt))
        h = HashEncoding(levels=self.levels, base_resolution=self.base_resolution, scale=self.scale,
                         table_size=self.table_size, features=self.features, dtype=dt, table_init=self.table_init,
                         name="encoding")(x)
        if self.branch == "siren":
            feat = SirenNet(width=self.siren_width, n_sine=self.siren_depth, out=None, omega0=self.siren_omega0,
                            dtype=dt, name="siren")(x)
        else:
            lr = LowRank(shape=shape, rank=self.lr_rank, width=self.lr_width, depth=self.lr_depth,
                         omega0=self.lr_omega0, dtype=dt, name="lowrank")
            feat = lr.features().reshape(x.shape[0], -1)
            if self.lr_normalize:
                # one global RMS over every point and rank feature: a scale-free function of the
                # factor nets (differentiated through, so kernels stay exact), O(1) like SIREN features
                feat = feat * jax.lax.rsqrt(jnp.mean(feat * feat) + jnp.finfo(dt).tiny)
        z = jnp.concatenate([self.alpha * h, (1.0 - self.alpha) * feat], axis=-1)
        return relu_mlp(z, self.hidden, self.n_hidden, dt, name="fusion", out_scale=0.1).reshape(shape)
