"""Low-rank tensor function representation (LR-FWI), after LRTFR (Luo et al. 2023)."""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfwi.models._common import axis_coords, check_shape, float_dtype, uniform_init
from jaxfwi.models.siren import SirenNet

Array = jax.Array


def resolve_rank(shape: tuple[int, ...], rank: Any) -> tuple[int, ...]:
    """Per-axis ranks: None -> ``n_i // 2`` per axis (at least 1); int -> same for every axis."""
    if rank is None:
        return tuple(max(1, n // 2) for n in shape)
    if isinstance(rank, int):
        ranks = (rank,) * len(shape)
    else:
        ranks = tuple(int(r) for r in rank)
    if len(ranks) != len(shape) or any(r < 1 for r in ranks):
        raise ValueError(f"LowRank: rank={rank!r} must be None, a positive int or one "
                         f"positive int per axis of shape={shape}")
    return ranks


class LowRank(nn.Module):
    """LR-FWI: ``F(z, x) = F1(z) · C · F2(x)^T`` on the normalised grid.

    ``F1: [-1,1] -> R^{r_z}`` and ``F2: [-1,1] -> R^{r_x}`` are 1-D SIRENs (one
    scalar coordinate in, a rank vector out) and ``C`` a learnable core matrix
    ``[r_z, r_x]``. Each factor net is evaluated only on its own axis (``nz`` or
    ``nx`` points), so the grid costs two small MLP passes and two matmuls.

    Rank: "half the model dimension" per axis, ``r_i = n_i // 2`` by default
    (94 x 250 at 188 x 500). This choice reproduces the published parameter count:
    the two factor nets have 77,912 parameters (CR-FWI Table 1: 77.91K), so the
    published figure evidently excludes the core (another 23,500 at 188 x 500).
    ``rank`` may be an int (same for every axis) or a tuple.

    ``depth`` follows the LR-FWI convention and counts the *linear layers* of each
    factor net: depth 3 = 2 sine layers (width 128, omega0 30, SIREN init) + a linear
    layer to the rank vector. Core init ``U(-1/sqrt(r_z), 1/sqrt(r_z))`` (LRTFR).

    1-D shapes: a plain 1-D SIREN (``depth - 1`` sine layers + linear output).
    3-D shapes: Tucker form ``F = C x_1 F1(z) x_2 F2(y) x_3 F3(x)`` with core
    ``[r_z, r_y, r_x]``.

    Attributes:
      shape: grid shape (1, 2 or 3 dims).
      rank, width, depth, omega0: see above.
      dtype: float dtype (default float32, float64 under x64).

    ``apply(params)`` -> dimensionless array of ``shape``.
    """
    shape: tuple[int, ...]
    rank: Any = None
    width: int = 128
    depth: int = 3
    omega0: float = 30.0
    dtype: Any = None

    def setup(self):
        shape = check_shape(self.shape, owner="LowRank")
        if self.depth < 2:
            raise ValueError(f"LowRank: depth={self.depth} must be >= 2 (linear layers per "
                             "factor net: depth-1 sine layers + 1 linear)")
        dt = float_dtype(self.dtype)
        self._dt = dt
        if len(shape) == 1:
            self.nets = [SirenNet(width=self.width, n_sine=self.depth - 1, out=1, omega0=self.omega0, dtype=dt,
                                  name="net")]
            return
        ranks = resolve_rank(shape, self.rank)
        self._ranks = ranks
        self.nets = [SirenNet(width=self.width, n_sine=self.depth - 1, out=r, omega0=self.omega0, dtype=dt,
                              name=f"factor_{i}")
                     for i, r in enumerate(ranks)]
        self.core = self.param("core", uniform_init(1.0 / math.sqrt(ranks[0])), ranks, dt)

    def factor_values(self) -> list[Array]:
        """The factor matrices ``[n_i, r_i]`` (each factor net on its own axis)."""
        shape = tuple(int(s) for s in self.shape)
        return [net(jnp.asarray(axis_coords(n, self._dt))[:, None])
                for net, n in zip(self.nets, shape)]

    def features(self) -> Array:
        """Per-point rank features for hybrids (2-D only): ``[nz, nx, r_x]``.

        ``feat[z, x, j] = (F1(z) C)_j * F2(x)_j``; summing over ``j`` gives ``F(z, x)``.
        """
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 2:
            raise ValueError(f"LowRank.features: needs a 2-D shape, got shape={shape}")
        a, b = self.factor_values()
        return (a @ self.core)[:, None, :] * b[None, :, :]

    def __call__(self) -> Array:
        shape = tuple(int(s) for s in self.shape)
        fs = self.factor_values()
        if len(shape) == 1:
            return fs[0].reshape(shape)
        if len(shape) == 2:
            return fs[0] @ self.core @ fs[1].T
        return jnp.einsum("abc,ia,jb,kc->ijk", self.core, *fs)
