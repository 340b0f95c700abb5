"""Inversion: ``fit`` (jit-compiled optax loop), multi-seed ``fit_seeds`` (vmap), shot
sharding over devices, checkpoints, and ``invert`` (the papers' methods by name).

Quick start::

    import jax, jaxfwi
    result = jaxfwi.invert(d_obs, survey, dx, v_init, method="ig-fwi", epochs=300,
                           key=jax.random.key(0))
    result.velocity        # [nz, nx] m/s
    result.history["loss"] # [epochs]
"""
from jaxfwi.inversion.checkpoints import CheckpointError, load_checkpoint, save_checkpoint  # noqa: F401
from jaxfwi.inversion.engine import (  # noqa: F401
    FORWARD_OPTIONS,
    DivergenceError,
    InversionResult,
    NonFiniteLossError,
    default_max_vel,
    fit,
    fit_seeds,
    make_loss,
    run_identity,
)
from jaxfwi.inversion.memory import GradientMemoryError, gradient_bytes  # noqa: F401
from jaxfwi.inversion.methods import (  # noqa: F401
    METHOD_DEFAULTS,
    invert,
    invert_seeds,
    method_defaults,
)
from jaxfwi.inversion.objective import Misfit, Regularizer, tv_regularizer  # noqa: F401
from jaxfwi.inversion.sharding import shot_mesh  # noqa: F401

__all__ = [
    "CheckpointError", "DivergenceError", "FORWARD_OPTIONS", "GradientMemoryError", "InversionResult",
    "METHOD_DEFAULTS", "Misfit", "NonFiniteLossError", "Regularizer", "default_max_vel", "fit", "fit_seeds",
    "gradient_bytes", "invert", "invert_seeds", "load_checkpoint", "make_loss", "method_defaults", "run_identity",
    "save_checkpoint", "shot_mesh", "tv_regularizer",
]
