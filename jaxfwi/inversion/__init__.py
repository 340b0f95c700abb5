"""Inversion: ``fit`` (jit-compiled optax loop), multi-seed ``fit_seeds`` (vmap), shot
sharding over devices, checkpoints, and ``invert`` (the papers' methods by name).

Quick start::

    import jax, jaxfwi
    result = jaxfwi.invert(d_obs, survey, dx, v_init, method="ig-fwi", epochs=300,
                           key=jax.random.key(0))
    result.velocity        # [nz, nx] m/s
    result.history["loss"] # [epochs]
"""
from jaxfwi.inversion.checkpoints import load_checkpoint, save_checkpoint  # noqa: F401
from jaxfwi.inversion.engine import (  # noqa: F401
    FORWARD_OPTIONS,
    InversionResult,
    NonFiniteLossError,
    default_max_vel,
    fit,
    fit_seeds,
    make_loss,
)
from jaxfwi.inversion.methods import (  # noqa: F401
    METHOD_DEFAULTS,
    invert,
    invert_seeds,
    method_defaults,
)
from jaxfwi.inversion.objective import Misfit, Regularizer, tv_regularizer  # noqa: F401
from jaxfwi.inversion.sharding import shot_mesh  # noqa: F401

__all__ = [
    "FORWARD_OPTIONS", "InversionResult", "METHOD_DEFAULTS", "Misfit", "NonFiniteLossError", "Regularizer",
    "default_max_vel", "fit", "fit_seeds", "invert", "invert_seeds", "load_checkpoint", "make_loss",
    "method_defaults", "save_checkpoint", "shot_mesh", "tv_regularizer",
]
