"""Multi-resolution hash encoding (Instant-NGP, Müller et al. 2022): the MPE-FWI representation."""
from __future__ import annotations

import itertools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxfwi.models._common import check_shape, float_dtype, grid_coords, uniform_init

Array = jax.Array

#: Instant-NGP's hashing primes, one per coordinate axis.
PRIMES = (1, 2654435761, 805459861)


def level_layout(ndim: int, levels: int, base_resolution: int, scale: float,
                 table_size: int) -> dict[str, np.ndarray]:
    """Static per-level layout of the hash tables (plain numpy, computed once).

    Level ``l`` has resolution ``N_l = floor(base * scale**l)`` cells per axis, i.e.
    ``(N_l + 1)**d`` vertices. If that fits in ``table_size`` the level is stored
    densely (one row per vertex, no collisions), otherwise it is a hash table of
    ``table_size`` rows. All levels live in ONE flat table ``[sum(rows_l), F]``;
    ``offset[l]`` is where level ``l`` starts (no padding rows, so parameter counts
    are exact).

    Returns a dict of numpy arrays, each ``[levels]`` (``strides`` ``[levels, d]``):
    ``res``, ``dense``, ``rows``, ``offset``, ``strides``.
    """
    res = np.array([int(math.floor(base_resolution * scale ** l)) for l in range(levels)],
                   dtype=np.int64)
    if np.any(res < 1):
        raise ValueError(f"HashGrid: base_resolution={base_resolution} and scale={scale} "
                         f"give a level resolution < 1: {res.tolist()}")
    n_vert = (res + 1) ** ndim
    dense = n_vert <= table_size
    rows = np.where(dense, n_vert, table_size)
    offset = np.concatenate([[0], np.cumsum(rows)[:-1]])
    strides = np.stack([(res + 1) ** i for i in range(ndim)], axis=-1)
    if rows.sum() >= 2 ** 31:
        raise ValueError("HashGrid: total table rows exceed int32 indexing; reduce "
                         "table_size or levels")
    return dict(res=res, dense=dense, rows=rows, offset=offset, strides=strides)


class HashEncoding(nn.Module):
    """Multi-resolution hash-grid encoding ``h: [P, d] in [-1,1]^d -> [P, levels * features]``.

    At each level the point is located in the level's grid (domain [-1, 1]^d mapped
    to [0, N_l] per axis), the feature vectors of the ``2**d`` surrounding vertices
    are looked up and interpolated (bi-/trilinear). Vertex ``c`` (integer coords)
    has row ``sum_i c_i (N_l+1)^i`` on a dense level and
    ``(XOR_i c_i * pi_i) mod T`` on a hashed level (uint32 arithmetic, Instant-NGP
    primes ``pi = (1, 2654435761, 805459861)``). All levels are computed at once
    (arrays ``[P, levels]``; the only Python loop is over the ``2**d`` corners).
    Table init ``U(-table_init, table_init)`` (Instant-NGP: 1e-4). Output: level-major
    concatenation of features.

    Attributes:
      levels, base_resolution, scale, table_size, features: Instant-NGP settings
        (MPE-FWI: 16, 50, 1.05, T, 2).
      table_init: half-width of the uniform table initialisation (1e-4).
    """
    levels: int = 16
    base_resolution: int = 50
    scale: float = 1.05
    table_size: int = 2 ** 14
    features: int = 2
    dtype: Any = None
    table_init: float = 1e-4

    @nn.compact
    def __call__(self, x: Array) -> Array:
        dt = float_dtype(self.dtype)
        d = x.shape[-1]
        if d > len(PRIMES):
            raise ValueError(f"HashEncoding: {d}-D coordinates; supported up to 3-D")
        lay = level_layout(d, self.levels, self.base_resolution, self.scale, self.table_size)
        table = self.param("table", uniform_init(float(self.table_init)), (int(lay["rows"].sum()), self.features), dt)

        res = jnp.asarray(lay["res"], dt)                            # [L]
        u = (x.astype(dt) + 1.0) * 0.5                               # [P, d] in [0, 1]
        pos = u[:, None, :] * res[None, :, None]                     # [P, L, d]
        hi = jnp.asarray(lay["res"] - 1, jnp.int32)[None, :, None]
        i0 = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, hi)       # [P, L, d]
        frac = pos - i0.astype(dt)                                   # [P, L, d] in [0, 1]
        i0u = i0.astype(jnp.uint32)

        dense = jnp.asarray(lay["dense"])[None, :]                   # [1, L]
        rows = jnp.asarray(lay["rows"], jnp.uint32)[None, :]
        offset = jnp.asarray(lay["offset"], jnp.int32)[None, :]
        strides = jnp.asarray(lay["strides"], jnp.uint32)[None]      # [1, L, d]
        primes = jnp.asarray(np.array(PRIMES[:d], dtype=np.uint32))  # [d]

        out = jnp.zeros(x.shape[:1] + (self.levels, self.features), dt)
        for corner in itertools.product((0, 1), repeat=d):
            c = jnp.asarray(np.array(corner, dtype=np.uint32))
            idx = i0u + c                                            # [P, L, d] uint32
            w = jnp.prod(jnp.where(jnp.asarray(corner, bool), frac, 1.0 - frac), axis=-1)
            dense_row = jnp.sum(idx * strides, axis=-1, dtype=jnp.uint32)
            hashed = idx[..., 0] * primes[0]
            for i in range(1, d):
                hashed = hashed ^ (idx[..., i] * primes[i])
            row = jnp.where(dense, dense_row, hashed % rows)         # [P, L] uint32
            flat = row.astype(jnp.int32) + offset
            out = out + w[..., None] * jnp.take(table, flat, axis=0)  # [P, L, F]
        return out.reshape(x.shape[0], self.levels * self.features)


