"""Velocity representations: params -> dimensionless field -> velocity (m/s).

Every representation is a ``flax.linen.Module`` with a ``shape`` field and a
no-argument ``__call__`` returning an array of ``shape``:
``params = M(shape=s).init(key)``, ``F = M(shape=s).apply(params)``.
:class:`Parameterization` turns ``F`` into velocity with the initial model,
:func:`build` maps the papers' method names to representations.
"""
from jaxfwi.models import initial  # noqa: F401
from jaxfwi.models._common import grid_coords  # noqa: F401
from jaxfwi.models.gabor import Gabor  # noqa: F401
from jaxfwi.models.generator import Generator  # noqa: F401
from jaxfwi.models.grf import matern_grf, matern_spectrum  # noqa: F401
from jaxfwi.models.grid import Grid  # noqa: F401
from jaxfwi.models.hashgrid import HashEncoding, HashGrid  # noqa: F401
from jaxfwi.models.hybrid import Hybrid  # noqa: F401
from jaxfwi.models.lowrank import LowRank  # noqa: F401
from jaxfwi.models.parameterize import (  # noqa: F401
    METHOD_MODULE_DEFAULTS,
    METHODS,
    Parameterization,
    build,
    count_params,
    default_bounds,
    default_learning_rate,
    default_scale,
)
from jaxfwi.models.siren import Siren, SirenNet  # noqa: F401
from jaxfwi.models.unet import UNet  # noqa: F401

__all__ = [
    "Gabor", "Generator", "Grid", "HashEncoding", "HashGrid", "Hybrid", "LowRank",
    "METHOD_MODULE_DEFAULTS", "METHODS", "Parameterization", "Siren", "SirenNet", "UNet", "build", "count_params",
    "default_bounds", "default_learning_rate", "default_scale", "grid_coords", "initial", "matern_grf",
    "matern_spectrum",
]
