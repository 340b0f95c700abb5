"""jaxfwi: pure-JAX full-waveform inversion with neural velocity representations.

The public API is re-exported here; see the subpackages for details:
``physics`` (forward modelling), ``models`` (representations), ``objectives``,
``signal``, ``metrics``, ``inversion``, ``kernels``, ``datasets``, ``experiments``.
"""
from jaxfwi.physics import (  # noqa: F401
    PropagationPlan,
    Survey,
    Propagation,
    forward,
    propagate,
    plan_propagation,
    ricker,
)
from jaxfwi import datasets, kernels, metrics, models, objectives, signal  # noqa: F401
from jaxfwi import inversion  # noqa: F401
from jaxfwi.inversion import fit, fit_seeds, invert, invert_seeds  # noqa: F401
from jaxfwi.datasets import default_model, get_preset, load_benchmark  # noqa: F401
from jaxfwi.metrics import all_metrics  # noqa: F401
from jaxfwi.objectives import get_misfit  # noqa: F401

__version__ = "0.1.0"
