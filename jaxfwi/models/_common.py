"""Shared helpers for the representation layer: shape checks, dtypes, coordinates.

Every representation evaluates itself on the regular grid given by its ``shape``
field. The coordinates of that grid are normalised to ``[-1, 1]`` per axis
(an axis of length 1 sits at 0) and are constants, never parameters.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def float_dtype(dtype: Any = None):
    """The floating dtype to compute in.

    ``None`` means the default float of the current JAX configuration:
    float32, or float64 when ``jax_enable_x64`` is on.
    """
    if dtype is None:
        return jax.dtypes.canonicalize_dtype(jnp.float64)
    return jnp.dtype(dtype)


def check_shape(shape: Any, ndims: Sequence[int] = (1, 2, 3), name: str = "shape",
                owner: str = "representation") -> tuple[int, ...]:
    """Validate a grid shape (plain Python, before any tracing).

    Args:
      shape: a tuple of positive ints, e.g. ``(nz, nx)``.
      ndims: the numbers of dimensions the caller supports.
    Returns:
      ``shape`` as a tuple of Python ints.
    Raises:
      ValueError naming the argument, the value and what is expected.
    """
    try:
        tup = tuple(int(s) for s in shape)
        ok = all(int(s) == s for s in shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"{owner}: {name}={shape!r} is not a tuple of ints; pass the grid shape, "
            f"e.g. {name}=(nz, nx)") from None
    if not ok or any(s < 1 for s in tup):
        raise ValueError(f"{owner}: {name}={shape!r} must contain positive integers, "
                         f"e.g. {name}=(nz, nx)")
    if len(tup) not in tuple(ndims):
        raise ValueError(f"{owner}: {name}={shape!r} has {len(tup)} dimensions; "
                         f"supported: {sorted(ndims)} (velocity is [nz], [nz, nx] or "
                         f"[nz, ny, nx])")
    return tup


def axis_coords(n: int, dtype: Any = None) -> np.ndarray:
    """Normalised coordinates of one axis: ``n`` points evenly spaced in [-1, 1].

    A length-1 axis gets the single coordinate 0. Returns a numpy array [n]
    (a compile-time constant when used inside ``jit``).
    """
    dt = float_dtype(dtype)
    if n == 1:
        return np.zeros((1,), dtype=dt)
    return np.linspace(-1.0, 1.0, n, dtype=dt)


def grid_coords(shape: Sequence[int], dtype: Any = None) -> np.ndarray:
    """Normalised coordinates of every grid point, depth first ('ij' order).

    Args:
      shape: grid shape ``(n0, ..., n_{d-1})``.
    Returns:
      numpy array ``[prod(shape), d]`` with values in [-1, 1]; row ``i`` is the
      point ``np.unravel_index(i, shape)``, so ``values.reshape(shape)`` maps a
      per-point result back onto the grid.
    """
    axes = [axis_coords(n, dtype) for n in shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=-1)


def uniform_init(bound: float):
    """Initializer drawing U(-bound, bound) (any shape, the requested dtype)."""
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def torch_linear_init(fan_in: int):
    """PyTorch's default ``nn.Linear`` init for weights and biases: U(-1/sqrt(in), 1/sqrt(in))."""
    return uniform_init(1.0 / math.sqrt(fan_in))
