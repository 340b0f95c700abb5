"""Inversion: ``fit`` (jit-compiled optax loop), multi-seed ``fit_seeds`` (vmap), shot
sharding over devices, checkpoints, and ``invert`` (the papers' methods by name).

Modules: ``config`` (:class:`FitConfig`, forward options, keys), ``step`` (the compiled core,
``init, step = make_fit_step(StepConfig)``, and ``make_loss``), ``engine`` (the host loop:
``fit``, ``fit_seeds``), ``results`` (:class:`InversionResult`, :class:`DivergenceError`),
``fingerprint`` (``run_identity``), ``checkpoints``, ``objective``, ``sharding``, ``memory``,
``methods`` (``invert``).

Quick start::

    import jax, jaxfwi
    result = jaxfwi.invert(d_obs, survey, dx, v_init, method="ig-fwi", epochs=300,
                           key=jax.random.key(0))
    result.velocity        # [nz, nx] m/s
    result.history["loss"] # [epochs]
"""
from jaxfwi.inversion.checkpoints import CheckpointError, load_checkpoint, save_checkpoint  # noqa: F401
from jaxfwi.inversion.config import FORWARD_OPTIONS, FitConfig, ForwardOptions, default_max_vel  # noqa: F401
from jaxfwi.inversion.engine import fit, fit_seeds  # noqa: F401
from jaxfwi.inversion.fingerprint import run_identity  # noqa: F401
from jaxfwi.inversion.results import DivergenceError, InversionResult, NonFiniteLossError  # noqa: F401
from jaxfwi.inversion.step import FitState, StepConfig, make_fit_step, make_loss  # noqa: F401
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
    "CheckpointError", "DivergenceError", "FORWARD_OPTIONS", "FitConfig", "FitState", "ForwardOptions",
    "GradientMemoryError", "InversionResult", "StepConfig", "make_fit_step",
    "METHOD_DEFAULTS", "Misfit", "NonFiniteLossError", "Regularizer", "default_max_vel", "fit", "fit_seeds",
    "gradient_bytes", "invert", "invert_seeds", "load_checkpoint", "make_loss", "method_defaults", "run_identity",
    "save_checkpoint", "shot_mesh", "tv_regularizer",
]
