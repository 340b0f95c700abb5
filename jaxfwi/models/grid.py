"""Pixel (grid) parameterisation: conventional FWI (ADFWI, ADFWI-TV, WECI-FWI, MS-FWI)."""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxfwi.models._common import check_shape, float_dtype


class Grid(nn.Module):
    """The grid itself as parameters: one value per grid point.

    Attributes:
      shape: grid shape ``(nz,)``, ``(nz, nx)`` or ``(nz, ny, nx)``.
      initial: optional array of ``shape`` used as the initial parameter value
        (default: zeros). With :class:`~jaxfwi.models.Parameterization` and scale 1
        the parameter is the velocity update in m/s, so zeros means "start at m0".
      dtype: float dtype (default float32, float64 under x64).

    ``apply(params)`` returns the parameter array ``params['params']['field']``
    of ``shape`` unchanged.
    """
    shape: tuple[int, ...]
    initial: Optional[Any] = None
    dtype: Any = None

    @nn.compact
    def __call__(self):
        shape = check_shape(self.shape, owner="Grid")
        dt = float_dtype(self.dtype)
        if self.initial is None:
            init = lambda key: jnp.zeros(shape, dt)  # noqa: E731
        else:
            value = np.asarray(self.initial)
            if value.shape != shape:
                raise ValueError(f"Grid: initial has shape {value.shape}, expected "
                                 f"shape={shape}")
            init = lambda key: jnp.asarray(value, dt)  # noqa: E731
        return self.param("field", init)