def relu_mlp(h: Array, hidden: int, n_hidden: int, dt, name: str = "mlp",
             out_scale: float = 1.0) -> Array:
    """``[P, in] -> [P, 1]``: ``n_hidden`` ReLU Dense layers of width ``hidden``, linear output.

    Flax default init (LeCun normal kernels, zero biases); the output kernel is
    multiplied by ``out_scale``. Must be called inside a compact method.
    """
    for k in range(n_hidden):
        h = nn.relu(nn.Dense(hidden, dtype=dt, param_dtype=dt, name=f"{name}_{k}")(h))
    init = nn.initializers.variance_scaling(out_scale ** 2, "fan_in", "truncated_normal")
    return nn.Dense(1, kernel_init=init, dtype=dt, param_dtype=dt, name=f"{name}_out")(h)


class HashGrid(nn.Module):
    """MPE-FWI: hash-grid encoding + a small ReLU MLP on the normalised grid.

    ``F(x) = MLP(h(x))``, ``h`` the :class:`HashEncoding` (``levels * features``
    values), MLP ``n_hidden`` ReLU layers of ``hidden`` units then a linear output.
    Defaults: 16 levels, base resolution 50, per-level scale 1.05 (MPE-FWI), 2
    features per level, table size ``2**14``, MLP 2 x 64. In 2-D at the benchmark
    sizes every level fits densely in ``2**14`` rows (the finest level has
    104^2 = 10,816 vertices), so no hashing happens; 3-D grids hash.

    Parameter count: 185,628 table + 6,337 MLP at 188 x 500 with the defaults; the
    published MPE-FWI count (14.26K) implies a table of ~8K parameters, i.e.
    ``table_size=2**8`` (16 x 256 x 2 = 8,192: total 14,529), which the ``mpe-fwi``
    preset of :func:`jaxfwi.models.build` uses (``benchmarks/mpe_probe.py``).

    Attributes:
      shape: grid shape (1, 2 or 3 dims).
      levels, base_resolution, scale, table_size, features, hidden, n_hidden.
      dtype: float dtype (default float32, float64 under x64).
      table_init: half-width of the uniform table initialisation (1e-4, Instant-NGP's).

    ``apply(params)`` -> dimensionless array of ``shape`` (~1e-4 at init).
    """
    shape: tuple[int, ...]
    levels: int = 16
    base_resolution: int = 50
    scale: float = 1.05
    table_size: int = 2 ** 14
    features: int = 2
    hidden: int = 64
    n_hidden: int = 2
    dtype: Any = None
    table_init: float = 1e-4

    @nn.compact
    def __call__(self) -> Array:
        shape = check_shape(self.shape, owner="HashGrid")
        dt = float_dtype(self.dtype)
        x = jnp.asarray(grid_coords(shape, dt))
        h = HashEncoding(levels=self.levels, base_resolution=self.base_resolution, scale=self.scale,
                         table_size=self.table_size, features=self.features, dtype=dt, table_init=self.table_init,
                         name="encoding")(x)
        return relu_mlp(h, self.hidden, self.n_hidden, dt).reshape(shape)
